r"""The large-scale flow and the thermodynamic column of the synthetic atmosphere.

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

Hybrid level :math:`k` at the nominal height :math:`z_k`
(:func:`~stormcast_plugin.datagen.synth.physics.level_height`) has the
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
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from stormcast_plugin.datagen.synth.config import SynthConfig
from stormcast_plugin.datagen.synth.fields import FourierModes, Points
from stormcast_plugin.datagen.synth.physics import (
    CP,
    EPS,
    F0,
    G,
    GAMMA,
    KAPPA_G,
    LV,
    P00,
    RD,
    RHO0,
    STEERING_HEIGHT,
    T_DEW_MAX,
    T_SIGMA,
    T_TROP,
    qsat,
    sigmoid,
)

__all__ = ["LargeScale"]


class LargeScale:
    """The large-scale flow and the thermodynamic column (see the module docstring).

    Parameters
    ----------
    config : SynthConfig
        The atmosphere's parameters (start, diurnal amplitude).
    psi, tanom, moist : FourierModes
        Stream function, temperature and moisture anomaly patterns.
    rng : np.random.Generator
        Draws the mesoscale patterns and the background wind, in that order.
    centre : (float, float)
        Plane ``(y, x)`` (m) of the grid's centre (the origin of the pressure gradient).
    """

    def __init__(self, config: SynthConfig, psi: FourierModes, tanom: FourierModes, moist: FourierModes,
                 rng: np.random.Generator, centre: tuple[float, float]) -> None:
        self.config = config
        self._psi, self._tanom, self._moist = psi, tanom, moist
        # Mesoscale (60-400 km) wind and temperature perturbations: in the state, not the conditioning.
        self._meso_psi = FourierModes(rng, 16, (60.0, 400.0), rms=1.5, slope=0.3, depth=0.8,
                                      periods_h=(8.0, 30.0), velocity=True)
        self._meso_t = FourierModes(rng, 16, (60.0, 400.0), rms=0.6, slope=0.3, depth=0.8, periods_h=(8.0, 30.0))
        self._ub = (rng.uniform(10.0, 16.0), rng.uniform(2.0, 5.0), rng.uniform(72.0, 144.0),
                    rng.uniform(0.0, 2 * np.pi))
        self._vb = (rng.uniform(-3.0, 3.0), rng.uniform(1.0, 4.0), rng.uniform(60.0, 130.0),
                    rng.uniform(0.0, 2 * np.pi))
        start = config.start
        self._hod0 = float((start - start.astype("datetime64[D]")) / np.timedelta64(1, "h"))
        self._doy0 = float((start - start.astype("datetime64[Y]")) / np.timedelta64(1, "h")) / 24.0 + 1.0
        self._yc, self._xc = centre

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

    def column(self, pts: Points, t: float, z: np.ndarray, cells: dict[str, np.ndarray] | None = None,
                heights: bool = True, meso: bool = True, wind_levels: Sequence[int] | None = None
                ) -> dict[str, np.ndarray]:
        """Every field at points ``pts``, time ``t`` (h) and nominal heights ``z`` (see the module docstring).

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
        rh_s = 0.15 + 0.77 * sigmoid(0.4 + 1.2 * moist)
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
        q_s = rh_s * qsat(t_sc + t_an, np.full_like(t_sc, 0.95 * P00))
        if cells is not None:
            msl = msl + msl * G * 800.0 * (-cold) / (RD * t_surf ** 2)
        tv_mean = (t_surf + 0.5 * GAMMA * pts.orog) * (1.0 + 0.608 * q_s)
        p_s = msl * np.exp(-G * pts.orog / (RD * tv_mean))
        q_s = np.minimum(rh_s * qsat(t_sc + t_an, p_s), qsat(np.minimum(t_surf, T_DEW_MAX), p_s))

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
        q = rh * qsat(t_dry, p)
        qs_t = qsat(temp, p)
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

    def instability(self, pts: Points, t: float) -> np.ndarray:
        """The instability proxy :math:`I` (K) of the large-scale fields at ``pts`` and hour ``t``
        (see :mod:`stormcast_plugin.datagen.synth.cells`)."""
        zl, zm = 500.0, 5000.0
        col = self.column(pts, t, np.array([zl, zm]), heights=False, wind_levels=())
        tl, tm = col["t"]
        ql, qm = col["q"]
        return (tl + LV / CP * ql) - (tm + G * (zm - zl) / CP + LV / CP * qm)

    # -- cells -----------------------------------------------------------------