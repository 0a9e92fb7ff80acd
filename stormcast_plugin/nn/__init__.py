"""Pure-torch StormCast networks (state-dict compatible with PhysicsNeMo)."""

from .layers import Conv2d, GroupNorm, Linear, PositionalEmbedding, UNetAttention, UNetBlock
from .networks import (
    EDMPrecond,
    RegressionNet,
    count_parameters,
    paper_diffusion_config,
    paper_regression_config,
)
from .songunet import SongUNet, SongUNetConfig

__all__ = [
    "Conv2d",
    "EDMPrecond",
    "GroupNorm",
    "Linear",
    "PositionalEmbedding",
    "RegressionNet",
    "SongUNet",
    "SongUNetConfig",
    "UNetAttention",
    "UNetBlock",
    "count_parameters",
    "paper_diffusion_config",
    "paper_regression_config",
]
