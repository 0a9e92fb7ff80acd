"""Offline stand-ins for tests and examples: smooth synthetic data sources and a
randomly initialised package on the demo grid.

:class:`DemoStateSource` and :class:`DemoConditioningSource` follow the
earth2studio DataSource protocol and serve smooth fields, slowly moving
eastward, around a package's own normalisation statistics: they exercise a
forecast end to end without files or the network.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from stormcast_plugin.utils.time import as_times, epoch_hours

if TYPE_CHECKING:  # pragma: no cover - typing only
    import xarray as xr

    from stormcast_plugin.package._impl import StormCastPackage

__all__ = ["DEMO_DESCRIPTION", "DemoConditioningSource", "DemoStateSource", "random_demo_package"]

DEMO_DESCRIPTION = (
    "Randomly initialised demonstration network on a synthetic case: it exercises the "
    "pipeline end to end; its output is NOT a weather forecast."
)
"""Model-card description of :func:`random_demo_package`."""


def random_demo_package(seed: int = 0) -> "StormCastPackage":
    """A small randomly initialised StormCast package on the demo grid (tiny preset)."""
    from stormcast_plugin.demo import demo_grid
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
        k = sorted(self.means).index(name)
        return self.means[name] + self.stds[name] * _smooth(lat, lon, hour, k)

    def _build(self, time: Any, variable: Any, lat: np.ndarray, lon: np.ndarray, dims: tuple[str, str],
               coords: dict[str, Any]) -> "xr.DataArray":
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

    async def fetch(self, time: Any, variable: Any) -> "xr.DataArray":
        """Async variant of ``__call__`` (earth2studio's async DataSource protocol)."""
        return self(time, variable)


class DemoStateSource(_SyntheticSource):
    """Synthetic HRRR-like state on a package's grid (earth2studio DataSource).

    Parameters
    ----------
    package : StormCastPackage
        Gives the grid, the state variables and their statistics.
    """

    def __init__(self, package: "StormCastPackage") -> None:
        names = list(package.state_variables)
        super().__init__(dict(zip(names, map(float, package.state_mean))),
                         dict(zip(names, map(float, 0.8 * package.state_std))))
        self.grid = package.grid

    def __call__(self, time: datetime | Sequence[datetime], variable: str | Sequence[str]) -> "xr.DataArray":
        """``[time, variable, hrrr_y, hrrr_x]`` state with 2-D ``lat``/``lon`` coordinates."""
        g = self.grid
        da = self._build(time, variable, g.lat, g.lon, ("hrrr_y", "hrrr_x"),
                         {"hrrr_y": np.asarray(g.y), "hrrr_x": np.asarray(g.x)})
        da = da.assign_coords(lat=(("hrrr_y", "hrrr_x"), g.lat), lon=(("hrrr_y", "hrrr_x"), g.lon))
        if "refc" in da.coords["variable"].values:  # reflectivity is never below -10 dBZ
            da.loc[{"variable": "refc"}] = np.maximum(da.sel(variable="refc").values, -10.0)
        return da


class DemoConditioningSource(_SyntheticSource):
    """Synthetic ERA5-like conditioning on a regular 0.25 degree grid (earth2studio DataSource).

    Parameters
    ----------
    package : StormCastPackage
        Gives the conditioning variables and their statistics.
    lat, lon : (float, float)
        Extent of the grid in degrees (latitudes are served north to south).
    """

    def __init__(self, package: "StormCastPackage", lat: tuple[float, float] = (20.0, 55.0),
                 lon: tuple[float, float] = (235.0, 295.0)) -> None:
        names = list(package.conditioning_variables)
        super().__init__(dict(zip(names, map(float, package.conditioning_mean))),
                         dict(zip(names, map(float, 0.8 * package.conditioning_std))))
        self.lat = np.arange(lat[1], lat[0] - 1e-9, -0.25)
        self.lon = np.arange(lon[0], lon[1] + 1e-9, 0.25)

    def __call__(self, time: datetime | Sequence[datetime], variable: str | Sequence[str]) -> "xr.DataArray":
        """``[time, variable, lat, lon]`` conditioning."""
        lat2, lon2 = np.meshgrid(self.lat, self.lon, indexing="ij")
        return self._build(time, variable, lat2, lon2, ("lat", "lon"), {"lat": self.lat, "lon": self.lon})
