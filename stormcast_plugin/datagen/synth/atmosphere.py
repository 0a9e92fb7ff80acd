r"""The synthetic atmosphere: terrain, large-scale flow and cells on a model grid, and its conditioning.

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
"""

from __future__ import annotations

import math

import numpy as np

from stormcast_plugin.datagen.synth.cells import CellPopulation
from stormcast_plugin.datagen.synth.config import HYBRID_NAME, PRESSURE_NAME, SURFACE_CONDITIONING, SynthConfig
from stormcast_plugin.datagen.synth.fields import FourierModes, Plane
from stormcast_plugin.datagen.synth.flow import LargeScale
from stormcast_plugin.datagen.synth.physics import N_LEVELS_INTERNAL, Z_NOMINAL, to_pressure
from stormcast_plugin.datagen.synth.terrain import Terrain
from stormcast_plugin.utils.grid import ModelGrid
from stormcast_plugin.utils.variables import INVARIANTS

__all__ = ["SyntheticAtmosphere"]


def _large_scale_modes(rng: np.random.Generator) -> tuple[FourierModes, ...]:
    """Stream function, temperature and moisture anomalies, land and ridge patterns."""
    return (FourierModes(rng, 10, (800.0, 6000.0), rms=6.0, slope=0.5, depth=0.4, velocity=True),
            FourierModes(rng, 12, (250.0, 2000.0), rms=2.5, slope=0.5, depth=0.5),
            FourierModes(rng, 12, (250.0, 2000.0), rms=1.0, slope=0.5, depth=0.5),
            FourierModes(rng, 12, (150.0, 2500.0), rms=1.0, slope=0.7),
            FourierModes(rng, 12, (100.0, 800.0), rms=1.0, slope=0.5))


class SyntheticAtmosphere:
    """The synthetic atmosphere of a :class:`SynthConfig` (see :mod:`stormcast_plugin.datagen.synth`).

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

        self._plane = Plane(self.grid)
        if self._plane.lcc:
            gy, gx = np.meshgrid(np.asarray(self.grid.y, np.float64), np.asarray(self.grid.x, np.float64),
                                 indexing="ij")
        else:
            gy, gx = self._plane.forward(self.grid.lat, self.grid.lon)
        centre = (float(gy.mean()), float(gx.mean()))

        root = np.random.SeedSequence(cfg.seed)
        static_seq, cell_seq = root.spawn(2)
        if cfg.cell_seed is not None:
            cell_seq = np.random.SeedSequence(cfg.cell_seed).spawn(2)[1]
        rng = np.random.default_rng(static_seq)
        psi, tanom, moist, land, ridge = _large_scale_modes(rng)
        if cfg.terrain_seed is not None and cfg.terrain_seed != cfg.seed:
            # The land and ridge patterns that seed ``terrain_seed`` draws, with this seed's weather.
            terrain_rng = np.random.default_rng(np.random.SeedSequence(cfg.terrain_seed).spawn(2)[0])
            land, ridge = _large_scale_modes(terrain_rng)[3:]
        self._flow = LargeScale(cfg, psi, tanom, moist, rng, centre)
        self._terrain = Terrain(land, ridge, cfg.orography_max_m, centre)
        self._model = self._terrain.points(gy.ravel(), gx.ravel(), self.grid.lat.ravel(), self.grid.lon.ravel())

        self.cond_lat, self.cond_lon = _cond_axes(self.grid.lat, self.grid.lon, cfg.cond_resolution,
                                                  cfg.cond_margin)
        clat, clon = np.meshgrid(self.cond_lat, self.cond_lon, indexing="ij")
        cy, cx = self._plane.forward(clat, clon)
        self._cond = self._terrain.points(cy.ravel(), cx.ravel(), clat.ravel(), clon.ravel(),
                                          smooth=cfg.cond_resolution * 111e3)

        self._cells = CellPopulation(cfg, cell_seq, self._flow, self._terrain, self._plane, gy, gx)
        # The state needs the column up to its highest hybrid level (all of it for tcwv).
        levels = [int(m.group(2)) for m in map(HYBRID_NAME.match, self.state_variables) if m]
        self._n_state_levels = N_LEVELS_INTERNAL if "tcwv" in self.state_variables else max(levels, default=1)
        self._wind_levels = sorted({int(m.group(2)) - 1 for m in map(HYBRID_NAME.match, self.state_variables)
                                    if m and m.group(1) in "uv"})
        self._state_cache: tuple[int, np.ndarray] | None = None

    def invariants(self) -> np.ndarray:
        """Static fields ``[2, H, W]``: land-sea mask (0/1) and orography (m, >= 0)."""
        h, w = self.grid.shape
        lsm = (self._model.land > 0.5).astype(np.float64)
        return np.stack([lsm, self._model.orog]).reshape(2, h, w).astype(np.float32)

    def steering_wind(self, y: np.ndarray, x: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Large-scale ``(u, v)`` (m/s) at 3 km at plane points ``(y, x)`` (m) and hour ``t``
        (:meth:`~stormcast_plugin.datagen.synth.flow.LargeScale.steering_wind`)."""
        return self._flow.steering_wind(y, x, t)

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
        pts = self._terrain.points(y, x, np.asarray(lat, np.float64).ravel(), np.asarray(lon, np.float64).ravel())
        return self._flow.instability(pts, t)

    def cells(self, hour_index: int) -> dict[str, np.ndarray]:
        """The cell population at hour ``hour_index``, one array per attribute (a copy; the keys are
        those of :meth:`~stormcast_plugin.datagen.synth.cells.CellPopulation.snapshot`)."""
        return self._cells.snapshot(self._check_hour(hour_index))

    def _check_hour(self, hour_index: int) -> int:
        """``hour_index`` checked to be an integer hour the cells can reach."""
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
        fields = self._cells.rasterise(hour)
        col = self._flow.column(self._model, float(hour), Z_NOMINAL[:self._n_state_levels], fields,
                                wind_levels=self._wind_levels)
        h, w = self.grid.shape
        out = np.empty((len(self.state_variables), h, w), dtype=np.float32)
        for i, name in enumerate(self.state_variables):
            m = HYBRID_NAME.match(name)
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
        col = self._flow.column(self._cond, float(hour), Z_NOMINAL, None, meso=False)
        shape = (self.cond_lat.size, self.cond_lon.size)
        out = np.empty((len(self.conditioning_variables),) + shape, dtype=np.float32)
        cache: dict[int, dict[str, np.ndarray]] = {}
        for i, name in enumerate(self.conditioning_variables):
            m = PRESSURE_NAME.match(name)
            if m and name not in SURFACE_CONDITIONING:
                lev = int(m.group(2))
                if lev not in cache:
                    cache[lev] = to_pressure(col, self._cond.orog, lev * 100.0)
                val = cache[lev][m.group(1)]
            else:
                val = col[name]
            out[i] = val.reshape(shape)
        return out


def _cond_axes(lat: np.ndarray, lon: np.ndarray, res: float, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Descending latitudes and ascending longitudes covering the grid plus a margin (degrees)."""
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
