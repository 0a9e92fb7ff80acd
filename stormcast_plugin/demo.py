"""The embedded offline default: a small model and a synthetic case.

Nothing here needs the network. The default model is the package bundled in
``stormcast_plugin/assets/demo``: a tiny StormCast (6 state variables, 6
conditioning variables, a 64 x 64 crop of the HRRR grid in the central US)
**trained on the synthetic atmosphere** of :mod:`stormcast_plugin.datagen.synth`
(see the README for the command that reproduces it). It demonstrates the
pipeline end to end; it has never seen real weather. Its default case is a
synthetic atmosphere with weather of a seed it was not trained on, over the
orography it was trained on (:func:`demo_sources`).

:class:`DemoStateSource` and :class:`DemoConditioningSource` are simpler
smooth synthetic sources for any package (used by tests), and
:func:`random_demo_package` a randomly initialised package of the same shape.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from stormcast_plugin.utils.time import as_time, as_times, epoch_hours

__all__ = ["DEMO_DESCRIPTION", "DemoConditioningSource", "DemoStateSource", "demo_grid", "demo_package",
           "demo_sources", "random_demo_package"]

DEMO_DESCRIPTION = (
    "Randomly initialised demonstration network on a synthetic case: it exercises the "
    "pipeline end to end; its output is NOT a weather forecast."
)
DEMO_PACKAGE_DIR = Path(__file__).resolve().parent / "assets" / "demo"
DEMO_TRUTH_SEED = 101  # the weather of the default forecast's synthetic case: not a training seed
DEMO_TERRAIN_SEED = 0  # the demo model's domain: the orography of its training data (seed 0)


def demo_grid():
    """The demo model's grid: the 64 x 64 HRRR crop that ``stormcast data synth
    --grid 64x64`` uses (centred on the StormCast v1 domain)."""
    from stormcast_plugin.utils.grid import hrrr_crop

    return hrrr_crop((64, 64))


def demo_package():
    """The embedded demonstration package (trained on synthetic data).

    Falls back to :func:`random_demo_package` if the bundled files are absent
    (a source checkout before the demo model was trained).
    """
    if (DEMO_PACKAGE_DIR / "stormcast_package.json").is_file():
        from stormcast_plugin.package._impl import load_package

        return load_package(DEMO_PACKAGE_DIR)
    import warnings

    warnings.warn("the bundled demo model is missing; using a randomly initialised one", RuntimeWarning,
                  stacklevel=2)
    return random_demo_package()


def demo_sources(start: Any, hours: int, workdir: str | Path, seed: int = DEMO_TRUTH_SEED,
                 terrain_seed: int = DEMO_TERRAIN_SEED):
    """State and conditioning sources for a demo forecast from ``start``.

    Generates the synthetic atmosphere (weather of seed ``seed`` over the
    orography of ``terrain_seed``, by default the demo model's own domain) on
    the demo grid over ``[start - 1 h, start + hours]`` into ``workdir`` and
    returns ``(state_source, conditioning_source, store)``.
    """
    from stormcast_plugin.data.store_sources import StoreConditioningSource, StoreStateSource
    from stormcast_plugin.datagen.synth import synthesize

    first = as_time(start, "start", whole_hours=True) - np.timedelta64(1, "h")
    store = synthesize(Path(workdir) / "demo_case.zarr", first, int(hours) + 2, grid=demo_grid(), preset="tiny",
                       seed=seed, terrain_seed=terrain_seed, overwrite=True, progress=False)
    return StoreStateSource(store), StoreConditioningSource(store), store


def random_demo_package(seed: int = 0):
    """A small randomly initialised StormCast package on the demo grid."""
    from stormcast_plugin.package._impl import random_package
    from stormcast_plugin.utils.variables import INVARIANTS, PRESETS

    pkg = random_package(
        PRESETS["tiny"]["state"],
        PRESETS["tiny"]["conditioning"],
        INVARIANTS,
        demo_grid(),
        model_channels=16,
        channel_mult=(1, 2, 2),
        num_blocks=1,
        seed=seed,
    )
    pkg.info.update(name="stormcast-demo-random", description=DEMO_DESCRIPTION, source="embedded")
    return pkg


def _smooth(lat: np.ndarray, lon: np.ndarray, hour: float, k: int) -> np.ndarray:
    """A smooth field in [-1, 1] moving slowly eastwards; ``k`` varies the pattern."""
    phase = 0.07 * hour + 1.3 * k
    a = np.sin(np.deg2rad(lon * (3 + k % 3)) - phase) * np.cos(np.deg2rad(lat * (4 + k % 2)) + 0.5 * k)
    b = np.cos(np.deg2rad(lon * 7) + np.deg2rad(lat * 5) - 0.5 * phase)
    diurnal = 0.3 * np.sin(2 * np.pi * (hour % 24) / 24 + 0.2 * k)
    return np.clip(0.6 * a + 0.3 * b + diurnal, -1, 1)


class _SyntheticSource:
    """Shared machinery of the demo sources (earth2studio DataSource protocol)."""

    def __init__(self, means: dict[str, float], stds: dict[str, float]) -> None:
        self.means = means
        self.stds = stds

    def _field(self, name: str, hour: float, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        if name not in self.means:
            raise KeyError(name)
        k = sorted(self.means).index(name)
        return self.means[name] + self.stds[name] * _smooth(lat, lon, hour, k)

    def _build(self, time, variable, lat, lon, dims, coords):
        import xarray as xr

        variable = [variable] if isinstance(variable, str) else list(variable)
        unknown = [v for v in variable if v not in self.means]
        if unknown:
            raise ValueError(f"the demo source has no variables {unknown}; it has {sorted(self.means)}")
        times = as_times(time, "time")
        data = np.stack([
            np.stack([self._field(v, h, lat, lon) for v in variable]) for h in epoch_hours(times)
        ]).astype(np.float32)
        return xr.DataArray(data, dims=("time", "variable") + dims,
                            coords={"time": times, "variable": np.array(variable), **coords})

    async def fetch(self, time, variable):
        return self(time, variable)


class DemoStateSource(_SyntheticSource):
    """Synthetic HRRR-like state on the demo grid (DataSource)."""

    def __init__(self, package) -> None:
        names = list(package.state_variables)
        super().__init__(dict(zip(names, map(float, package.state_mean))),
                         dict(zip(names, map(float, 0.8 * package.state_std))))
        self.grid = package.grid

    def __call__(self, time: datetime | Sequence[datetime], variable: str | Sequence[str]):
        g = self.grid
        da = self._build(time, variable, g.lat, g.lon, ("hrrr_y", "hrrr_x"),
                         {"hrrr_y": np.asarray(g.y), "hrrr_x": np.asarray(g.x)})
        da = da.assign_coords(lat=(("hrrr_y", "hrrr_x"), g.lat), lon=(("hrrr_y", "hrrr_x"), g.lon))
        if "refc" in da.coords["variable"].values:  # reflectivity is never below -10 dBZ
            da.loc[{"variable": "refc"}] = np.maximum(da.sel(variable="refc").values, -10.0)
        return da


class DemoConditioningSource(_SyntheticSource):
    """Synthetic ERA5-like conditioning on a regular 0.25 degree grid (DataSource)."""

    def __init__(self, package, lat=(20.0, 55.0), lon=(235.0, 295.0)) -> None:
        names = list(package.conditioning_variables)
        super().__init__(dict(zip(names, map(float, package.conditioning_mean))),
                         dict(zip(names, map(float, 0.8 * package.conditioning_std))))
        self.lat = np.arange(lat[1], lat[0] - 1e-9, -0.25)
        self.lon = np.arange(lon[0], lon[1] + 1e-9, 0.25)

    def __call__(self, time: datetime | Sequence[datetime], variable: str | Sequence[str]):
        lat2, lon2 = np.meshgrid(self.lat, self.lon, indexing="ij")
        return self._build(time, variable, lat2, lon2, ("lat", "lon"), {"lat": self.lat, "lon": self.lon})
