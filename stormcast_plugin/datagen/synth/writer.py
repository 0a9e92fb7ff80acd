"""Writing the synthetic atmosphere as a dataset store (``stormcast data synth``).

Cost
----
Measured on a busy 2-core machine: 240 hours of the ``small`` preset on a
64 x 64 grid take about 5 s to compute and about 12 s with the store writes
(``stormcast data synth``); the ``full`` preset on 128 x 128 about 0.12 s per
hour (35 s for 240 hours written); the ``full`` preset on the 512 x 640
StormCast v1 domain about 2.5 s per hour. The cells cost little: the
hydrostatic column over every level up to the highest one in the state
dominates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from stormcast_plugin.datagen.statistics import RunningStats
from stormcast_plugin.datagen.synth.atmosphere import SyntheticAtmosphere
from stormcast_plugin.datagen.synth.config import SynthConfig
from stormcast_plugin.io.dataset_store import DatasetStore
from stormcast_plugin.utils.grid import ModelGrid

__all__ = ["synthesize"]


def synthesize(
    path: str | Path,
    start: Any,
    hours: int,
    grid: ModelGrid | Sequence[int] = (64, 64),
    preset: str = "small",
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    statistics: bool = True,
    **config: Any,
) -> DatasetStore:
    """Generate a synthetic StormCast dataset (see the module docstring).

    Parameters
    ----------
    path : path-like
        The store to write (``*.zarr``).
    start : str or datetime-like
        First hour, e.g. ``"2024-05-01T00"``.
    hours : int
        Number of hourly samples.
    grid : ModelGrid or (int, int)
        Any model grid, or ``(H, W)`` for an HRRR crop centred on the
        StormCast v1 domain.
    preset : str
        Variable preset (``"full"``: 99 state and 26 conditioning variables;
        ``"small"``, ``"tiny"``).
    seed : int
        Random seed; the same seed gives the same data.
    overwrite : bool
        Replace an existing store.
    progress : bool
        Show a progress bar.
    statistics : bool
        Compute per-channel mean and standard deviation over all hours (in
        float64) and store them.
    **config
        Further :class:`~stormcast_plugin.datagen.synth.config.SynthConfig` fields
        (``birth_rate``, ``radius_km`` ...).

    Returns
    -------
    DatasetStore
        The written store, opened read-only.

    Raises
    ------
    ValueError
        For invalid hours, grid, preset or configuration values.
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    """
    if isinstance(hours, bool) or not isinstance(hours, (int, np.integer)) or hours < 1:
        raise ValueError(f"hours = {hours!r} must be a positive integer (the number of hourly samples)")
    cfg = SynthConfig(grid=grid, start=start, preset=preset, seed=seed, **config)
    atm = SyntheticAtmosphere(cfg)
    times = cfg.start + np.arange(int(hours)).astype("timedelta64[h]")
    store = DatasetStore.create(
        path, times=times, state_variables=atm.state_variables,
        conditioning_variables=atm.conditioning_variables, invariant_names=atm.invariant_names,
        grid=atm.grid, cond_lat=atm.cond_lat, cond_lon=atm.cond_lon, overwrite=overwrite,
        attrs={"source": "synthetic"},
    )
    stats = {"state": RunningStats(len(atm.state_variables)), "cond": RunningStats(len(atm.conditioning_variables))}

    iterator: Any = range(int(hours))
    if progress:
        try:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc="synth", unit="h")
        except ImportError:  # pragma: no cover - tqdm is a dependency
            pass
    for i in iterator:
        s = atm.state(i)
        c = atm.conditioning(i)
        store.write_hour(i, s, c)
        if statistics:
            stats["state"].update(s[None])
            stats["cond"].update(c[None])
    store.write_invariants(atm.invariants())
    if statistics:
        res = {}
        for key, acc in stats.items():
            # A channel constant over the dataset still needs std > 0 to normalise.
            res[key] = (acc.mean, np.maximum(acc.std, 1e-6 * np.maximum(1.0, np.abs(acc.mean))))
        store.write_statistics(res["state"][0], res["state"][1], res["cond"][0], res["cond"][1],
                               period=(times[0], times[-1]))
    store.set_attrs(
        source="synthetic",
        seed=int(seed),
        config=json.dumps(cfg.to_dict()),
        description=(
            "Synthetic storm-resolving atmosphere (stormcast_plugin.datagen.synth): a smooth advected large-scale "
            "flow with a diurnal cycle and hydrostatic vertical structure, plus randomly born convective cells "
            "with reflectivity cores, outflow and cold pools; ERA5-like large-scale conditioning."
        ),
    )
    store.consolidate()
    return DatasetStore.open(path, mode="r")
