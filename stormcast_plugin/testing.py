"""Test support and offline stand-ins: randomly initialised StormCast
packages and smooth synthetic data sources.

This module exists for tests, examples and the demo's fallback when its
trained model is absent; nothing in the forecast path uses it. Importing it
is cheap (numpy only); torch and the networks load when
:func:`random_package` is first called. A random package produces fields of
plausible magnitude but no weather forecast.

:class:`DemoStateSource` and :class:`DemoConditioningSource` follow the
earth2studio DataSource protocol and serve smooth fields, slowly moving
eastward, around a package's own normalisation statistics: they exercise a
forecast end to end without files or the network.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from stormcast_plugin.utils.time import as_times, epoch_hours

if TYPE_CHECKING:  # pragma: no cover - typing only
    import xarray as xr

    from stormcast_plugin.package.spec import StormCastPackage

__all__ = ["DEMO_DESCRIPTION", "DemoConditioningSource", "DemoStateSource", "random_demo_package", "random_package"]

_G = 9.80665


def _std_atmosphere_height(p_hpa: float) -> float:
    """Standard-atmosphere height (m) of the pressure level ``p_hpa``."""
    return 44330.8 * (1.0 - (p_hpa / 1013.25) ** 0.190263)


def _hybrid_height(level: int) -> float:
    """Rough height (m) of HRRR hybrid level ``level`` (1 ~ 10 m, 30 ~ 7 km)."""
    return 10.0 * level ** 1.93


def _variable_stats(name: str) -> tuple[float, float]:
    """Rough physical mean and std of a variable, by earth2studio lexicon name."""
    fixed = {
        "u10m": (0.0, 6.0), "v10m": (0.0, 6.0), "t2m": (288.0, 10.0), "d2m": (280.0, 9.0),
        "msl": (101325.0, 1000.0), "sp": (97000.0, 3000.0), "tcwv": (25.0, 12.0),
        "refc": (0.0, 12.0), "q2m": (0.008, 0.005), "r2m": (65.0, 20.0), "tp": (0.0005, 0.002),
    }
    if name in fixed:
        return fixed[name]
    m = re.fullmatch(r"([A-Za-z]+)(\d+)(hl)?", name)
    if m is None:
        return 0.0, 1.0
    var, level, hybrid = m.group(1), int(m.group(2)), m.group(3) is not None
    height = _hybrid_height(level) if hybrid else _std_atmosphere_height(float(level))
    if var in ("u", "v"):
        return 0.0, 5.0 + 0.0015 * height
    if var == "t":
        return max(288.0 - 0.0065 * height, 217.0), 10.0
    if var == "q":
        mean = 0.009 * math.exp(-height / 2500.0)
        return mean, 0.6 * mean + 1e-6
    if var == "Z":
        return height, 40.0 + 0.01 * height
    if var == "z":
        return _G * height, _G * (40.0 + 0.01 * height)
    if var == "p":
        mean = 101325.0 * math.exp(-height / 8000.0)
        return mean, 0.03 * mean
    if var == "r":
        return 60.0, 25.0
    if var == "w":
        return 0.0, 0.5
    return 0.0, 1.0


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, waves: int = 4) -> np.ndarray:
    """A smooth random field with zero mean and unit amplitude."""
    h, w = shape
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    f = np.zeros(shape)
    for _ in range(waves):
        ky, kx = rng.uniform(0.5, 2.5, size=2)
        py, px = rng.uniform(0, 2 * np.pi, size=2)
        f += rng.normal() * np.sin(2 * np.pi * ky * yy + py) * np.cos(2 * np.pi * kx * xx + px)
    f -= f.mean()
    return f / (np.abs(f).max() + 1e-12)


def _stats(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [_variable_stats(n) for n in names]
    return (np.array([m for m, _ in pairs], dtype=np.float32), np.array([s for _, s in pairs], dtype=np.float32))


def random_package(
    state_variables: Sequence[str],
    conditioning_variables: Sequence[str],
    invariant_names: Sequence[str],
    grid: Any,
    *,
    model_channels: int = 16,
    channel_mult: Sequence[int] = (1, 2, 2),
    num_blocks: int = 1,
    seed: int = 0,
    additive_pos_embed: bool = False,
    with_diffusion: bool = True,
    local_time: bool = False,
) -> "StormCastPackage":
    """A small randomly initialised package (tests and demos; not a forecast model).

    Statistics are rough physical magnitudes chosen from the variable names
    (temperatures near 280 K, winds 0 +- 8 m/s, pressures, geopotential by
    level, ...); unknown names get mean 0 and std 1. The invariants are
    smooth fields: ``lsm`` is 0/1, ``orography`` is positive (in km), others
    have zero mean. Every network parameter is perturbed with seeded noise so
    that the zero-initialised output layers give non-trivial outputs.

    Parameters
    ----------
    state_variables, conditioning_variables, invariant_names : sequence of str
        Channel names.
    grid : ModelGrid
        The grid; its sides must be multiples of ``2 ** (len(channel_mult) - 1)``.
    model_channels, channel_mult, num_blocks, additive_pos_embed
        Network size (see :class:`~stormcast_plugin.models.nn.SongUNetConfig`).
    seed : int
        Seeds weights, statistics and invariants.
    with_diffusion : bool
        Include the diffusion net.
    local_time : bool
        Networks that also take the two local-time channels.

    Returns
    -------
    StormCastPackage
        Validated.

    Raises
    ------
    ValueError
        When ``state_variables`` is empty or the grid does not fit the networks.
    """
    import torch

    from stormcast_plugin.models.nn.networks import EDMPrecond, RegressionNet
    from stormcast_plugin.models.nn.songunet import SongUNetConfig
    from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions
    from stormcast_plugin.package.spec import StormCastPackage
    from stormcast_plugin.utils.local_time import LOCAL_TIME_CHANNELS

    state_variables = tuple(str(v) for v in state_variables)
    conditioning_variables = tuple(str(v) for v in conditioning_variables)
    invariant_names = tuple(str(v) for v in invariant_names)
    c, ce, ci = len(state_variables), len(conditioning_variables), len(invariant_names)
    if c == 0:
        raise ValueError("state_variables is empty; give at least one state variable name")
    ct = ci + (len(LOCAL_TIME_CHANNELS) if local_time else 0)
    shape = tuple(int(s) for s in grid.shape)
    common = dict(
        img_resolution=shape,
        model_channels=int(model_channels),
        channel_mult=tuple(channel_mult),
        num_blocks=int(num_blocks),
        attn_resolutions=(),
    )
    reg_cfg = SongUNetConfig(in_channels=c + ce + ct, out_channels=c, embedding_type="zero", **common)
    diff_cfg = SongUNetConfig(
        in_channels=3 * c + ct, out_channels=c, embedding_type="positional",
        additive_pos_embed=bool(additive_pos_embed), **common,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        regression = RegressionNet(reg_cfg)
        diffusion = EDMPrecond(diff_cfg) if with_diffusion else None
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for net in (regression, diffusion):
            if net is None:
                continue
            for p in net.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))

    rng = np.random.default_rng(seed)
    invariants = np.zeros((ci, *shape), dtype=np.float32)
    for i, name in enumerate(invariant_names):
        f = _smooth_field(shape, rng)
        if name == "lsm":
            invariants[i] = (f > -0.2).astype(np.float32)
        elif name in ("orography", "orog", "z_sfc", "geopotential_surface"):
            invariants[i] = 1.5 * (f - f.min()) / (f.max() - f.min() + 1e-12) + 0.05
        else:
            invariants[i] = f
    state_mean, state_std = _stats(state_variables)
    cond_mean, cond_std = _stats(conditioning_variables)
    pkg = StormCastPackage(
        regression=regression.eval(),
        diffusion=None if diffusion is None else diffusion.eval(),
        state_variables=state_variables,
        conditioning_variables=conditioning_variables,
        invariant_names=invariant_names,
        state_mean=state_mean,
        state_std=state_std,
        conditioning_mean=cond_mean,
        conditioning_std=cond_std,
        invariants=invariants,
        grid=grid,
        sampler=SamplerOptions(),
        info={
            "name": "stormcast-random",
            "description": "Randomly initialised StormCast networks (for tests and demos); "
            "the output is not a weather forecast",
            "license": "Apache-2.0",
            "source": f"random_package(seed={seed})",
            "layout": "stormcast-plugin",
        },
        local_time=local_time,
    )
    return pkg.validate()


DEMO_DESCRIPTION = (
    "Randomly initialised demonstration network on a synthetic case: it exercises the "
    "pipeline end to end; its output is NOT a weather forecast."
)
"""Model-card description of :func:`random_demo_package`."""


def random_demo_package(seed: int = 0) -> "StormCastPackage":
    """A small randomly initialised StormCast package on the demo grid (tiny preset)."""
    from stormcast_plugin.demo import demo_grid
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
