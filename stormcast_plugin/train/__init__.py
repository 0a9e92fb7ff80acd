"""Training: regression then diffusion, single process or torchrun.

Entry points: ``stormcast train CONFIG --run-dir DIR [--set key=value ...]``
and ``python -m stormcast_plugin.train`` (the same arguments, also under
``torchrun``). See :mod:`stormcast_plugin.train.config` for the format.
"""

from stormcast_plugin.train.config import (
    Config,
    ConfigError,
    DataConfig,
    DiffusionStageConfig,
    RegressionStageConfig,
    LoggingConfig,
    ModelConfig,
    Period,
    StageConfig,
    TrainingConfig,
    apply_overrides,
    load_config,
)

__all__ = ["Config", "ConfigError", "DataConfig", "DiffusionStageConfig", "LoggingConfig", "ModelConfig", "Period", "RegressionStageConfig",
           "StageConfig", "TrainingConfig", "apply_overrides", "load_config", "main"]


def main(argv=None) -> int:
    """``stormcast train`` with the arguments ``argv`` (see :mod:`stormcast_plugin.cli.train`)."""
    from stormcast_plugin.cli.train import main as _main

    return _main(argv)
