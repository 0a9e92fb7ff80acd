"""Verification statistics on xarray forecasts and truths."""

from stormcast_plugin.statistics.metrics import *  # noqa: F401,F403
from stormcast_plugin.statistics.metrics import __all__  # noqa: F401
