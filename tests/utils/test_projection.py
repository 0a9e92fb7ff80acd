"""The HRRR Lambert conformal conic projection (pyproj) against the spherical
formulas of Snyder (1987) and PROJ strings."""

from __future__ import annotations

import math

import numpy as np
import pyproj
import pytest

from stormcast_plugin.utils.grid import HRRR_X, HRRR_Y
from stormcast_plugin.utils.projection import HRRR_PROJECTION, latlon_to_lcc, lcc_to_latlon

HRRR_PROJ4 = "+proj=lcc +lon_0=262.5 +lat_0=38.5 +lat_1=38.5 +lat_2=38.5 +a=6371229 +b=6371229 +units=m"
SECANT = dict(HRRR_PROJECTION, standard_parallel=[30.0, 60.0], longitude_of_central_meridian=-100.0,
              latitude_of_projection_origin=45.0, earth_radius=6370000.0)


class SnyderLCC:
    """Spherical Lambert conformal conic, Snyder (1987) eqs. 15-1 to 15-5: the
    formulas this package used before it used PROJ, kept as an independent reference."""

    def __init__(self, cf):
        phi1, phi2 = (math.radians(v) for v in cf["standard_parallel"])

        def t(phi):
            return math.tan(math.pi / 4 + phi / 2)

        n = math.sin(phi1) if phi1 == phi2 else math.log(math.cos(phi1) / math.cos(phi2)) / math.log(t(phi2) / t(phi1))
        self.n, self.lon0 = n, cf["longitude_of_central_meridian"]
        self.rf = cf["earth_radius"] * math.cos(phi1) * t(phi1) ** n / n
        self.rho0 = self.rf / t(math.radians(cf["latitude_of_projection_origin"])) ** n

    def forward(self, lat, lon):
        theta = self.n * np.radians(np.mod(lon - self.lon0 + 180.0, 360.0) - 180.0)
        rho = self.rf / np.tan(np.pi / 4 + np.radians(lat) / 2) ** self.n
        return self.rho0 - rho * np.cos(theta), rho * np.sin(theta)

    def inverse(self, y, x):
        s = math.copysign(1.0, self.n)
        dy = self.rho0 - y
        rho = s * np.hypot(x, dy)
        theta = np.arctan2(s * x, s * dy)
        lat = np.degrees(2.0 * np.arctan((self.rf / rho) ** (1.0 / self.n)) - np.pi / 2)
        return lat, np.mod(self.lon0 + np.degrees(theta / self.n), 360.0)


@pytest.mark.parametrize("cf", [HRRR_PROJECTION, SECANT], ids=["hrrr", "secant"])
def test_matches_the_spherical_formulas(cf):
    ref = SnyderLCC(cf)
    y, x = (HRRR_Y[::23], HRRR_X[::29]) if cf is HRRR_PROJECTION else (np.linspace(-2e6, 2e6, 41),
                                                                      np.linspace(-3e6, 3e6, 53))
    lat, lon = lcc_to_latlon(y, x, cf)
    rlat, rlon = ref.inverse(*np.meshgrid(y, x, indexing="ij"))
    np.testing.assert_allclose(lat, rlat, atol=1e-6, rtol=0)
    np.testing.assert_allclose(lon, rlon, atol=1e-6, rtol=0)
    rng = np.random.default_rng(0)
    plat, plon = rng.uniform(15, 60, 2000), rng.uniform(-180, 360, 2000)
    py, px = latlon_to_lcc(plat, plon, cf)
    ry, rx = ref.forward(plat, plon)
    # 1e-6 degrees is about 0.1 m
    np.testing.assert_allclose(py, ry, atol=1e-3, rtol=0)
    np.testing.assert_allclose(px, rx, atol=1e-3, rtol=0)


def test_lcc_inverse_matches_pyproj():
    proj = pyproj.Proj(HRRR_PROJ4)
    y, x = HRRR_Y[::37], HRRR_X[::41]
    lat, lon = lcc_to_latlon(y, x)
    assert lat.shape == lon.shape == (y.size, x.size)
    xx, yy = np.meshgrid(x, y)
    plon, plat = proj(xx, yy, inverse=True)
    np.testing.assert_allclose(lat, plat, atol=1e-6, rtol=0)
    np.testing.assert_allclose(lon, np.mod(plon, 360.0), atol=1e-6, rtol=0)
    assert lon.min() >= 0 and lon.max() < 360


