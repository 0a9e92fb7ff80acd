"""The default case of the embedded demo model: a synthetic atmosphere it was not trained on.

:func:`demo_sources` synthesises the weather of seed :data:`DEMO_TRUTH_SEED`
over the demo model's own terrain (:data:`~stormcast_plugin.demo.DEMO_TERRAIN_SEED`)
on its grid, and serves it as state and conditioning sources: the truth and
the inputs of ``stormcast forecast`` without ``--package``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stormcast_plugin.data.store_sources import StoreConditioningSource, StoreStateSource
from stormcast_plugin.datagen.synth import synthesize
from stormcast_plugin.demo import DEMO_TERRAIN_SEED, demo_grid
from stormcast_plugin.io.dataset_store import DatasetStore
from stormcast_plugin.utils.time import as_time

__all__ = ["DEMO_TRUTH_SEED", "demo_sources"]

DEMO_TRUTH_SEED = 101
"""Weather seed of the default case: not one of the demo model's training seeds."""


def demo_sources(start: Any, hours: int, workdir: str | Path, seed: int = DEMO_TRUTH_SEED,
                 terrain_seed: int = DEMO_TERRAIN_SEED, progress: bool = False
                 ) -> tuple[StoreStateSource, StoreConditioningSource, DatasetStore]:
    """State and conditioning sources for a demo forecast from ``start``.

    Generates the synthetic atmosphere (weather of seed ``seed`` over the
    orography of ``terrain_seed``, by default the demo model's own domain) on
    the demo grid over ``[start - 1 h, start + hours]`` into ``workdir``.

    Parameters
    ----------
    start : datetime-like
        Initial time of the forecast, on the hour.
    hours : int
        Forecast length.
    workdir : path-like
        Folder of the case's dataset store (``demo_case.zarr``, replaced).
    seed, terrain_seed : int
        Weather and terrain seeds of the synthetic atmosphere.
    progress : bool
        Show a progress bar while the case is synthesised.

    Returns
    -------
    tuple[StoreStateSource, StoreConditioningSource, DatasetStore]
        The state source, the conditioning source and the store behind them.

    Raises
    ------
    ValueError
        If ``start`` is not a time on the hour.
    """
    first = as_time(start, "start", whole_hours=True) - np.timedelta64(1, "h")
    store = synthesize(Path(workdir) / "demo_case.zarr", first, int(hours) + 2, grid=demo_grid(), preset="tiny",
                       seed=seed, terrain_seed=terrain_seed, overwrite=True, progress=progress)
    return StoreStateSource(store), StoreConditioningSource(store), store
