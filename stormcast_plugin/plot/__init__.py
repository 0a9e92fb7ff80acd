"""Maps and figures of forecasts (matplotlib, imported on first use).

:mod:`.style` (how each variable is drawn), :mod:`.maps` (one field as a
map) and :mod:`.forecast` (frames, animations and panels of forecast stores).
"""

from stormcast_plugin.plot.forecast import plot_forecast, plot_panel
from stormcast_plugin.plot.maps import HRRR_PROJECTION, new_figure, plot_field
from stormcast_plugin.plot.style import (
    REFC_COLORS,
    REFC_LEVELS,
    REFC_OVER,
    VARIABLE_STYLES,
    color_limits,
    colorbar_extend,
    style_for,
)

__all__ = [
    "HRRR_PROJECTION",
    "REFC_COLORS",
    "REFC_LEVELS",
    "REFC_OVER",
    "VARIABLE_STYLES",
    "color_limits",
    "colorbar_extend",
    "new_figure",
    "plot_field",
    "plot_forecast",
    "plot_panel",
    "style_for",
]
