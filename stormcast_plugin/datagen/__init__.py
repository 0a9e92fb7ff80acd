"""Making training data: a synthetic storm-resolving atmosphere, preparation of
dataset stores from real sources, and running normalisation statistics."""

from stormcast_plugin.datagen.prepare import prepare_dataset
from stormcast_plugin.datagen.sources import PrepareError, RenameVariables
from stormcast_plugin.datagen.statistics import RunningStats, compute_statistics
from stormcast_plugin.datagen.synth import SynthConfig, SyntheticAtmosphere, synthesize

__all__ = ["PrepareError", "RenameVariables", "RunningStats", "SynthConfig", "SyntheticAtmosphere",
           "compute_statistics", "prepare_dataset", "synthesize"]
