r"""Random Fourier fields and the plane the synthetic atmosphere is computed in.

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
a fraction :math:`\beta` of the background wind
(:mod:`stormcast_plugin.datagen.synth.flow`), integrated
analytically, so any hour is evaluated directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stormcast_plugin.utils.grid import ModelGrid
from stormcast_plugin.utils.projection import latlon_to_lcc, lcc_to_latlon

__all__ = ["FourierModes", "Plane", "Points"]


class FourierModes:
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


class Plane:
    """Plane coordinates (m) of latitude/longitude points for a grid.

    The grid's own Lambert conformal projection when it has one (:attr:`lcc`),
    otherwise a local equirectangular plane about the grid's centre.
    """

    def __init__(self, grid: ModelGrid) -> None:
        proj = dict(grid.projection or {})
        self.lcc = proj.get("grid_mapping_name") == "lambert_conformal_conic"
        self.projection = proj
        if not self.lcc:
            self.lat0 = float(grid.lat.mean())
            ang = np.radians(grid.lon)
            self.lon0 = float(np.degrees(np.arctan2(np.sin(ang).mean(), np.cos(ang).mean()))) % 360.0
            self.radius = 6371229.0

    def forward(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(y, x)`` (m) of latitude/longitude points."""
        if self.lcc:
            return latlon_to_lcc(lat, lon, self.projection)
        dlon = (np.asarray(lon) - self.lon0 + 180.0) % 360.0 - 180.0
        x = self.radius * math.cos(math.radians(self.lat0)) * np.radians(dlon)
        y = self.radius * np.radians(np.asarray(lat) - self.lat0)
        return y, x

    def inverse(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(lat, lon)`` (degrees, lon in [0, 360)) of plane points."""
        if self.lcc:
            return lcc_to_latlon(y, x, self.projection, meshgrid=False)
        lat = self.lat0 + np.degrees(np.asarray(y) / self.radius)
        lon = (self.lon0 + np.degrees(np.asarray(x) / (self.radius * math.cos(math.radians(self.lat0))))) % 360.0
        return lat, lon


@dataclass
class Points:
    """A set of points with their plane coordinates and static surface fields."""

    y: np.ndarray
    x: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    orog: np.ndarray
    land: np.ndarray  # smooth land fraction in [0, 1]
