r"""Physical constants, the hybrid levels and thermodynamic helpers of the synthetic atmosphere.

Hybrid level :math:`k` (1..30; 31..33 extend the internal column to 13 km for
the conditioning) has the nominal height
:math:`z_k = 8 + 793 (e^{0.09 (k - 1)} - 1)` m (level 1: 8 m, 5: 352 m,
10: 1.0 km, 15: 2.0 km, 20: 3.6 km, 25: 6.1 km, 30: 10.0 km).
Saturation specific humidity is
:math:`q_\mathrm{sat} = \epsilon e_s / (p - (1 - \epsilon) e_s)` with
:math:`e_s = 611.2 \exp(17.67 (T - 273.15)/(T - 29.65))` Pa (Bolton 1980).
A column is put on pressure levels by linear interpolation in :math:`\ln p`,
extrapolated below ground with the standard lapse rate, as ERA5 does.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "CP", "EPS", "F0", "G", "GAMMA", "KAPPA_G", "LV", "N_LEVELS_INTERNAL", "P00", "RD", "RHO0", "STEERING_HEIGHT",
    "T_DEW_MAX", "T_SIGMA", "T_TROP", "Z_NOMINAL", "level_height", "qsat", "sigmoid", "to_pressure",
]

# Physical constants (SI).
RD = 287.05
"""Gas constant of dry air (J/kg/K)."""
G = 9.80665
"""Gravity (m/s2)."""
CP = 1004.6
"""Specific heat of dry air at constant pressure (J/kg/K)."""
LV = 2.501e6
"""Latent heat of vaporisation (J/kg)."""
EPS = 0.622
"""Ratio of the gas constants of dry air and water vapour."""
GAMMA = 0.0065
"""Standard lapse rate (K/m)."""
P00 = 101325.0
"""Reference sea-level pressure (Pa)."""
RHO0 = 1.2
"""Reference near-surface air density (kg/m3)."""
F0 = 1.0e-4
"""Coriolis parameter of the f-plane (1/s)."""
T_SIGMA = 255.0
"""Temperature (K) of the scale height of the hybrid sigma levels."""
T_TROP = 212.0
"""Tropopause temperature (K): the soft floor of the lapse-rate profile."""
T_DEW_MAX = 299.0
"""Highest dew point (K) the humidity may reach."""
KAPPA_G = RD * GAMMA / G
"""Exponent of the constant-lapse-rate profile, T ~ p ** (Rd Gamma / g)."""

N_LEVELS_INTERNAL = 33
"""Hybrid levels of the internal column (1..30 are HRRR's, 31..33 reach 13 km)."""
STEERING_HEIGHT = 3000.0
"""Nominal height (m) of the cells' steering wind (about 700 hPa)."""



def level_height(level: int | np.ndarray) -> np.ndarray:
    """Nominal height above ground (m) of hybrid level(s) ``level`` (1-based).

    :math:`z_k = 8 + 793 (e^{0.09 (k - 1)} - 1)`: 8 m at level 1, 1 km at 10,
    3.6 km at 20 and 10 km at 30.

    Parameters
    ----------
    level : int or np.ndarray
        Hybrid level index, 1 or more.

    Returns
    -------
    np.ndarray
        Heights in metres (float64, same shape as ``level``).
    """
    k = np.asarray(level, dtype=np.float64)
    return 8.0 + 793.0 * (np.exp(0.09 * (k - 1.0)) - 1.0)


Z_NOMINAL = level_height(np.arange(1, N_LEVELS_INTERNAL + 1))
"""Nominal heights (m) of the internal column's hybrid levels 1..33."""


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, computed through tanh (no overflow)."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def qsat(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Saturation specific humidity (kg/kg) over water (Bolton 1980)."""
    es = 611.2 * np.exp(17.67 * (t - 273.15) / (t - 29.65))
    es = np.minimum(es, 0.5 * p)
    return EPS * es / (p - (1.0 - EPS) * es)


def to_pressure(col: dict[str, np.ndarray], orog: np.ndarray, level_pa: float) -> dict[str, np.ndarray]:
    """Interpolate a column linearly in ln p to ``level_pa`` (ERA5-like extrapolation)."""
    p_s = col["sp"]
    lnp = np.log(np.concatenate([p_s[None], col["p"]]))
    fields = {
        "t": np.concatenate([col["t_surf_ls"][None], col["t"]]),
        "q": np.concatenate([col["q_s"][None], col["q"]]),
        "u": np.concatenate([col["u10m"][None], col["u"]]),
        "v": np.concatenate([col["v10m"][None], col["v"]]),
        "Z": np.concatenate([orog[None], col["Z"]]),
    }
    n = lnp.shape[0]
    target = math.log(level_pa)
    above = np.sum(lnp > target, axis=0)  # levels with p > target
    j = np.clip(above, 1, n - 1)
    cols = np.arange(lnp.shape[1])
    l0, l1 = lnp[j - 1, cols], lnp[j, cols]
    wgt = np.clip((l0 - target) / (l0 - l1), 0.0, 1.0)
    out = {k: (1.0 - wgt) * f[j - 1, cols] + wgt * f[j, cols] for k, f in fields.items()}
    # Below ground: standard-atmosphere extrapolation from the surface.
    below = above == 0
    if below.any():
        ratio = (level_pa / p_s[below]) ** KAPPA_G
        ts = fields["t"][0, below]
        out["t"][below] = ts * ratio
        out["Z"][below] = orog[below] - ts / GAMMA * (ratio - 1.0)
    # Above the top: isothermal.
    top = above == n
    if top.any():
        tt = fields["t"][-1, top]
        out["t"][top] = tt
        out["Z"][top] = fields["Z"][-1, top] + RD * tt / G * (lnp[-1, top] - target)
    out["z"] = G * out.pop("Z")
    return out
