r"""Land and orography of the synthetic atmosphere.

Surface
-------
A land pattern :math:`L` (wavelengths 150-2500 km) gives the land fraction
:math:`\ell = \mathrm{sigmoid}((L - c)/0.12)` and the land-sea mask
:math:`\ell > 0.5`, with the cut :math:`c` such that the grid's centre is
land (a continental domain, like HRRR's); orography is
:math:`h = h_\mathrm{max} (1 - e^{-\max(L - c, 0)/0.8}) (0.15 + 0.85\,
\mathrm{sigmoid}(1.5 R))` for a ridge pattern :math:`R` (100-800 km): zero
over sea, smooth, at most ``orography_max_m``.
"""

from __future__ import annotations

import numpy as np

from stormcast_plugin.datagen.synth.fields import FourierModes, Points
from stormcast_plugin.datagen.synth.physics import sigmoid

__all__ = ["Terrain"]


class Terrain:
    """Land and orography of the synthetic atmosphere (see the module docstring).

    Parameters
    ----------
    land, ridge : FourierModes
        The land pattern :math:`L` and the ridge pattern :math:`R`.
    orography_max_m : float
        Highest orography (m).
    centre : (float, float)
        Plane ``(y, x)`` (m) of the grid's centre, which is always land.
    """

    def __init__(self, land: FourierModes, ridge: FourierModes, orography_max_m: float,
                 centre: tuple[float, float]) -> None:
        self.land = land
        self.ridge = ridge
        self.orography_max_m = float(orography_max_m)
        # Land where the land pattern exceeds the cut: about 75 % of an unbounded
        # plane, and always the grid's centre (a continental domain, like HRRR's).
        at_centre = float(land.value(np.array([centre[0]]), np.array([centre[1]]))[0])
        self.cut = min(-0.7, at_centre - 1.0)

    def static(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Orography (m) and smooth land fraction at plane points ``(y, x)``."""
        lf = self.land.value(y, x)
        land = sigmoid((lf - self.cut) / 0.12)
        ridge = sigmoid(1.5 * self.ridge.value(y, x))
        inland = 1.0 - np.exp(-np.maximum(lf - self.cut, 0.0) / 0.8)
        return self.orography_max_m * inland * (0.15 + 0.85 * ridge), land

    def points(self, y: np.ndarray, x: np.ndarray, lat: np.ndarray, lon: np.ndarray,
               smooth: float = 0.0) -> Points:
        """Points with their static fields, box-averaged over ``smooth`` metres
        (the coarser orography and coastlines of a global analysis)."""
        if smooth > 0:
            offsets = np.linspace(-0.5, 0.5, 5) * smooth
            orog = np.zeros_like(y, dtype=np.float64)
            land = np.zeros_like(y, dtype=np.float64)
            for oy in offsets:
                for ox in offsets:
                    o, l_ = self.static(y + oy, x + ox)
                    orog += o / offsets.size ** 2
                    land += l_ / offsets.size ** 2
        else:
            orog, land = self.static(y, x)
        return Points(y=y, x=x, lat=np.asarray(lat, np.float64), lon=np.asarray(lon, np.float64),
                      orog=orog, land=land)
