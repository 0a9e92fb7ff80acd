"""StormCast: a kilometre-scale storm emulator (regression + EDM diffusion)
packaged as an Earth2Studio plugin.

Importing the package is cheap: torch, earth2studio and the rest load only
when a name that needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    # the earth2studio model, packages and the forecast driver
    "StormCast": "stormcast_plugin.models.px.stormcast",
    "StormCastPackage": "stormcast_plugin.package",
    "load_package": "stormcast_plugin.package",
    "save_package": "stormcast_plugin.package",
    "run_forecast": "stormcast_plugin.run",
    # networks and the pure-tensor step
    "StormCastNets": "stormcast_plugin.models.nn",
    "SamplerOptions": "stormcast_plugin.models.nn",
    "SongUNet": "stormcast_plugin.models.nn",
    "SongUNetConfig": "stormcast_plugin.models.nn",
    "RegressionNet": "stormcast_plugin.models.nn",
    "EDMPrecond": "stormcast_plugin.models.nn",
    "load_mdlus": "stormcast_plugin.models.nn",
    "write_mdlus": "stormcast_plugin.models.nn",
    "CheckpointError": "stormcast_plugin.models.nn",
    # variable tables
    "STATE_VARIABLES": "stormcast_plugin.utils.variables",
    "CONDITIONING_VARIABLES": "stormcast_plugin.utils.variables",
    "INVARIANTS": "stormcast_plugin.utils.variables",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'stormcast_plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
