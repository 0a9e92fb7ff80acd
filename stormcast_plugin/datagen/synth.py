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

Coordinates
-----------
Fields are computed in a plane :math:`(x, y)` in metres: the grid's own
Lambert conformal projection for HRRR crops (so winds are grid-relative, as
HRRR's are), or a local equirectangular plane about the grid's centre for
other grids. :math:`t` is hours since the configured start; local solar time
is :math:`\mathrm{LST} = t_\mathrm{UTC} + \lambda / 15` (:math:`\lambda` the
longitude in degrees east).

Random fields
-------------
Each large-scale pattern is a sum of :math:`N` Fourier modes with random
wave vectors :math:`\mathbf{k}_m` (wavelengths log-uniform in a band),
phases :math:`\phi_m` and red-spectrum amplitudes :math:`a_m`, slowly
modulated in time and translated by a displacement :math:`\mathbf{S}(t)`:

.. math::

    F(\mathbf{x}, t) = \sum_m a_m \,[1 + d \sin(2\pi t / P_m + \theta_m)]
        \cos(\mathbf{k}_m \cdot (\mathbf{x} - \mathbf{S}(t)) + \phi_m).

:math:`\mathbf{S}(t) = \beta \int_0^t (U_b, V_b)\, dt'` is the displacement by
a fraction :math:`\beta` of the background wind (below), integrated
analytically, so any hour is evaluated directly.

Surface
-------
A land pattern :math:`L` (wavelengths 150-2500 km) gives the land fraction
:math:`\ell = \mathrm{sigmoid}((L - c)/0.12)` and the land-sea mask
:math:`\ell > 0.5`, with the cut :math:`c` such that the grid's centre is
land (a continental domain, like HRRR's); orography is
:math:`h = h_\mathrm{max} (1 - e^{-\max(L - c, 0)/0.8}) (0.15 + 0.85\,
\mathrm{sigmoid}(1.5 R))` for a ridge pattern :math:`R` (100-800 km): zero
over sea, smooth, at most ``orography_max_m``.

Large-scale flow
----------------
A background wind (at the reference height, 10 km)
:math:`U_b(t) = U_0 + U_1 \sin(2\pi t/P_U + \theta_U)`,
:math:`V_b(t) = V_0 + V_1 \sin(2\pi t/P_V + \theta_V)` plus a streamfunction
:math:`\psi` (wavelengths 800-6000 km, rms wind 6 m/s) drifting with half
the background wind, and in the state (not the conditioning) a mesoscale
streamfunction :math:`\psi_m` (60-400 km, rms 1.5 m/s, amplitudes varying over
8-30 h) carried by the steering-level wind. At nominal height :math:`z`:

.. math::

    u = f_r R_\alpha [U_b\, \Pi(z) - s(z)\, \partial_y (\psi + \psi_m)] + u_\mathrm{LLJ}, \qquad
    v = f_r R_\alpha [V_b\, \Pi(z) + s(z)\, \partial_x (\psi + \psi_m)] + v_\mathrm{LLJ},

with the jet profile :math:`\Pi(z) = 0.45 + 0.55 z/10\,\mathrm{km}` up to
11 km (decreasing above), :math:`s(z) = 0.9 + 0.5 \min(z, 12\,\mathrm{km})/10\,\mathrm{km}`,
surface friction :math:`f_r = 1 - 0.45 (1 - 0.5 m) e^{-z/250\,\mathrm{m}}`
weakened by daytime mixing over land
:math:`m = \ell \max(0, \cos(2\pi(\mathrm{LST} - 14)/24))`, an Ekman
turning :math:`R_\alpha` by :math:`\alpha = 0.35\, e^{-z/400\,\mathrm{m}}`
rad to the left, and a low-level jet over land that turns clockwise once a
day like an inertial oscillation,
:math:`(u, v)_\mathrm{LLJ} = \ell\, (2 + 4 \max(0, \cos\phi))\,
(\sin\phi, \cos\phi)\, e^{-((z - 600)/400)^2}` m/s with
:math:`\phi = 2\pi(\mathrm{LST}-3)/24` (:math:`\ell` the land fraction): a
6 m/s southerly jet at 03 LST, 2 m/s by day. Its direction tells the time of
day, so one state says whether the land is warming or cooling. Temperature and
moisture anomalies are translated by the low-level (1.5 km) background wind,
i.e. advected by the large-scale flow as frozen patterns.

Temperature, pressure and height
--------------------------------
Sea-level climate temperature :math:`T_0 = 289.5 - 12 \cos(2\pi(\mathrm{doy}-20)/365.25)`
K at 38.5 N with a meridional gradient of -0.75 K/deg. Surface values:

.. math::

    T_{sc} = T_0 - 0.75 (\varphi - 38.5) - \Gamma h, \quad
    D = A_d (0.25 + 0.75 \ell) \cos(2\pi (\mathrm{LST} - 15)/24), \quad
    t2m = T_{sc} + T' + T_m + D + T_\mathrm{cp},

with :math:`\Gamma = 6.5` K/km, orography :math:`h`, the advected anomaly
:math:`T'` (rms 2.5 K, 250-2000 km), a mesoscale anomaly :math:`T_m` (rms
0.6 K, 60-400 km, state only, moving with :math:`\psi_m`), the diurnal cycle :math:`D` (:math:`A_d = 6` K over
land, peak at 15 LST, i.e. about 21 UTC in the central US) and cold pools
:math:`T_\mathrm{cp}`. Mean sea-level pressure is geostrophically consistent
with the flow at the surface plus a weak thermal low and the cells'
hydrostatic meso-highs:

.. math::

    \mathrm{msl} = p_{00} + \rho_0 f_0 [s(0)\psi + \Pi(0)(V_b x' - U_b y')] - 30\,D
        + p_s \frac{g\, H_\mathrm{cp}\, (-T_\mathrm{cp})}{R_d\, T^2},

(:math:`p_{00} = 101325` Pa, :math:`\rho_0 = 1.2`, :math:`f_0 = 10^{-4}`,
:math:`H_\mathrm{cp} = 800` m) and surface pressure is its reduction to the
terrain, :math:`p_s = \mathrm{msl}\, \exp(-g h / (R_d \bar T_v))` with
:math:`\bar T_v = (t2m + \Gamma h / 2)(1 + 0.608 q_s)`.

Hybrid level :math:`k` (1..30; 31..33 extend the internal column to 13 km for
the conditioning) has the nominal height
:math:`z_k = 8 + 793 (e^{0.09 (k - 1)} - 1)` m (level 1: 8 m, 5: 352 m,
10: 1.0 km, 15: 2.0 km, 20: 3.6 km, 25: 6.1 km, 30: 10.0 km) and the
sigma-pressure hybrid pressure

.. math::

    p_k = \sigma_k [w_k p_s + (1 - w_k) p_{00}], \quad
    \sigma_k = e^{-g z_k / (R_d\, 255\,\mathrm{K})}, \quad
    w_k = \min(1, e^{-(z_k - 1500\,\mathrm{m}) / 4000\,\mathrm{m}}).

Temperature on the levels follows a constant lapse rate in pressure, softly
floored at a 212 K tropopause, plus anomalies with vertical weights:

.. math::

    T_k = \mathcal{F}\big(T_{sc} (p_k/p_s)^{R_d \Gamma / g}\big)
        + T' e^{-z_k/8\,\mathrm{km}} + T_m e^{-z_k/3\,\mathrm{km}} + D e^{-z_k/700\,\mathrm{m}}
        + T_\mathrm{cp} e^{-z_k/800\,\mathrm{m}} + 1.5\, c\, e^{-((z_k - 6\,\mathrm{km})/2.5\,\mathrm{km})^2}

(:math:`c` the cells' updraft cores: latent warming aloft). Humidity is
:math:`q_k = \mathrm{RH}_k\, q_\mathrm{sat}(T_k - D e^{-z_k/700}, p_k)` with
:math:`\mathrm{RH}_k = \mathrm{RH}_s (0.2 + 0.8 e^{-z_k/3\,\mathrm{km}})`,
:math:`\mathrm{RH}_s = 0.15 + 0.77\, \mathrm{sigmoid}(0.4 + 1.2 M)` for an
advected moisture pattern :math:`M` (moist tongues), capped at saturation
and at a 299 K dew point, and raised to 90 % of saturation in cell cores
(weight :math:`e^{-((z - 4\,\mathrm{km})/3\,\mathrm{km})^2}`).
:math:`q_\mathrm{sat} = \epsilon e_s / (p - (1 - \epsilon) e_s)`,
:math:`e_s = 611.2 \exp(17.67 (T - 273.15)/(T - 29.65))` Pa (Bolton 1980).

Geopotential height (m) is integrated hydrostatically upward from the terrain
with the layer-mean virtual temperature :math:`T_v = T(1 + 0.608 q)`:

.. math::

    Z_1 = h + \frac{R_d}{g} \frac{T_{v,s} + T_{v,1}}{2} \ln\frac{p_s}{p_1}, \qquad
    Z_{k+1} = Z_k + \frac{R_d}{g} \frac{T_{v,k} + T_{v,k+1}}{2} \ln\frac{p_k}{p_{k+1}}.

Convective cells
----------------
Births are Poisson in space and time. Each hour the instability proxy (a
moist-static-energy difference in K between 500 m and 5 km)

.. math::

    I = \Big(T + \frac{L_v}{c_p} q\Big)_{500\,\mathrm{m}}
      - \Big(T + \frac{g\, \Delta z}{c_p} + \frac{L_v}{c_p} q\Big)_{5\,\mathrm{km}}

is evaluated on candidate boxes (``candidate_spacing_km``) covering the grid
plus ``cell_margin_km``; a box of area :math:`A` gets
:math:`\mathrm{Poisson}(\lambda A\, \mathrm{sigmoid}((I - I_0)/\Delta I))`
births (:math:`\lambda` = ``birth_rate`` per :math:`10^4` km² per hour) at
uniform random places and times within the box and the hour. A cell moves
with the large-scale wind at the steering level (3 km, roughly 700 hPa) plus
its own random propagation (``propagation_ms``), integrated with a midpoint
step. A cell at the peak of its outflow also triggers daughters on its gust
front, :math:`\mathrm{Poisson}(\lambda_d\, b\, \mathrm{sigmoid}((I - I_0)/\Delta I))`
per hour (:math:`\lambda_d` = ``daughter_rate``), ahead of it within 90
degrees of its motion, which builds multicell clusters and lines. Its life has
a growth (:math:`\tau_g \approx` ``growth_hours``), a
mature (``mature_hours``) and a decay phase (``decay_hours``):

.. math::

    a(\tau) = \begin{cases}
        \sin^2(\tfrac{\pi}{2} \tau/\tau_g) & \tau < \tau_g \\
        1 & \tau_g \le \tau < \tau_g + \tau_m \\
        \cos^2(\tfrac{\pi}{2} (\tau - \tau_g - \tau_m)/\tau_d) & \text{then,}
    \end{cases}
    \qquad b(\tau) = \sin(\pi\, s^{1.5}),\ s = \frac{\tau - \tau_g/2}{\tau_g + \tau_m + \tau_d - \tau_g/2}.

Reflectivity is an elliptical Gaussian core (radius :math:`\sigma`, about
``radius_km``, peak :math:`D_p` up to ``max_dbz``) with a stratiform shield
(30 dBZ, radius :math:`2.5\sigma`) while it decays:

.. math::

    \mathrm{refc} = \mathrm{clip}\big(\max(\mathrm{refc}_\mathrm{bg},
        \max_\mathrm{cells}[-10 + (D_p + 10)\sqrt{a}\, e^{-\rho^2/2}]), -10, 75\big),

with a clear-air background :math:`\mathrm{refc}_\mathrm{bg} = -10 + 8\,
\mathrm{clip}((\mathrm{RH}_s - 0.6)/0.3, 0, 1)` in [-10, -2] dBZ. The cold
pool :math:`T_\mathrm{cp} = -\Delta T\, b\, e^{-r^2 / 2R^2}` (:math:`\Delta T`
in ``cold_pool_k``, :math:`R` growing from :math:`1.5\sigma` to
:math:`3\sigma`) and a divergent radial outflow ending in a gust front,
:math:`v_r = V_o b (r/R_o) e^{(1 - (r/R_o)^4)/4}` (:math:`R_o = 1.1 R`,
:math:`V_o` about ``outflow_ms``, saturating at 25 m/s), act on the low levels (weights
:math:`e^{-z/800\,\mathrm{m}}` and :math:`e^{-z/600\,\mathrm{m}} +
0.6 e^{-((z - 9.5\,\mathrm{km})/1.5\,\mathrm{km})^2}`, the latter also the
anvil-level outflow). Overlapping cold pools saturate at -8 K.

Conditioning
------------
The same large-scale column (no cells, no mesoscale perturbations, orography
and land fraction box-averaged over one grid spacing) on a regular
latitude/longitude grid
(``cond_resolution`` degrees, latitudes descending like ERA5, longitudes in
0..360 where the domain allows) covering the model grid plus
``cond_margin`` degrees, interpolated linearly in :math:`\ln p` to 1000, 850,
500 and 250 hPa (extrapolated below ground with the standard lapse rate, as
ERA5 does). ``z`` is geopotential :math:`g Z` (m²/s²) and
:math:`\mathrm{tcwv} = \int q\, dp / g` (kg/m²). Winds are plane components.

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

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from stormcast_plugin.utils.grid import HRRR_NX, HRRR_NY, ModelGrid
from stormcast_plugin.utils.projection import latlon_to_lcc, lcc_to_latlon
from stormcast_plugin.utils.time import as_time
from stormcast_plugin.utils.variables import CONDITIONING_VARIABLES, INVARIANTS, PRESETS, STATE_VARIABLES
from stormcast_plugin.io.dataset_store import DatasetStore

__all__ = [
    "SynthConfig",
    "SyntheticAtmosphere",
    "synthesize",
    "parse_grid",
    "hrrr_crop",
    "level_height",
    "STORMCAST_V1_CENTER",
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
STORMCAST_V1_CENTER = (529, 899)
"""Native HRRR row and column at the centre of the StormCast v1 domain."""

_SURFACE_STATE = ("u10m", "v10m", "t2m", "msl", "sp", "tcwv", "refc")
_SURFACE_COND = ("u10m", "v10m", "t2m", "msl", "sp", "tcwv")
_HL = re.compile(r"^([uvtqZp])(\d+)hl$")
_PL = re.compile(r"^([uvztq])(\d+)$")

GridSpec = Union[ModelGrid, Sequence[int], str]


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


_Z_NOMINAL = level_height(np.arange(1, N_LEVELS_INTERNAL + 1))


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


def parse_grid(text: str | Sequence[int]) -> tuple[int, int]:
    """Parse a grid size ``"HxW"`` (``"64x64"``, ``"128X96"``) into ``(H, W)``.

    Parameters
    ----------
    text : str or (int, int)
        The size; a pair of integers is validated and returned.

    Returns
    -------
    tuple[int, int]
        Rows and columns.

    Raises
    ------
    ValueError
        If the text is not two positive integers separated by ``x``.
    """
    if not isinstance(text, str):
        try:
            h, w = (int(v) for v in text)
        except (TypeError, ValueError):
            raise ValueError(f"grid size {text!r} is not a pair of integers; pass (H, W) or 'HxW'") from None
    else:
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
        if m is None:
            raise ValueError(f"grid size {text!r} is not of the form 'HxW'; pass for example '64x64'")
        h, w = int(m.group(1)), int(m.group(2))
    if h < 2 or w < 2:
        raise ValueError(f"grid size {h}x{w} is too small; give at least 2 rows and 2 columns")
    return h, w


def hrrr_crop(shape: Sequence[int]) -> ModelGrid:
    """An ``(H, W)`` crop of the HRRR grid centred on the StormCast v1 domain.

    The crop's rows are centred on native row 529 and its columns on native
    column 899 (the centre of StormCast v1's 512 x 640 domain).

    Parameters
    ----------
    shape : (int, int)
        Rows and columns of the crop.

    Returns
    -------
    ModelGrid

    Raises
    ------
    ValueError
        If the crop does not fit in the 1059 x 1799 native HRRR grid.
    """
    h, w = parse_grid(shape)
    r0 = STORMCAST_V1_CENTER[0] - h // 2
    c0 = STORMCAST_V1_CENTER[1] - w // 2
    if r0 < 0 or r0 + h > HRRR_NY or c0 < 0 or c0 + w > HRRR_NX:
        raise ValueError(
            f"a {h}x{w} crop centred on HRRR row {STORMCAST_V1_CENTER[0]}, column {STORMCAST_V1_CENTER[1]} "
            f"does not fit in the {HRRR_NY} x {HRRR_NX} native grid; use at most "
            f"{2 * min(STORMCAST_V1_CENTER[0], HRRR_NY - STORMCAST_V1_CENTER[0])} rows and "
            f"{2 * min(STORMCAST_V1_CENTER[1], HRRR_NX - STORMCAST_V1_CENTER[1])} columns, "
            "or pass a ModelGrid"
        )
    return ModelGrid.hrrr(rows=(r0, r0 + h), cols=(c0, c0 + w))


def _as_grid(grid: GridSpec) -> ModelGrid:
    if isinstance(grid, ModelGrid):
        return grid
    if isinstance(grid, (str, Sequence)):
        return hrrr_crop(parse_grid(grid))
    raise ValueError(
        f"grid must be a ModelGrid, an (H, W) pair or an 'HxW' string, got {type(grid).__name__}"
    )


def _check_names(kind: str, names: Sequence[str]) -> tuple[str, ...]:
    out = tuple(str(n) for n in names)
    if not out:
        raise ValueError(f"{kind} variables are empty; pass at least one name or a preset")
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        raise ValueError(f"{kind} variables {dup} are duplicated; list each once")
    surface = _SURFACE_STATE if kind == "state" else _SURFACE_COND
    known = STATE_VARIABLES if kind == "state" else CONDITIONING_VARIABLES
    bad = []
    for n in out:
        if n in surface:
            continue
        if kind == "state":
            m = _HL.match(n)
            ok = m is not None and 1 <= int(m.group(2)) <= 30
        else:
            m = _PL.match(n)
            ok = m is not None and 50 <= int(m.group(2)) <= 1000
        if not ok:
            bad.append(n)
    if bad:
        form = ("u/v/t/q/Z/p + hybrid level 1..30 + 'hl' (e.g. t5hl)" if kind == "state"
                else "u/v/z/t/q + pressure level 50..1000 hPa (e.g. t850)")
        raise ValueError(
            f"{kind} variables {bad} cannot be synthesised; use surface names {list(surface)} or {form}, "
            f"for example the StormCast names {list(known[:6])}..."
        )
    return out


@dataclass
class SynthConfig:
    """Parameters of a :class:`SyntheticAtmosphere`.

    Parameters
    ----------
    grid : ModelGrid, (int, int) or str
        The model grid, or a size ``(H, W)`` / ``"HxW"`` for an HRRR crop
        centred on the StormCast v1 domain (:func:`hrrr_crop`).
    start : str or datetime-like
        The first hour (hour index 0), on a whole hour.
    preset : str
        Variable preset of :data:`~stormcast_plugin.utils.variables.PRESETS`
        (``"full"``, ``"small"``, ``"tiny"``), unless the variables are given.
    state_variables, conditioning_variables : sequence of str, optional
        Explicit channel lists (override the preset).
    seed : int
        Seed of every random choice.
    cell_seed : int, optional
        Seed of the convective cells alone (births, attributes); by default
        ``seed``. Varying it with a fixed ``seed`` gives an ensemble of cell
        realisations in the same large-scale weather.
    terrain_seed : int, optional
        Seed of the static fields alone (orography and land, the same as
        ``seed = terrain_seed`` would give); by default ``seed``. Varying
        ``seed`` with a fixed ``terrain_seed`` gives other weather over the same
        domain, as other years of a real one do: a held-out period for a
        model trained on that domain.
    birth_rate : float
        Expected cell births per 10^4 km² per hour where the instability is
        well above ``instability_threshold_k``.
    instability_threshold_k, instability_width_k : float
        :math:`I_0` and :math:`\\Delta I` of the birth probability
        ``sigmoid((I - I0) / dI)`` (K).
    growth_hours : float
        Mean duration of the growth phase (h).
    mature_hours, decay_hours : (float, float)
        Ranges of the mature and decay phase durations (h).
    radius_km : float
        Median core radius :math:`\\sigma` of the reflectivity Gaussian (km).
    max_dbz : float
        Highest peak reflectivity of a cell (dBZ), 40..75.
    cold_pool_k : (float, float)
        Range of the cold-pool depth :math:`\\Delta T` (K).
    outflow_ms : float
        Typical peak outflow speed (m/s).
    propagation_ms : float
        Standard deviation of each cell's motion relative to the steering
        wind (m/s).
    daughter_rate : float
        Expected new cells per hour triggered on the gust front of a cell at
        the peak of its outflow (where the air is unstable): multicell
        clusters and lines.
    cell_margin_km : float
        Cells are simulated this far beyond the grid, so they can move in.
    candidate_spacing_km : float
        Size of the boxes in which births are drawn.
    spinup_hours : int
        Hours of cell simulation before hour 0, so hour 0 has a mature
        population.
    diurnal_amplitude_k : float
        Diurnal amplitude of 2 m temperature over land (K; a quarter of it
        over sea).
    orography_max_m : float
        Highest orography (m).
    cond_resolution : float
        Spacing of the conditioning latitude/longitude grid (degrees).
    cond_margin : float
        Margin of the conditioning grid beyond the model grid (degrees).
    """

    grid: Any = (64, 64)
    start: Any = "2024-05-01T00"
    preset: str = "small"
    state_variables: Sequence[str] | None = None
    conditioning_variables: Sequence[str] | None = None
    seed: int = 0
    cell_seed: int | None = None
    terrain_seed: int | None = None
    birth_rate: float = 0.35
    instability_threshold_k: float = -1.0
    instability_width_k: float = 3.0
    growth_hours: float = 1.0
    mature_hours: tuple[float, float] = (0.5, 2.0)
    decay_hours: tuple[float, float] = (2.0, 4.0)
    radius_km: float = 8.0
    max_dbz: float = 62.0
    cold_pool_k: tuple[float, float] = (2.0, 6.0)
    outflow_ms: float = 7.0
    propagation_ms: float = 2.0
    daughter_rate: float = 0.4
    cell_margin_km: float = 150.0
    candidate_spacing_km: float = 12.0
    spinup_hours: int = 12
    diurnal_amplitude_k: float = 6.0
    orography_max_m: float = 1500.0
    cond_resolution: float = 0.25
    cond_margin: float = 1.0

    def __post_init__(self) -> None:
        self.grid = _as_grid(self.grid)
        self.start = as_time(self.start, "start", whole_hours=True).astype("datetime64[h]")
        if self.state_variables is None or self.conditioning_variables is None:
            if self.preset not in PRESETS:
                raise ValueError(
                    f"preset {self.preset!r} is unknown; choose one of {sorted(PRESETS)} or pass "
                    "state_variables and conditioning_variables"
                )
        if self.state_variables is None:
            self.state_variables = PRESETS[self.preset]["state"]
        if self.conditioning_variables is None:
            self.conditioning_variables = PRESETS[self.preset]["conditioning"]
        self.state_variables = _check_names("state", self.state_variables)
        self.conditioning_variables = _check_names("conditioning", self.conditioning_variables)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed {self.seed!r} must be a non-negative integer")
        self.seed = int(self.seed)
        for name in ("cell_seed", "terrain_seed"):
            v = getattr(self, name)
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                    raise ValueError(f"{name} {v!r} must be a non-negative integer or None")
                setattr(self, name, int(v))

        def positive(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            ok = isinstance(v, (int, float, np.number)) and math.isfinite(float(v)) and (
                float(v) >= 0 if allow_zero else float(v) > 0)
            if not ok:
                need = "non-negative" if allow_zero else "positive"
                raise ValueError(f"{name} = {v!r} must be a {need} finite number")

        for name in ("growth_hours", "radius_km", "instability_width_k", "cell_margin_km",
                     "candidate_spacing_km", "cond_resolution"):
            positive(name)
        for name in ("birth_rate", "daughter_rate", "outflow_ms", "propagation_ms", "diurnal_amplitude_k",
                     "orography_max_m", "cond_margin"):
            positive(name, allow_zero=True)
        for name in ("mature_hours", "decay_hours", "cold_pool_k"):
            v = getattr(self, name)
            try:
                lo, hi = (float(x) for x in v)
            except (TypeError, ValueError):
                raise ValueError(f"{name} = {v!r} must be a (low, high) pair of numbers") from None
            low_ok = lo > 0 if name == "decay_hours" else lo >= 0
            if not (low_ok and hi >= lo and math.isfinite(hi)):
                raise ValueError(f"{name} = {v!r} must satisfy 0 <= low <= high (decay: low > 0)")
            setattr(self, name, (lo, hi))
        if not 40.0 <= float(self.max_dbz) <= 75.0:
            raise ValueError(f"max_dbz = {self.max_dbz!r} must lie in [40, 75] dBZ")
        if not float(self.instability_threshold_k) == float(self.instability_threshold_k):
            raise ValueError("instability_threshold_k is NaN; pass a temperature difference in K")
        if int(self.spinup_hours) != self.spinup_hours or self.spinup_hours < 0:
            raise ValueError(f"spinup_hours = {self.spinup_hours!r} must be a non-negative integer")
        self.spinup_hours = int(self.spinup_hours)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (the grid via :meth:`ModelGrid.to_dict`)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["grid"] = self.grid.to_dict()
        d["start"] = str(self.start)
        d["state_variables"] = list(self.state_variables)
        d["conditioning_variables"] = list(self.conditioning_variables)
        for k in ("mature_hours", "decay_hours", "cold_pool_k"):
            d[k] = list(d[k])
        return d


# --------------------------------------------------------------------------
# Random Fourier fields and geometry
# --------------------------------------------------------------------------


class _Modes:
    """A sum of random Fourier modes, translated and slowly modulated."""

    def __init__(self, rng: np.random.Generator, n: int, lam_km: tuple[float, float], rms: float,
                 slope: float = 1.0, depth: float = 0.0, periods_h: tuple[float, float] = (48.0, 120.0),
                 velocity: bool = False) -> None:
        lam = np.exp(rng.uniform(math.log(lam_km[0]), math.log(lam_km[1]), n)) * 1e3
        ang = rng.uniform(0.0, 2 * np.pi, n)
        k = 2 * np.pi / lam
        self.kx = k * np.cos(ang)
        self.ky = k * np.sin(ang)
        self.phase = rng.uniform(0.0, 2 * np.pi, n)
        amp = (lam / lam.max()) ** slope
        amp *= rms / math.sqrt(float(np.sum(amp ** 2)) / 2.0)
        if velocity:  # rms is that of the gradient: psi amplitude = velocity / k
            amp = amp / k
        self.amp = amp
        self.period = rng.uniform(periods_h[0], periods_h[1], n)
        self.mod_phase = rng.uniform(0.0, 2 * np.pi, n)
        self.depth = depth

    def _theta(self, y: np.ndarray, x: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
        return (np.multiply.outer(self.kx, x - shift[1]) + np.multiply.outer(self.ky, y - shift[0])
                + self.phase.reshape((-1,) + (1,) * np.ndim(x)))

    def _amp(self, t: float) -> np.ndarray:
        a = self.amp * (1.0 + self.depth * np.sin(2 * np.pi * t / self.period + self.mod_phase))
        return a

    def value(self, y: np.ndarray, x: np.ndarray, t: float = 0.0,
              shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """:math:`F` at points ``(y, x)`` (m) and time ``t`` (h)."""
        return np.tensordot(self._amp(t), np.cos(self._theta(y, x, shift)), axes=1)

    def value_and_gradient(self, y: np.ndarray, x: np.ndarray, t: float,
                           shift: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:math:`F`, :math:`\\partial_y F` and :math:`\\partial_x F`."""
        th = self._theta(y, x, shift)
        a = self._amp(t)
        s = np.sin(th)
        val = np.tensordot(a, np.cos(th), axes=1)
        dy = -np.tensordot(a * self.ky, s, axes=1)
        dx = -np.tensordot(a * self.kx, s, axes=1)
        return val, dy, dx


class _Plane:
    """Plane coordinates (m) of latitude/longitude points for a grid."""

    def __init__(self, grid: ModelGrid) -> None:
        proj = dict(grid.projection or {})
        self.lcc = proj.get("grid_mapping_name") == "lambert_conformal_conic"
        self.projection = proj
        if self.lcc:
            yy, xx = np.meshgrid(grid.y, grid.x, indexing="ij")
            self.y0, self.x0 = float(yy.mean()), float(xx.mean())
        else:
            lat, lon = grid.lat, grid.lon
            self.lat0 = float(lat.mean())
            ang = np.radians(lon)
            self.lon0 = float(np.degrees(np.arctan2(np.sin(ang).mean(), np.cos(ang).mean()))) % 360.0
            self.radius = 6371229.0
            self.y0 = self.x0 = 0.0

    def forward(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.lcc:
            return latlon_to_lcc(lat, lon, self.projection)
        dlon = (np.asarray(lon) - self.lon0 + 180.0) % 360.0 - 180.0
        x = self.radius * math.cos(math.radians(self.lat0)) * np.radians(dlon)
        y = self.radius * np.radians(np.asarray(lat) - self.lat0)
        return y, x

    def inverse(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.lcc:
            return lcc_to_latlon(y, x, self.projection, meshgrid=False)
        lat = self.lat0 + np.degrees(np.asarray(y) / self.radius)
        lon = (self.lon0 + np.degrees(np.asarray(x) / (self.radius * math.cos(math.radians(self.lat0))))) % 360.0
        return lat, lon


@dataclass
class _Points:
    """A set of points with their plane coordinates and static surface fields."""

    y: np.ndarray
    x: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    orog: np.ndarray
    land: np.ndarray  # smooth land fraction in [0, 1]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _qsat(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Saturation specific humidity (kg/kg) over water (Bolton 1980)."""
    es = 611.2 * np.exp(17.67 * (t - 273.15) / (t - 29.65))
    es = np.minimum(es, 0.5 * p)
    return EPS * es / (p - (1.0 - EPS) * es)


# --------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------

_CELL_KEYS = ("id", "y", "x", "t0", "peak", "sigma", "aspect", "orient", "tg", "tm", "td",
              "cold", "outflow", "dv", "du")


def _empty_cells() -> dict[str, np.ndarray]:
    return {k: np.zeros(0, dtype=np.int64 if k == "id" else np.float64) for k in _CELL_KEYS}


def _envelopes(tau: np.ndarray, tg: np.ndarray, tm: np.ndarray, td: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reflectivity envelope a, cold-pool/outflow envelope b, decay fraction d."""
    grow = np.sin(0.5 * np.pi * np.clip(tau / tg, 0.0, 1.0)) ** 2
    d = np.clip((tau - tg - tm) / td, 0.0, 1.0)
    decay = np.cos(0.5 * np.pi * d) ** 2
    a = np.where(tau < tg, grow, decay)
    a = np.where(tau < 0, 0.0, a)
    end = tg + tm + td
    s = np.clip((tau - 0.5 * tg) / (end - 0.5 * tg), 0.0, 1.0)
    b = np.sin(np.pi * s ** 1.5)
    return a, b, d


# --------------------------------------------------------------------------
# The atmosphere
# --------------------------------------------------------------------------


class SyntheticAtmosphere:
    """The synthetic atmosphere of a :class:`SynthConfig` (see the module docstring).

    Parameters
    ----------
    config : SynthConfig, optional
        Parameters; the defaults give a 64 x 64 HRRR crop with the ``small``
        preset.

    Attributes
    ----------
    grid : ModelGrid
        The model grid of the state.
    state_variables, conditioning_variables, invariant_names : tuple of str
        Channel names, in channel order.
    cond_lat, cond_lon : np.ndarray
        The conditioning grid: descending latitudes, ascending longitudes.

    Notes
    -----
    The large-scale fields are analytic, so :meth:`conditioning` is O(1) for
    any hour. The cells are simulated forward hour by hour from
    ``-spinup_hours``; :meth:`state` for increasing hours costs one step per
    hour, and asking for an earlier hour re-simulates from the start (with the
    same result). The last state is cached.
    """

    def __init__(self, config: SynthConfig | None = None) -> None:
        cfg = SynthConfig() if config is None else config
        if not isinstance(cfg, SynthConfig):
            raise ValueError(f"config must be a SynthConfig, got {type(cfg).__name__}")
        self.config = cfg
        self.grid: ModelGrid = cfg.grid
        self.state_variables: tuple[str, ...] = tuple(cfg.state_variables)
        self.conditioning_variables: tuple[str, ...] = tuple(cfg.conditioning_variables)
        self.invariant_names: tuple[str, ...] = tuple(INVARIANTS)

        start = cfg.start
        self._hod0 = float((start - start.astype("datetime64[D]")) / np.timedelta64(1, "h"))
        self._doy0 = float((start - start.astype("datetime64[Y]")) / np.timedelta64(1, "h")) / 24.0 + 1.0

        root = np.random.SeedSequence(cfg.seed)
        static_seq, self._cell_seq = root.spawn(2)
        if cfg.cell_seed is not None:
            self._cell_seq = np.random.SeedSequence(cfg.cell_seed).spawn(2)[1]
        rng = np.random.default_rng(static_seq)
        self._psi, self._tanom, self._moist, self._landf, self._ridge = self._large_scale_modes(rng)
        if cfg.terrain_seed is not None and cfg.terrain_seed != cfg.seed:
            # The land and ridge patterns that seed ``terrain_seed`` draws, with this seed's weather.
            terrain_rng = np.random.default_rng(np.random.SeedSequence(cfg.terrain_seed).spawn(2)[0])
            self._landf, self._ridge = self._large_scale_modes(terrain_rng)[3:]
        # Mesoscale (60-400 km) wind and temperature perturbations: in the state, not the conditioning.
        self._meso_psi = _Modes(rng, 16, (60.0, 400.0), rms=1.5, slope=0.3, depth=0.8, periods_h=(8.0, 30.0),
                                velocity=True)
        self._meso_t = _Modes(rng, 16, (60.0, 400.0), rms=0.6, slope=0.3, depth=0.8, periods_h=(8.0, 30.0))
        self._ub = (rng.uniform(10.0, 16.0), rng.uniform(2.0, 5.0), rng.uniform(72.0, 144.0),
                    rng.uniform(0.0, 2 * np.pi))
        self._vb = (rng.uniform(-3.0, 3.0), rng.uniform(1.0, 4.0), rng.uniform(60.0, 130.0),
                    rng.uniform(0.0, 2 * np.pi))

        self._plane = _Plane(self.grid)
        if self._plane.lcc:
            gy, gx = np.meshgrid(np.asarray(self.grid.y, np.float64), np.asarray(self.grid.x, np.float64),
                                 indexing="ij")
        else:
            gy, gx = self._plane.forward(self.grid.lat, self.grid.lon)
        self._gy, self._gx = gy, gx
        # Land where the land pattern exceeds the cut: about 75 % of an unbounded
        # plane, and always the grid's centre (a continental domain, like HRRR's).
        centre = float(self._landf.value(np.array([gy.mean()]), np.array([gx.mean()]))[0])
        self._land_cut = min(-0.7, centre - 1.0)
        self._model = self._points(gy.ravel(), gx.ravel(), self.grid.lat.ravel(), self.grid.lon.ravel())
        self._yc, self._xc = float(gy.mean()), float(gx.mean())

        self.cond_lat, self.cond_lon = _cond_axes(self.grid.lat, self.grid.lon, cfg.cond_resolution,
                                                  cfg.cond_margin)
        clat, clon = np.meshgrid(self.cond_lat, self.cond_lon, indexing="ij")
        cy, cx = self._plane.forward(clat, clon)
        self._cond = self._points(cy.ravel(), cx.ravel(), clat.ravel(), clon.ravel(),
                                  smooth=cfg.cond_resolution * 111e3)

        # Candidate birth boxes covering the grid plus the margin.
        m = cfg.cell_margin_km * 1e3
        sp = cfg.candidate_spacing_km * 1e3
        self._box = (float(gy.min()) - m, float(gy.max()) + m, float(gx.min()) - m, float(gx.max()) + m)
        ny = max(1, int(math.ceil((self._box[1] - self._box[0]) / sp)))
        nx = max(1, int(math.ceil((self._box[3] - self._box[2]) / sp)))
        cyy = self._box[0] + sp * (np.arange(ny) + 0.5)
        cxx = self._box[2] + sp * (np.arange(nx) + 0.5)
        by, bx = np.meshgrid(cyy, cxx, indexing="ij")
        blat, blon = self._plane.inverse(by.ravel(), bx.ravel())
        self._cand = self._points(by.ravel(), bx.ravel(), np.asarray(blat), np.asarray(blon))
        self._cand_spacing = sp

        self._separable = self._plane.lcc
        # The state needs the column up to its highest hybrid level (all of it for tcwv).
        levels = [int(m.group(2)) for m in map(_HL.match, self.state_variables) if m]
        self._n_state_levels = N_LEVELS_INTERNAL if "tcwv" in self.state_variables else max(levels, default=1)
        self._wind_levels = sorted({int(m.group(2)) - 1 for m in map(_HL.match, self.state_variables)
                                    if m and m.group(1) in "uv"})
        self._reset_cells()
        self._state_cache: tuple[int, np.ndarray] | None = None

    @staticmethod
    def _large_scale_modes(rng: np.random.Generator) -> tuple["_Modes", ...]:
        """Stream function, temperature and moisture anomalies, land and ridge patterns."""
        return (_Modes(rng, 10, (800.0, 6000.0), rms=6.0, slope=0.5, depth=0.4, velocity=True),
                _Modes(rng, 12, (250.0, 2000.0), rms=2.5, slope=0.5, depth=0.5),
                _Modes(rng, 12, (250.0, 2000.0), rms=1.0, slope=0.5, depth=0.5),
                _Modes(rng, 12, (150.0, 2500.0), rms=1.0, slope=0.7),
                _Modes(rng, 12, (100.0, 800.0), rms=1.0, slope=0.5))

    # -- static fields -------------------------------------------------------

    def _static(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Orography (m) and smooth land fraction at plane points."""
        lf = self._landf.value(y, x)
        land = _sigmoid((lf - self._land_cut) / 0.12)
        ridge = _sigmoid(1.5 * self._ridge.value(y, x))
        inland = 1.0 - np.exp(-np.maximum(lf - self._land_cut, 0.0) / 0.8)
        return self.config.orography_max_m * inland * (0.15 + 0.85 * ridge), land

    def _points(self, y: np.ndarray, x: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                smooth: float = 0.0) -> _Points:
        """Points with their static fields, box-averaged over ``smooth`` metres
        (the coarser orography and coastlines of a global analysis)."""
        if smooth > 0:
            offsets = np.linspace(-0.5, 0.5, 5) * smooth
            orog = np.zeros_like(y, dtype=np.float64)
            land = np.zeros_like(y, dtype=np.float64)
            for oy in offsets:
                for ox in offsets:
                    o, l_ = self._static(y + oy, x + ox)
                    orog += o / offsets.size ** 2
                    land += l_ / offsets.size ** 2
        else:
            orog, land = self._static(y, x)
        return _Points(y=y, x=x, lat=np.asarray(lat, np.float64), lon=np.asarray(lon, np.float64),
                       orog=orog, land=land)

    def invariants(self) -> np.ndarray:
        """Static fields ``[2, H, W]``: land-sea mask (0/1) and orography (m, >= 0)."""
        h, w = self.grid.shape
        lsm = (self._model.land > 0.5).astype(np.float64)
        return np.stack([lsm, self._model.orog]).reshape(2, h, w).astype(np.float32)

    # -- large scale -----------------------------------------------------------

    def _background(self, t: float) -> tuple[float, float]:
        u0, u1, pu, th_u = self._ub
        v0, v1, pv, th_v = self._vb
        return (u0 + u1 * math.sin(2 * np.pi * t / pu + th_u), v0 + v1 * math.sin(2 * np.pi * t / pv + th_v))

    def _shift(self, t: float, factor: float) -> tuple[float, float]:
        """Displacement (m) by ``factor`` times the background wind over [0, t] hours."""
        u0, u1, pu, th_u = self._ub
        v0, v1, pv, th_v = self._vb
        su = u0 * t + u1 * pu / (2 * np.pi) * (math.cos(th_u) - math.cos(2 * np.pi * t / pu + th_u))
        sv = v0 * t + v1 * pv / (2 * np.pi) * (math.cos(th_v) - math.cos(2 * np.pi * t / pv + th_v))
        return (factor * 3600.0 * sv, factor * 3600.0 * su)

    @staticmethod
    def _jet(z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, np.float64)
        return np.where(z <= 11000.0, 0.45 + 0.55 * z / 10000.0, 1.055 - 0.5 * (z - 11000.0) / 10000.0)

    @staticmethod
    def _psi_scale(z: np.ndarray) -> np.ndarray:
        return 0.9 + 0.5 * np.minimum(np.asarray(z, np.float64), 12000.0) / 10000.0

    def _wind_profile(self, z: np.ndarray, ub: float, vb: float, dpdy: np.ndarray, dpdx: np.ndarray,
                      mixing: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Large-scale (u, v) at nominal heights ``z`` [L] and points [P] -> [L, P].

        ``mixing`` in [0, 1] (daytime convective mixing) weakens the surface friction.
        """
        z = np.asarray(z, np.float64)[:, None]
        jet = self._jet(z)
        sc = self._psi_scale(z)
        u = ub * jet - sc * dpdy
        v = vb * jet + sc * dpdx
        alpha = 0.35 * np.exp(-z / 400.0)
        fr = 1.0 - 0.45 * (1.0 - 0.5 * mixing) * np.exp(-z / 250.0)
        ca, sa = np.cos(alpha), np.sin(alpha)
        return fr * (u * ca - v * sa), fr * (u * sa + v * ca)

    def steering_wind(self, y: np.ndarray, x: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Large-scale wind (m/s) at the steering height (3 km) at plane points ``(y, x)``.

        Parameters
        ----------
        y, x : np.ndarray
            Plane coordinates (m).
        t : float
            Hours since the start.

        Returns
        -------
        tuple[np.ndarray, np.ndarray]
            ``u`` and ``v`` at the points.
        """
        y = np.atleast_1d(np.asarray(y, np.float64))
        x = np.atleast_1d(np.asarray(x, np.float64))
        _, dpdy, dpdx = self._psi.value_and_gradient(y, x, t, self._shift(t, 0.5))
        steer = self._shift(t, self._jet(np.array(STEERING_HEIGHT)).item())
        _, my, mx = self._meso_psi.value_and_gradient(y, x, t, steer)
        dpdy, dpdx = dpdy + my, dpdx + mx
        ub, vb = self._background(t)
        u, v = self._wind_profile(np.array([STEERING_HEIGHT]), ub, vb, dpdy, dpdx)
        return u[0], v[0]

    def _column(self, pts: _Points, t: float, z: np.ndarray, cells: dict[str, np.ndarray] | None = None,
                heights: bool = True, meso: bool = True, wind_levels: Sequence[int] | None = None
                ) -> dict[str, np.ndarray]:
        """Every field at points ``pts``, time ``t`` (h) and nominal heights ``z`` (see module docstring).

        ``cells`` (rasterised on the points) adds the convective cells and
        ``meso`` the mesoscale perturbations; the conditioning has neither.
        ``wind_levels`` (indices into ``z``) limits the winds to those levels.
        """
        cfg = self.config
        z = np.asarray(z, np.float64)
        zc = z[:, None]
        utc = self._hod0 + t
        doy = self._doy0 + t / 24.0
        lst = (utc + pts.lon / 15.0) % 24.0

        # Surface large scale.
        t0 = 289.5 - 12.0 * math.cos(2 * np.pi * (doy - 20.0) / 365.25)
        t_sc = t0 - 0.75 * (pts.lat - 38.5) - GAMMA * pts.orog
        adv = self._shift(t, self._jet(np.array(1500.0)).item())
        t_an = self._tanom.value(pts.y, pts.x, t, adv)
        moist = self._moist.value(pts.y, pts.x, t, adv)
        diurnal = cfg.diurnal_amplitude_k * (0.25 + 0.75 * pts.land) * np.cos(2 * np.pi * (lst - 15.0) / 24.0)
        rh_s = 0.15 + 0.77 * _sigmoid(0.4 + 1.2 * moist)
        psi, dpdy, dpdx = self._psi.value_and_gradient(pts.y, pts.x, t, self._shift(t, 0.5))
        t_meso = 0.0
        if meso:
            steer = self._shift(t, self._jet(np.array(STEERING_HEIGHT)).item())
            _, my, mx = self._meso_psi.value_and_gradient(pts.y, pts.x, t, steer)
            dpdy, dpdx = dpdy + my, dpdx + mx
            t_meso = self._meso_t.value(pts.y, pts.x, t, steer)
        ub, vb = self._background(t)
        j0 = self._jet(np.array(0.0)).item()
        msl = (P00 + RHO0 * F0 * (self._psi_scale(np.array(0.0)).item() * psi
                                  + j0 * (vb * (pts.x - self._xc) - ub * (pts.y - self._yc)))
               - 30.0 * diurnal)

        cold = 0.0 if cells is None else cells["cold"]
        core = 0.0 if cells is None else cells["core"]
        t_surf = t_sc + t_an + t_meso + diurnal + cold
        q_s = rh_s * _qsat(t_sc + t_an, np.full_like(t_sc, 0.95 * P00))
        if cells is not None:
            msl = msl + msl * G * 800.0 * (-cold) / (RD * t_surf ** 2)
        tv_mean = (t_surf + 0.5 * GAMMA * pts.orog) * (1.0 + 0.608 * q_s)
        p_s = msl * np.exp(-G * pts.orog / (RD * tv_mean))
        q_s = np.minimum(rh_s * _qsat(t_sc + t_an, p_s), _qsat(np.minimum(t_surf, T_DEW_MAX), p_s))

        # Levels.
        sigma = np.exp(-G * zc / (RD * T_SIGMA))
        w = np.minimum(1.0, np.exp(-(zc - 1500.0) / 4000.0))
        p = sigma * (w * p_s + (1.0 - w) * P00)
        t_clim = t_sc * (p / p_s) ** KAPPA_G
        t_clim = T_TROP + 3.0 * np.logaddexp(0.0, (t_clim - T_TROP) / 3.0)
        t_dry = t_clim + t_an * np.exp(-zc / 8000.0) + t_meso * np.exp(-zc / 3000.0)
        temp = t_dry + diurnal * np.exp(-zc / 700.0) + cold * np.exp(-zc / 800.0)
        temp = temp + 1.5 * core * np.exp(-(((zc - 6000.0) / 2500.0) ** 2))
        rh = rh_s * (0.2 + 0.8 * np.exp(-zc / 3000.0))
        q = rh * _qsat(t_dry, p)
        qs_t = _qsat(temp, p)
        if cells is not None:
            q = np.maximum(q, 0.9 * core * np.exp(-(((zc - 4000.0) / 3000.0) ** 2)) * qs_t)
        es_dew = 611.2 * math.exp(17.67 * (T_DEW_MAX - 273.15) / (T_DEW_MAX - 29.65))
        q = np.minimum(q, np.minimum(qs_t, EPS * es_dew / (p - (1.0 - EPS) * es_dew)))

        mixing = pts.land * np.maximum(0.0, np.cos(2 * np.pi * (lst - 14.0) / 24.0))
        # Winds only where needed (the state's levels); zero elsewhere.
        sel = np.arange(z.size) if wind_levels is None else np.asarray(wind_levels, dtype=np.int64)
        zw = zc[sel]
        uw, vw = self._wind_profile(z[sel], ub, vb, dpdy, dpdx, mixing)
        # Low-level jet: an ageostrophic wind over land turning clockwise once a day,
        # from the south at 03 LST and strongest at night.
        phase = 2 * np.pi * (lst - 3.0) / 24.0
        jet = pts.land * (2.0 + 4.0 * np.maximum(0.0, np.cos(phase)))
        llj_u, llj_v = jet * np.sin(phase), jet * np.cos(phase)
        prof = np.exp(-(((zw - 600.0) / 400.0) ** 2))
        uw, vw = uw + llj_u * prof, vw + llj_v * prof
        u10, v10 = self._wind_profile(np.array([10.0]), ub, vb, dpdy, dpdx, mixing)
        w10 = math.exp(-((590.0 / 400.0) ** 2))
        u10, v10 = u10[0] + llj_u * w10, v10[0] + llj_v * w10
        if cells is not None:
            wo = np.exp(-zw / 600.0) + 0.6 * np.exp(-(((zw - 9500.0) / 1500.0) ** 2))
            uw = uw + wo * cells["ou"]
            vw = vw + wo * cells["ov"]
            w10 = math.exp(-10.0 / 600.0)
            u10 = u10 + w10 * cells["ou"]
            v10 = v10 + w10 * cells["ov"]

        if wind_levels is None:
            u, v = uw, vw
        else:
            u, v = np.zeros_like(temp), np.zeros_like(temp)
            u[sel], v[sel] = uw, vw
        out: dict[str, np.ndarray] = {
            "t": temp, "q": q, "u": u, "v": v, "p": p,
            "t2m": t_surf, "u10m": u10, "v10m": v10, "msl": msl, "sp": p_s, "q_s": q_s,
            "rh_s": rh_s, "t_surf_ls": t_sc + t_an + t_meso + diurnal,
        }
        if heights:
            tv = temp * (1.0 + 0.608 * q)
            tv_s = t_surf * (1.0 + 0.608 * q_s)
            lnp = np.log(p)
            dz = np.empty_like(temp)
            dz[0] = RD / G * 0.5 * (tv_s + tv[0]) * (np.log(p_s) - lnp[0])
            dz[1:] = RD / G * 0.5 * (tv[:-1] + tv[1:]) * (lnp[:-1] - lnp[1:])
            out["Z"] = pts.orog + np.cumsum(dz, axis=0)
            tcwv = 0.5 * (q_s + q[0]) * (p_s - p[0]) + np.sum(0.5 * (q[:-1] + q[1:]) * (p[:-1] - p[1:]), axis=0)
            out["tcwv"] = tcwv / G
        bg = -10.0 + 8.0 * np.clip((rh_s - 0.6) / 0.3, 0.0, 1.0)
        refc = bg if cells is None else np.maximum(bg, cells["refc"])
        out["refc"] = np.clip(refc, -10.0, 75.0)
        return out

    def instability(self, y: np.ndarray, x: np.ndarray, lat: np.ndarray, lon: np.ndarray, t: float
                    ) -> np.ndarray:
        """The instability proxy :math:`I` (K) of the large-scale fields at points.

        Parameters
        ----------
        y, x : np.ndarray
            Plane coordinates (m).
        lat, lon : np.ndarray
            Latitude and longitude (degrees) of the same points.
        t : float
            Hours since the start.

        Returns
        -------
        np.ndarray
            :math:`I` at the points.
        """
        y = np.asarray(y, np.float64).ravel()
        x = np.asarray(x, np.float64).ravel()
        pts = self._points(y, x, np.asarray(lat, np.float64).ravel(), np.asarray(lon, np.float64).ravel())
        return self._instability(pts, t)

    def _instability(self, pts: _Points, t: float) -> np.ndarray:
        zl, zm = 500.0, 5000.0
        col = self._column(pts, t, np.array([zl, zm]), heights=False, wind_levels=())
        tl, tm = col["t"]
        ql, qm = col["q"]
        return (tl + LV / CP * ql) - (tm + G * (zm - zl) / CP + LV / CP * qm)

    # -- cells -----------------------------------------------------------------

    def _reset_cells(self) -> None:
        self._rng = np.random.default_rng(self._cell_seq)
        self._cells = _empty_cells()
        self._cells_hour = -self.config.spinup_hours
        self._next_id = 0

    def _move(self, cells: dict[str, np.ndarray], t_from: np.ndarray | float, t_to: float) -> None:
        """Midpoint step of the cells from ``t_from`` to ``t_to`` (hours), in place."""
        dt = (t_to - np.asarray(t_from, np.float64)) * 3600.0
        if cells["y"].size == 0:
            return
        tm = 0.5 * (np.asarray(t_from, np.float64) + t_to)
        t_eval = float(np.mean(tm))  # the large scale changes little within an hour
        u, v = self.steering_wind(cells["y"], cells["x"], t_eval)
        ym = cells["y"] + 0.5 * dt * (v + cells["dv"])
        xm = cells["x"] + 0.5 * dt * (u + cells["du"])
        u, v = self.steering_wind(ym, xm, t_eval)
        cells["y"] = cells["y"] + dt * (v + cells["dv"])
        cells["x"] = cells["x"] + dt * (u + cells["du"])

    def _new_cells(self, y: np.ndarray, x: np.ndarray, t0: np.ndarray, strength: np.ndarray
                   ) -> dict[str, np.ndarray]:
        """Cells born at plane points ``(y, x)`` and times ``t0`` with random attributes."""
        cfg = self.config
        rng = self._rng
        n = y.size
        new = _empty_cells()
        if n == 0:
            return new
        new["id"] = self._next_id + np.arange(n, dtype=np.int64)
        self._next_id += n
        new["y"], new["x"], new["t0"] = y, x, t0
        new["peak"] = cfg.max_dbz - (cfg.max_dbz - 40.0) * rng.beta(1.2, 2.5, n) - 4.0 * (1.0 - strength)
        new["sigma"] = cfg.radius_km * 1e3 * np.clip(np.exp(rng.normal(0.0, 0.25, n)), 0.5, 2.0)
        new["aspect"] = rng.uniform(1.0, 2.0, n)
        new["orient"] = rng.uniform(0.0, np.pi, n)
        new["tg"] = cfg.growth_hours * rng.uniform(0.7, 1.3, n)
        new["tm"] = rng.uniform(cfg.mature_hours[0], cfg.mature_hours[1], n)
        new["td"] = rng.uniform(cfg.decay_hours[0], cfg.decay_hours[1], n)
        new["cold"] = rng.uniform(cfg.cold_pool_k[0], cfg.cold_pool_k[1], n)
        new["outflow"] = cfg.outflow_ms * rng.uniform(0.6, 1.2, n)
        new["dv"] = rng.normal(0.0, cfg.propagation_ms, n)
        new["du"] = rng.normal(0.0, cfg.propagation_ms, n)
        return new

    def _births(self, hour: int) -> dict[str, np.ndarray]:
        """Cells born in (hour - 1, hour], moved to ``hour``.

        Spontaneous births in the candidate boxes, then daughters triggered on
        the gust fronts of the cells alive at ``hour - 1``.
        """
        cfg = self.config
        rng = self._rng
        inst = self._instability(self._cand, hour - 0.5)
        prob = _sigmoid((inst - cfg.instability_threshold_k) / cfg.instability_width_k)
        area = self._cand_spacing ** 2 / 1e10  # in 10^4 km2
        counts = rng.poisson(cfg.birth_rate * area * prob)
        idx = np.repeat(np.arange(counts.size), counts)
        n = idx.size
        sp = self._cand_spacing
        y = self._cand.y[idx] + sp * rng.uniform(-0.5, 0.5, n)
        x = self._cand.x[idx] + sp * rng.uniform(-0.5, 0.5, n)
        new = self._new_cells(y, x, hour - rng.uniform(0.0, 1.0, n), prob[idx])

        par = self._cells
        if cfg.daughter_rate > 0 and par["y"].size:
            tau = hour - 0.5 - par["t0"]
            _, b, _ = _envelopes(tau, par["tg"], par["tm"], par["td"])
            lat, lon = self._plane.inverse(par["y"], par["x"])
            pts = self._points(par["y"], par["x"], np.asarray(lat), np.asarray(lon))
            p_par = _sigmoid((self._instability(pts, hour - 0.5) - cfg.instability_threshold_k)
                             / cfg.instability_width_k)
            kids = rng.poisson(cfg.daughter_rate * b * p_par)
            j = np.repeat(np.arange(kids.size), kids)
            m = j.size
            if m:
                u, v = self.steering_wind(par["y"][j], par["x"][j], hour - 0.5)
                heading = np.arctan2(v + par["dv"][j], u + par["du"][j]) + rng.uniform(-0.5 * np.pi, 0.5 * np.pi, m)
                s_life = np.clip((tau[j] - 0.5 * par["tg"][j])
                                 / (par["tg"][j] + par["tm"][j] + par["td"][j] - 0.5 * par["tg"][j]), 0.0, 1.0)
                dist = par["sigma"][j] * (1.5 + 1.5 * s_life) * rng.uniform(0.8, 1.2, m)
                kid = self._new_cells(par["y"][j] + dist * np.sin(heading), par["x"][j] + dist * np.cos(heading),
                                      hour - rng.uniform(0.0, 1.0, m), p_par[j])
                new = {k: np.concatenate([new[k], kid[k]]) for k in _CELL_KEYS}
        if new["y"].size:
            self._move(new, new["t0"], float(hour))
        return new

    def _step_cells(self) -> None:
        """Advance the population from ``_cells_hour`` to the next hour."""
        hour = self._cells_hour + 1
        new = self._births(hour)  # uses the parents at hour - 1
        cells = self._cells
        self._move(cells, float(hour - 1), float(hour))
        cells = {k: np.concatenate([cells[k], new[k]]) for k in _CELL_KEYS}
        tau = hour - cells["t0"]
        y0, y1, x0, x1 = self._box
        keep = ((tau < cells["tg"] + cells["tm"] + cells["td"])
                & (cells["y"] > y0) & (cells["y"] < y1) & (cells["x"] > x0) & (cells["x"] < x1))
        self._cells = {k: v[keep] for k, v in cells.items()}
        self._cells_hour = hour

    def _advance_to(self, hour: int) -> None:
        if hour < self._cells_hour:
            self._reset_cells()
        while self._cells_hour < hour:
            self._step_cells()

    def cells(self, hour_index: int) -> dict[str, np.ndarray]:
        """The cell population at hour ``hour_index`` (a copy).

        Returns
        -------
        dict[str, np.ndarray]
            One entry per cell and key: ``id``, plane position ``y``/``x`` (m),
            birth time ``t0`` (hours since the start), ``age`` (h), ``peak``
            dBZ, ``sigma`` (m), life phases ``tg``/``tm``/``td`` (h),
            envelopes ``a`` (reflectivity) and ``b`` (cold pool/outflow), the
            current core reflectivity ``dbz``, and ``cold`` (K) / ``outflow``
            (m/s) amplitudes.
        """
        hour = self._check_hour(hour_index)
        self._advance_to(hour)
        c = {k: v.copy() for k, v in self._cells.items()}
        c["age"] = hour - c["t0"]
        c["a"], c["b"], _ = _envelopes(c["age"], c["tg"], c["tm"], c["td"])
        c["dbz"] = -10.0 + (c["peak"] + 10.0) * np.sqrt(c["a"])
        return c

    def _cell_fields(self, hour: int) -> dict[str, np.ndarray]:
        """Rasterise the cells at ``hour`` on the model grid (flattened [P] arrays)."""
        h, w = self.grid.shape
        refc = np.full((h, w), -10.0)
        cold = np.zeros((h, w))
        ou = np.zeros((h, w))
        ov = np.zeros((h, w))
        core = np.zeros((h, w))
        c = self._cells
        if c["y"].size:
            tau = hour - c["t0"]
            a, b, d = _envelopes(tau, c["tg"], c["tm"], c["td"])
            sig = c["sigma"] * (0.6 + 0.4 * np.clip(tau / c["tg"], 0.0, 1.0)) * (1.0 + 0.4 * d)
            dbz = -10.0 + (c["peak"] + 10.0) * np.sqrt(a)
            strat = np.sin(np.pi * d) * (d > 0)
            s_life = np.clip((tau - 0.5 * c["tg"]) / (c["tg"] + c["tm"] + c["td"] - 0.5 * c["tg"]), 0.0, 1.0)
            r_cp = c["sigma"] * (1.5 + 1.5 * s_life)
            r_out = 1.1 * r_cp
            reach = np.maximum.reduce([4.0 * sig * np.sqrt(c["aspect"]), 3.5 * r_cp, 4.0 * r_out,
                                       3.0 * 2.5 * sig * np.sqrt(c["aspect"])])
            gy, gx = self._gy, self._gx
            y1d, x1d = gy[:, 0], gx[0, :]
            for i in range(c["y"].size):
                if self._separable:
                    rows = np.flatnonzero(np.abs(y1d - c["y"][i]) < reach[i])
                    cols = np.flatnonzero(np.abs(x1d - c["x"][i]) < reach[i])
                    if rows.size == 0 or cols.size == 0:
                        continue
                    win = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
                else:
                    win = (slice(None), slice(None))
                dy = gy[win] - c["y"][i]
                dx = gx[win] - c["x"][i]
                co, si = math.cos(c["orient"][i]), math.sin(c["orient"][i])
                e = math.sqrt(c["aspect"][i])
                xr = (dx * co + dy * si) / (sig[i] * e)
                yr = (-dx * si + dy * co) * e / sig[i]
                rho2 = xr * xr + yr * yr
                shape = np.exp(-0.5 * rho2)
                field = -10.0 + (dbz[i] + 10.0) * shape
                if strat[i] > 0:
                    field = np.maximum(field, -10.0 + 40.0 * strat[i] * np.exp(-0.5 * rho2 / 6.25))
                refc[win] = np.maximum(refc[win], field)
                core[win] = np.maximum(core[win], a[i] * shape)
                r2 = dx * dx + dy * dy
                if b[i] > 0:
                    cold[win] -= c["cold"][i] * b[i] * np.exp(-0.5 * r2 / r_cp[i] ** 2)
                    x2 = r2 / r_out[i] ** 2
                    g = c["outflow"][i] * b[i] / r_out[i] * np.exp(0.25 * (1.0 - x2 * x2))
                    ou[win] += g * dx
                    ov[win] += g * dy
        cold = -8.0 * np.tanh(-cold / 8.0)
        speed = np.hypot(ou, ov)
        lim = np.where(speed > 0, 25.0 * np.tanh(speed / 25.0) / np.maximum(speed, 1e-9), 1.0)
        return {"refc": refc.ravel(), "cold": cold.ravel(), "ou": (ou * lim).ravel(),
                "ov": (ov * lim).ravel(), "core": core.ravel()}

    # -- public fields ---------------------------------------------------------

    def _check_hour(self, hour_index: int) -> int:
        if isinstance(hour_index, bool) or not isinstance(hour_index, (int, np.integer)):
            raise ValueError(f"hour_index {hour_index!r} must be an integer (hours since the start)")
        if hour_index < -self.config.spinup_hours:
            raise ValueError(
                f"hour_index {hour_index} is before the cell spin-up (-{self.config.spinup_hours}); "
                "pass an hour >= 0 or raise spinup_hours"
            )
        return int(hour_index)

    def time(self, hour_index: int) -> np.datetime64:
        """The date-time of hour ``hour_index``."""
        return self.config.start + np.timedelta64(self._check_hour(hour_index), "h")

    def state(self, hour_index: int) -> np.ndarray:
        """The state ``[C, H, W]`` (float32) at hour ``hour_index`` since the start.

        Channels follow :attr:`state_variables`: winds (m/s), temperatures (K),
        specific humidity (kg/kg), geopotential height ``Z`` (m), pressures (Pa)
        and reflectivity (dBZ).
        """
        hour = self._check_hour(hour_index)
        if self._state_cache is not None and self._state_cache[0] == hour:
            return self._state_cache[1].copy()
        self._advance_to(hour)
        fields = self._cell_fields(hour)
        col = self._column(self._model, float(hour), _Z_NOMINAL[:self._n_state_levels], fields,
                           wind_levels=self._wind_levels)
        h, w = self.grid.shape
        out = np.empty((len(self.state_variables), h, w), dtype=np.float32)
        for i, name in enumerate(self.state_variables):
            m = _HL.match(name)
            if m:
                out[i] = col[m.group(1)][int(m.group(2)) - 1].reshape(h, w)
            else:
                out[i] = col[name].reshape(h, w)
        self._state_cache = (hour, out)
        return out.copy()

    def conditioning(self, hour_index: int) -> np.ndarray:
        """The ERA5-like conditioning ``[Ce, nlat, nlon]`` (float32) at hour ``hour_index``.

        Large-scale fields only (no cells) on the grid :attr:`cond_lat` x
        :attr:`cond_lon`, channels :attr:`conditioning_variables`; ``z`` is
        geopotential (m²/s²), ``tcwv`` kg/m².
        """
        hour = self._check_hour(hour_index)
        col = self._column(self._cond, float(hour), _Z_NOMINAL, None, meso=False)
        shape = (self.cond_lat.size, self.cond_lon.size)
        out = np.empty((len(self.conditioning_variables),) + shape, dtype=np.float32)
        cache: dict[int, dict[str, np.ndarray]] = {}
        for i, name in enumerate(self.conditioning_variables):
            m = _PL.match(name)
            if m and name not in _SURFACE_COND:
                lev = int(m.group(2))
                if lev not in cache:
                    cache[lev] = _to_pressure(col, self._cond.orog, lev * 100.0)
                val = cache[lev][m.group(1)]
            else:
                val = col[name]
            out[i] = val.reshape(shape)
        return out


def _to_pressure(col: dict[str, np.ndarray], orog: np.ndarray, level_pa: float) -> dict[str, np.ndarray]:
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


def _cond_axes(lat: np.ndarray, lon: np.ndarray, res: float, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Descending latitudes and ascending longitudes covering the grid plus a margin."""
    lat_hi = min(90.0, math.ceil((float(lat.max()) + margin) / res - 1e-9) * res)
    lat_lo = max(-90.0, math.floor((float(lat.min()) - margin) / res + 1e-9) * res)
    n_lat = int(round((lat_hi - lat_lo) / res)) + 1
    lats = np.round(lat_hi - res * np.arange(n_lat), 6)
    ang = np.radians(lon)
    centre = float(np.degrees(np.arctan2(np.sin(ang).mean(), np.cos(ang).mean()))) % 360.0
    rel = (np.asarray(lon) - centre + 180.0) % 360.0 - 180.0
    lo = math.floor((centre + float(rel.min()) - margin) / res + 1e-9) * res
    hi = math.ceil((centre + float(rel.max()) + margin) / res - 1e-9) * res
    if hi - lo >= 360.0:
        lons = np.round(res * np.arange(int(round(360.0 / res))), 6)
    else:
        if lo >= 360.0 or hi < 0.0:
            shift = -360.0 * math.floor(lo / 360.0)
            lo, hi = lo + shift, hi + shift
        lons = np.round(lo + res * np.arange(int(round((hi - lo) / res)) + 1), 6)
    return lats, lons


# --------------------------------------------------------------------------
# Writing a dataset
# --------------------------------------------------------------------------


def synthesize(
    path: str | Path,
    start: Any,
    hours: int,
    grid: GridSpec = (64, 64),
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
    grid : (int, int), str or ModelGrid
        ``(H, W)`` or ``"HxW"`` for an HRRR crop centred on the StormCast v1
        domain, or any model grid.
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
        Further :class:`SynthConfig` fields (``birth_rate``, ``radius_km`` ...).

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
    nc, ne = len(atm.state_variables), len(atm.conditioning_variables)
    acc = {k: [np.zeros(n), np.zeros(n), None] for k, n in (("state", nc), ("cond", ne))}
    count = {"state": 0, "cond": 0}

    def accumulate(key: str, data: np.ndarray) -> None:
        flat = data.reshape(data.shape[0], -1).astype(np.float64)
        if acc[key][2] is None:
            acc[key][2] = flat.mean(axis=1)
        dev = flat - acc[key][2][:, None]
        acc[key][0] += dev.sum(axis=1)
        acc[key][1] += (dev * dev).sum(axis=1)
        count[key] += flat.shape[1]

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
            accumulate("state", s)
            accumulate("cond", c)
    store.write_invariants(atm.invariants())
    if statistics:
        res = {}
        for key in ("state", "cond"):
            s1, s2, ref = acc[key]
            mean_dev = s1 / count[key]
            var = np.maximum(s2 / count[key] - mean_dev ** 2, 0.0)
            mean = ref + mean_dev
            std = np.sqrt(var)
            # A channel constant over the dataset still needs std > 0 to normalise.
            std = np.maximum(std, 1e-6 * np.maximum(1.0, np.abs(mean)))
            res[key] = (mean, std)
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
