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
    "StormCastNets": "stormcast_plugin.core",
    "SamplerOptions": "stormcast_plugin.core",
    "SongUNet": "stormcast_plugin.nn",
    "SongUNetConfig": "stormcast_plugin.nn",
    "RegressionNet": "stormcast_plugin.nn",
    "EDMPrecond": "stormcast_plugin.nn",
    "load_mdlus": "stormcast_plugin.nn.mdlus",
    "write_mdlus": "stormcast_plugin.nn.mdlus",
    "CheckpointError": "stormcast_plugin.nn.mdlus",
    "STATE_VARIABLES": "stormcast_plugin.variables",
    "CONDITIONING_VARIABLES": "stormcast_plugin.variables",
    "INVARIANTS": "stormcast_plugin.variables",
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
