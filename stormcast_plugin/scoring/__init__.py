"""Scoring forecasts against a truth: :mod:`.truth` (reading and aligning the
truth), :mod:`.evaluate` (the scores), :mod:`.report` (tables) and
:mod:`.figures` (plots). The command line is :mod:`stormcast_plugin.cli.score`."""

from stormcast_plugin.scoring.evaluate import score
from stormcast_plugin.scoring.report import markdown_table
from stormcast_plugin.scoring.truth import ScoreError, align_truth, forecast_variables

__all__ = ["ScoreError", "align_truth", "forecast_variables", "markdown_table", "score"]
