r"""A synthetic storm-resolving atmosphere with StormCast's variables.

:func:`synthesize` writes a dataset in the :mod:`~stormcast_plugin.io.dataset_store`
format whose state has the real StormCast channel names (HRRR hybrid-level
winds, temperature, humidity, geopotential height and pressure, composite
reflectivity ...) on any model grid, and whose conditioning is an ERA5-like
large-scale analysis on a coarse regular latitude/longitude grid. The data are
meant to be *learnable the way StormCast's data are*: a smooth, predictable
large-scale evolution (which a regression model can learn and persistence
cannot follow) plus convective cells whose birth time and place are random
(which only an ensemble can represent).

Everything is deterministic for a seed: the large-scale fields are analytic
functions of position and time, and the cell population is simulated hour by
hour with a seeded generator (:class:`SyntheticAtmosphere`).

Modules: :mod:`.config` (parameters), :mod:`.physics` (constants, levels,
humidity, pressure levels), :mod:`.fields` (random Fourier fields, the plane),
:mod:`.terrain` (land and orography), :mod:`.flow` (large-scale flow and the
thermodynamic column), :mod:`.cells` (convective cells),
:mod:`.atmosphere` (the whole, and its conditioning) and :mod:`.writer`
(:func:`synthesize`, the dataset store).
"""

from stormcast_plugin.datagen.synth.atmosphere import SyntheticAtmosphere
from stormcast_plugin.datagen.synth.config import SynthConfig
from stormcast_plugin.datagen.synth.physics import level_height
from stormcast_plugin.datagen.synth.writer import synthesize

__all__ = ["SynthConfig", "SyntheticAtmosphere", "level_height", "synthesize"]
