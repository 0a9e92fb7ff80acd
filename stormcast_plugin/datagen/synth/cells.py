r"""The convective cells of the synthetic atmosphere.

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
"""

from __future__ import annotations

import math

import numpy as np

from stormcast_plugin.datagen.synth.config import SynthConfig
from stormcast_plugin.datagen.synth.fields import Plane
from stormcast_plugin.datagen.synth.flow import LargeScale
from stormcast_plugin.datagen.synth.physics import sigmoid
from stormcast_plugin.datagen.synth.terrain import Terrain

__all__ = ["CellPopulation"]

_CELL_KEYS = ("id", "y", "x", "t0", "peak", "sigma", "aspect", "orient", "tg", "tm", "td",
              "cold", "outflow", "dv", "du")


def _empty_cells() -> dict[str, np.ndarray]:
    """A population of no cells."""
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


class CellPopulation:
    """The convective cells of the synthetic atmosphere, simulated hour by hour.

    Parameters
    ----------
    config : SynthConfig
        Birth, life-cycle and margin parameters.
    seed : np.random.SeedSequence
        Seed of every random choice about the cells.
    flow : LargeScale
        Steering wind and instability.
    terrain : Terrain
        Static fields of the points where instability is evaluated.
    plane : Plane
        The plane of the model grid.
    gy, gx : np.ndarray
        ``[H, W]`` plane coordinates (m) of the model grid.
    """

    def __init__(self, config: SynthConfig, seed: np.random.SeedSequence, flow: LargeScale, terrain: Terrain,
                 plane: Plane, gy: np.ndarray, gx: np.ndarray) -> None:
        self.config = config
        self._seed = seed
        self._flow = flow
        self._terrain = terrain
        self._plane = plane
        self._gy, self._gx = gy, gx
        # A grid on its own projection has separable y (rows) and x (columns).
        self._separable = plane.lcc
        # Candidate birth boxes covering the grid plus the margin.
        m = config.cell_margin_km * 1e3
        sp = config.candidate_spacing_km * 1e3
        self._box = (float(gy.min()) - m, float(gy.max()) + m, float(gx.min()) - m, float(gx.max()) + m)
        ny = max(1, int(math.ceil((self._box[1] - self._box[0]) / sp)))
        nx = max(1, int(math.ceil((self._box[3] - self._box[2]) / sp)))
        cyy = self._box[0] + sp * (np.arange(ny) + 0.5)
        cxx = self._box[2] + sp * (np.arange(nx) + 0.5)
        by, bx = np.meshgrid(cyy, cxx, indexing="ij")
        blat, blon = plane.inverse(by.ravel(), bx.ravel())
        self._cand = terrain.points(by.ravel(), bx.ravel(), np.asarray(blat), np.asarray(blon))
        self._cand_spacing = sp
        self.reset()

    def reset(self) -> None:
        """Restart the simulation at hour ``-spinup_hours``."""
        self._rng = np.random.default_rng(self._seed)
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
        u, v = self._flow.steering_wind(cells["y"], cells["x"], t_eval)
        ym = cells["y"] + 0.5 * dt * (v + cells["dv"])
        xm = cells["x"] + 0.5 * dt * (u + cells["du"])
        u, v = self._flow.steering_wind(ym, xm, t_eval)
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
        inst = self._flow.instability(self._cand, hour - 0.5)
        prob = sigmoid((inst - cfg.instability_threshold_k) / cfg.instability_width_k)
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
            pts = self._terrain.points(par["y"], par["x"], np.asarray(lat), np.asarray(lon))
            p_par = sigmoid((self._flow.instability(pts, hour - 0.5) - cfg.instability_threshold_k)
                             / cfg.instability_width_k)
            kids = rng.poisson(cfg.daughter_rate * b * p_par)
            j = np.repeat(np.arange(kids.size), kids)
            m = j.size
            if m:
                u, v = self._flow.steering_wind(par["y"][j], par["x"][j], hour - 0.5)
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

    def advance_to(self, hour: int) -> None:
        """Simulate up to ``hour`` (from the start again for an earlier hour)."""
        if hour < self._cells_hour:
            self.reset()
        while self._cells_hour < hour:
            self._step_cells()

    def snapshot(self, hour: int) -> dict[str, np.ndarray]:
        """The cell population at ``hour`` (a copy).

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
        self.advance_to(hour)
        c = {k: v.copy() for k, v in self._cells.items()}
        c["age"] = hour - c["t0"]
        c["a"], c["b"], _ = _envelopes(c["age"], c["tg"], c["tm"], c["td"])
        c["dbz"] = -10.0 + (c["peak"] + 10.0) * np.sqrt(c["a"])
        return c

    def rasterise(self, hour: int) -> dict[str, np.ndarray]:
        """The cells' fields at ``hour`` on the model grid, as flattened ``[P]`` arrays:
        ``refc`` (dBZ), cold pool ``cold`` (K), outflow ``ou``/``ov`` (m/s) and updraft ``core``."""
        self.advance_to(hour)
        h, w = self._gy.shape
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