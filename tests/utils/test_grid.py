"""Model grids: the HRRR native grid, its crops and custom grids."""

from __future__ import annotations

import json

import numpy as np
import pyproj
import pytest

from stormcast_plugin.utils.grid import (
    HRRR_X,
    HRRR_Y,
    STORMCAST_V1_COLS,
    STORMCAST_V1_ROWS,
    ModelGrid,
    hrrr_crop,
)
from stormcast_plugin.utils.projection import HRRR_PROJECTION

HRRR_PROJ4 = "+proj=lcc +lon_0=262.5 +lat_0=38.5 +lat_1=38.5 +lat_2=38.5 +a=6371229 +b=6371229 +units=m"


def test_native_axes():
    assert HRRR_Y.shape == (1059,) and HRRR_X.shape == (1799,)
    assert HRRR_Y.dtype == np.float64 and HRRR_X.dtype == np.float64
    np.testing.assert_allclose(np.diff(HRRR_Y), 3000.0)
    np.testing.assert_allclose(np.diff(HRRR_X), 3000.0)
    assert HRRR_Y[0] == -1587306.1525566636 and HRRR_X[0] == -2697520.1425219304
    rows, cols = STORMCAST_V1_ROWS, STORMCAST_V1_COLS
    assert (rows.stop - rows.start, cols.stop - cols.start) == (512, 640)


def test_stormcast_v1_grid():
    g = ModelGrid.hrrr()
    assert g.shape == (512, 640) and g.size == 512 * 640 and g.name == "stormcast_v1"
    assert g.lat.shape == g.lon.shape == (512, 640)
    np.testing.assert_array_equal(g.y, HRRR_Y[273:785])
    np.testing.assert_array_equal(g.x, HRRR_X[579:1219])
    # Central US: corners from the formulas, checked against pyproj.
    proj = pyproj.Proj(HRRR_PROJ4)
    for i, j in [(0, 0), (0, -1), (-1, 0), (-1, -1), (256, 320)]:
        plon, plat = proj(g.x[j], g.y[i], inverse=True)
        assert abs(g.lat[i, j] - plat) < 1e-6 and abs(g.lon[i, j] - plon % 360) < 1e-6
    assert 29 < g.lat.min() < g.lat.max() < 47
    assert 250 < g.lon.min() < g.lon.max() < 275
    assert not g.lat.flags.writeable and not g.y.flags.writeable
    assert g.projection == HRRR_PROJECTION and g.projection is not HRRR_PROJECTION


def test_hrrr_crops_and_errors():
    g = ModelGrid.hrrr((0, 4), slice(10, 13))
    assert g.shape == (4, 3) and g.name == "hrrr[0:4,10:13]"
    full = ModelGrid.hrrr(slice(None), slice(None), name="conus")
    assert full.shape == (1059, 1799)
    with pytest.raises(ValueError, match="1059"):
        ModelGrid.hrrr((1000, 1100), (0, 10))
    with pytest.raises(ValueError, match="1799"):
        ModelGrid.hrrr((0, 10), (-5, 10))
    with pytest.raises(ValueError, match="step"):
        ModelGrid.hrrr(slice(0, 10, 2), (0, 10))
    with pytest.raises(ValueError, match="slice"):
        ModelGrid.hrrr(5, (0, 10))
    for bad in ((0.5, 10), ("a", 10)):
        with pytest.raises(ValueError, match=r"rows crop .* has non-integer bounds"):
            ModelGrid.hrrr(bad, (0, 10))


def test_crop_composes():
    g = ModelGrid.hrrr()
    sub = g.crop((10, 20), slice(30, 50))
    ref = ModelGrid.hrrr((283, 293), (609, 629))
    assert sub.fingerprint() == ref.fingerprint()
    assert sub.native_window == (283, 293, 609, 629)
    with pytest.raises(ValueError, match="512 x 640"):
        g.crop((0, 600), (0, 10))
    custom = ModelGrid.from_arrays(g.y, g.x, g.lat, g.lon, name="mine")
    csub = custom.crop((10, 20), (30, 50))
    assert csub.native_window is None and csub.shape == (10, 20)
    np.testing.assert_array_equal(csub.lat, ref.lat)


