"""Scoring forecasts against a truth store: evaluation, report and figures."""

from stormcast_plugin.scoring.evaluate import *  # noqa: F401,F403
from stormcast_plugin.scoring.evaluate import __all__  # noqa: F401
