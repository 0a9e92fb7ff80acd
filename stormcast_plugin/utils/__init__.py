"""Shared helpers: the HRRR grid and its projection, interpolation, time,
coordinates and variable tables."""

from stormcast_plugin.utils.grid import ModelGrid, hrrr_crop
from stormcast_plugin.utils.interpolation import BilinearRegridder, get_regridder
from stormcast_plugin.utils.local_time import LOCAL_TIME_CHANNELS, local_time_channels
from stormcast_plugin.utils.projection import HRRR_PROJECTION, latlon_to_lcc, lcc_to_latlon
from stormcast_plugin.utils.variables import CONDITIONING_VARIABLES, INVARIANTS, PRESETS, STATE_VARIABLES

__all__ = ["CONDITIONING_VARIABLES", "HRRR_PROJECTION", "INVARIANTS", "LOCAL_TIME_CHANNELS", "PRESETS",
           "STATE_VARIABLES", "BilinearRegridder", "ModelGrid", "get_regridder", "hrrr_crop", "latlon_to_lcc",
           "lcc_to_latlon", "local_time_channels"]
