"""Maps and figures of forecasts (matplotlib, imported on first use)."""

from stormcast_plugin.plot.forecast import *  # noqa: F401,F403
from stormcast_plugin.plot.forecast import __all__  # noqa: F401
