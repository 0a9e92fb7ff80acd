"""Shared helpers: the HRRR grid and its projection, interpolation, time,
coordinates and variable tables."""

from stormcast_plugin.utils.grid import ModelGrid, get_regridder
from stormcast_plugin.utils.local_time import LOCAL_TIME_CHANNELS, local_time_channels
from stormcast_plugin.utils.variables import CONDITIONING_VARIABLES, INVARIANTS, PRESETS, STATE_VARIABLES

__all__ = ["CONDITIONING_VARIABLES", "INVARIANTS", "LOCAL_TIME_CHANNELS", "PRESETS", "STATE_VARIABLES", "ModelGrid",
           "get_regridder", "local_time_channels"]