def test_lcc_forward_matches_pyproj():
    proj = pyproj.Proj(HRRR_PROJ4)
    rng = np.random.default_rng(0)
    lat = rng.uniform(15, 60, 500)
    lon = rng.uniform(200, 320, 500)
    y, x = latlon_to_lcc(lat, lon)
    px, py = proj(lon, lat)
    np.testing.assert_allclose(x, px, atol=1e-3, rtol=0)
    np.testing.assert_allclose(y, py, atol=1e-3, rtol=0)
    # -180..180 input (and a second turn) gives the same point; the round trip is exact.
    for shift in (-360.0, 360.0):
        np.testing.assert_allclose(latlon_to_lcc(lat, lon + shift), (y, x), atol=1e-6)
    lat_back, lon_back = lcc_to_latlon(y, x, meshgrid=False)
    np.testing.assert_allclose(lat_back, lat, atol=1e-9)
    np.testing.assert_allclose(lon_back, lon, atol=1e-9)


def test_one_standard_parallel_is_a_tangent_cone():
    tangent = dict(HRRR_PROJECTION, standard_parallel=38.5)
    np.testing.assert_array_equal(lcc_to_latlon(HRRR_Y[:3], HRRR_X[:2], tangent), lcc_to_latlon(HRRR_Y[:3], HRRR_X[:2]))


@pytest.mark.slow  # imports earth2studio.data (several seconds)
def test_matches_earth2studio_hrrr_grid():
    hrrr = pytest.importorskip("earth2studio.data.hrrr")  # slow import, shared with other tests
    np.testing.assert_allclose(hrrr.HRRR.HRRR_Y, HRRR_Y, rtol=0, atol=1e-6)
    np.testing.assert_allclose(hrrr.HRRR.HRRR_X, HRRR_X, rtol=0, atol=1e-6)
    lat, lon = hrrr.HRRR.grid()
    ii = np.array([0, 0, 1058, 1058, 529, 273, 784])
    jj = np.array([0, 1798, 0, 1798, 899, 579, 1218])
    mlat, mlon = lcc_to_latlon(HRRR_Y[ii], HRRR_X[jj], meshgrid=False)
    np.testing.assert_allclose(mlat, lat[ii, jj], atol=1e-6, rtol=0)
    np.testing.assert_allclose(mlon, lon[ii, jj], atol=1e-6, rtol=0)


def test_projection_errors():
    with pytest.raises(ValueError, match="lambert_conformal_conic"):
        lcc_to_latlon(HRRR_Y[:2], HRRR_X[:2], {"grid_mapping_name": "mercator"})
    with pytest.raises(ValueError, match="1-D"):
        lcc_to_latlon(np.zeros((2, 2)), HRRR_X[:2])
    with pytest.raises(ValueError, match=r"\[-90, 90\]"):
        latlon_to_lcc(np.array([95.0]), np.array([0.0]))
    with pytest.raises(ValueError, match="non-finite"):
        latlon_to_lcc(np.array([np.nan]), np.array([0.0]))
    with pytest.raises(ValueError, match=r"-90\.0, the pole"):
        latlon_to_lcc(np.array([10.0, -90.0]), np.array([0.0, 0.0]))
    with pytest.raises(ValueError, match="cone constant of 0"):
        lcc_to_latlon(HRRR_Y[:2], HRRR_X[:2], dict(HRRR_PROJECTION, standard_parallel=[-30.0, 30.0]))
    with pytest.raises(ValueError, match="strictly between -90 and 90"):
        lcc_to_latlon(HRRR_Y[:2], HRRR_X[:2], dict(HRRR_PROJECTION, standard_parallel=[38.5, 90.0, 10.0]))
    no_shape = {k: v for k, v in HRRR_PROJECTION.items() if k != "earth_radius"}
    with pytest.raises(ValueError, match="earth's shape"):
        lcc_to_latlon(HRRR_Y[:2], HRRR_X[:2], no_shape)
    with pytest.raises(ValueError, match=r"'earth_radius'\] = 'big' is not a finite number"):
        lcc_to_latlon(HRRR_Y[:2], HRRR_X[:2], dict(HRRR_PROJECTION, earth_radius="big"))
    with pytest.raises(ValueError, match="expected a positive length"):
        lcc_to_latlon(HRRR_Y[:2], HRRR_X[:2], dict(HRRR_PROJECTION, earth_radius=-5.0))
    with pytest.raises(ValueError, match=r"missing \['latitude_of_projection_origin'\]"):
        lcc_to_latlon(HRRR_Y[:2], HRRR_X[:2], {k: v for k, v in HRRR_PROJECTION.items()
                                               if k != "latitude_of_projection_origin"})
    with pytest.raises(ValueError, match=r"not a valid Lambert conformal conic \(Invalid ellipsoid parameters\);"):
        lcc_to_latlon(HRRR_Y[:2], HRRR_X[:2], {**no_shape, "semi_major_axis": 6e6, "semi_minor_axis": 7e6})
