"""Test support: small randomly initialised StormCast packages.

This module exists for tests, examples and the demo's fallback when its
trained model is absent; nothing in the forecast path uses it. Importing it
is cheap (numpy only); torch and the networks load when
:func:`random_package` is first called. A random package produces fields of
plausible magnitude but no weather forecast.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from stormcast_plugin.package.spec import StormCastPackage

__all__ = ["random_package"]

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