def _custom_grid():
    y = np.array([0.0, 1.0, 2.0])
    x = np.array([10.0, 20.0])
    lat = np.array([[40.0, 41.0], [42.0, 43.0], [44.0, 45.0]])
    lon = np.array([[-100.0, -99.0], [-98.0, 360.0], [0.5, 359.5]])
    return ModelGrid.from_arrays(y, x, lat, lon, projection={"grid_mapping_name": "x"}, name="toy")


def test_from_arrays_validates_and_normalises():
    g = _custom_grid()
    assert g.shape == (3, 2)
    np.testing.assert_allclose(g.lon, [[260.0, 261.0], [262.0, 0.0], [0.5, 359.5]])
    y, x, lat, lon = g.y, g.x, g.lat, g.lon
    with pytest.raises(ValueError, match="monotonic"):
        ModelGrid.from_arrays(np.array([0.0, 2.0, 1.0]), x, lat, lon)
    with pytest.raises(ValueError, match=r"expected \(len\(y\), len\(x\)\) = \(3, 2\)"):
        ModelGrid.from_arrays(y, x, lat.T, lon)
    with pytest.raises(ValueError, match="non-finite"):
        ModelGrid.from_arrays(y, x, np.where(lat > 44.5, np.nan, lat), lon)
    with pytest.raises(ValueError, match=r"\[-90, 90\]"):
        ModelGrid.from_arrays(y, x, lat + 50, lon)
    with pytest.raises(ValueError, match="1-D"):
        ModelGrid.from_arrays(lat, x, lat, lon)


def test_dict_round_trip():
    g = ModelGrid.hrrr((100, 110), (200, 230), name="box")
    d = json.loads(json.dumps(g.to_dict()))
    assert set(d) == {"kind", "name", "rows", "cols"}
    back = ModelGrid.from_dict(d)
    assert back.name == "box" and back.fingerprint() == g.fingerprint()
    assert back.native_window == g.native_window
    c = _custom_grid()
    cb = ModelGrid.from_dict(json.loads(json.dumps(c.to_dict())))
    assert cb.fingerprint() == c.fingerprint() and cb.name == "toy" and cb.projection == c.projection
    with pytest.raises(ValueError, match="kind"):
        ModelGrid.from_dict({"kind": "gaussian"})
    with pytest.raises(ValueError, match="missing keys"):
        ModelGrid.from_dict({"kind": "hrrr", "rows": [0, 2]})


def test_fingerprint_and_check_coords():
    g = ModelGrid.hrrr((0, 8), (0, 8))
    assert g.fingerprint() == ModelGrid.hrrr((0, 8), (0, 8), name="other").fingerprint()
    assert g.fingerprint() != ModelGrid.hrrr((1, 9), (0, 8)).fingerprint()
    g.check_coords(g.y + 0.5, g.x)
    x = g.x.copy()
    x[5] += 10.0
    with pytest.raises(ValueError, match=r"x\[5\].*hrrr\[0:8,0:8\]"):
        g.check_coords(g.y, x)
    with pytest.raises(ValueError, match=r"coordinate y has shape \(7,\)"):
        g.check_coords(g.y[:7], g.x)


def test_hrrr_crop_is_centred_on_the_v1_domain():
    g = hrrr_crop((64, 80))
    assert g.shape == (64, 80) and g.native_window == (497, 561, 859, 939)
    v1 = ModelGrid.hrrr()
    assert abs(g.y.mean() - v1.y.mean()) <= 1500.0 and abs(g.x.mean() - v1.x.mean()) <= 1500.0
    with pytest.raises(ValueError, match="does not fit in the 1059 x 1799"):
        hrrr_crop((2000, 64))
    with pytest.raises(ValueError, match="too small"):
        hrrr_crop((1, 64))
    with pytest.raises(ValueError, match="pair of integers"):
        hrrr_crop("64x64")
