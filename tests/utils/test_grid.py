"""HRRR projection, model grids and the bilinear regridder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stormcast_plugin.utils.grid import (
    HRRR_PROJECTION,
    HRRR_X,
    HRRR_Y,
    STORMCAST_V1_COLS,
    STORMCAST_V1_ROWS,
    BilinearRegridder,
    ModelGrid,
    clear_regridder_cache,
    get_regridder,
    latlon_to_lcc,
    lcc_to_latlon,
)

pyproj = pytest.importorskip("pyproj")

HRRR_PROJ4 = "+proj=lcc +lon_0=262.5 +lat_0=38.5 +lat_1=38.5 +lat_2=38.5 +a=6371229 +b=6371229 +units=m"


# -- projection ---------------------------------------------------------------


def test_native_axes():
    assert HRRR_Y.shape == (1059,) and HRRR_X.shape == (1799,)
    assert HRRR_Y.dtype == np.float64 and HRRR_X.dtype == np.float64
    np.testing.assert_allclose(np.diff(HRRR_Y), 3000.0)
    np.testing.assert_allclose(np.diff(HRRR_X), 3000.0)
    assert HRRR_Y[0] == -1587306.1525566636 and HRRR_X[0] == -2697520.1425219304
    rows, cols = STORMCAST_V1_ROWS, STORMCAST_V1_COLS
    assert (rows.stop - rows.start, cols.stop - cols.start) == (512, 640)


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
    # -180..180 input gives the same point; the round trip is exact.
    y2, x2 = latlon_to_lcc(lat, lon - 360.0)
    np.testing.assert_allclose((y2, x2), (y, x), atol=1e-6)
    lat_back, lon_back = lcc_to_latlon(y, x, meshgrid=False)
    np.testing.assert_allclose(lat_back, lat, atol=1e-9)
    np.testing.assert_allclose(lon_back, lon, atol=1e-9)


def test_secant_projection_matches_pyproj():
    cf = dict(HRRR_PROJECTION, standard_parallel=[30.0, 60.0], longitude_of_central_meridian=-100.0,
              latitude_of_projection_origin=45.0, earth_radius=6370000.0)
    proj = pyproj.Proj("+proj=lcc +lon_0=-100 +lat_0=45 +lat_1=30 +lat_2=60 +a=6370000 +b=6370000 +units=m")
    y = np.linspace(-2e6, 2e6, 9)
    x = np.linspace(-3e6, 3e6, 11)
    lat, lon = lcc_to_latlon(y, x, cf)
    plon, plat = proj(*np.meshgrid(x, y), inverse=True)
    np.testing.assert_allclose(lat, plat, atol=1e-6, rtol=0)
    np.testing.assert_allclose(lon, np.mod(plon, 360.0), atol=1e-6, rtol=0)


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


# -- ModelGrid ----------------------------------------------------------------


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


# -- regridding ---------------------------------------------------------------


def _linear(lat, lon):
    return 3.0 + 0.7 * lat - 0.2 * lon


def _target():
    """A small HRRR crop plus a few points, as a 2-D [H, W] target."""
    g = ModelGrid.hrrr((100, 140), (300, 348))
    return g.lat, g.lon


LAT_ASC = np.arange(-90.0, 90.01, 2.5)
LAT_NONUNIFORM = np.sort(np.concatenate([np.arange(-90.0, 91.0, 3.0), [31.3, 37.7, 42.1]]))


METHODS = ["grid_sample", "gather"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("convention", ["0..360", "-180..180"])
@pytest.mark.parametrize("src_lat", [LAT_ASC, LAT_NONUNIFORM], ids=["uniform", "nonuniform"])
def test_bilinear_exact_on_linear_functions(descending, convention, src_lat, method):
    lat = src_lat[::-1] if descending else src_lat
    lon = np.arange(0.0, 360.0, 2.0) if convention == "0..360" else np.arange(-180.0, 180.0, 2.0)
    tlat, tlon = _target()
    tlon_src = tlon if convention == "0..360" else np.mod(tlon + 180.0, 360.0) - 180.0
    field = _linear(lat[:, None], lon[None, :])
    r = BilinearRegridder(lat, lon, tlat, tlon, method=method)
    assert r.src_shape == (lat.size, lon.size) and r.tgt_shape == tlat.shape
    out = r(torch.from_numpy(field))
    assert out.dtype == torch.float64 and out.shape == tlat.shape
    np.testing.assert_allclose(out.numpy(), _linear(tlat, tlon_src), atol=1e-9)
    torch.testing.assert_close(r.weights.sum(0), torch.ones(tlat.size, dtype=torch.float64))


@pytest.mark.parametrize("method", METHODS)
def test_bilinear_wraps_across_the_seam(method):
    tlat = np.array([[10.0, 10.5, -3.2, 0.0]])
    tlon = np.array([[359.3, 0.4, -0.6, 359.999]])  # -0.6 is 359.4
    # 0..359 source, seam at 0/360; the field is linear in lon from -180..180.
    lat = np.arange(-90.0, 90.5, 1.0)
    lon = np.arange(0.0, 360.0, 1.0)
    lon_pm = np.mod(lon + 180.0, 360.0) - 180.0
    r = BilinearRegridder(lat, lon, tlat, tlon, method=method)
    assert r.periodic
    if method == "grid_sample":  # the block read straddles the seam: columns 359, 0, 1
        assert r.block_shape == (16, 3)
    out = r(torch.from_numpy(_linear(lat[:, None], lon_pm[None, :])))
    np.testing.assert_allclose(out.numpy(), _linear(tlat, np.mod(tlon + 180.0, 360.0) - 180.0), atol=1e-9)
    # -180..179 source, seam at 180; the field is linear in lon from 0..360.
    lon2 = np.arange(-180.0, 180.0, 1.0)
    t2 = np.array([[179.4, 180.0, -179.8, 190.0]])
    r2 = BilinearRegridder(lat[::-1], lon2, np.full_like(t2, 12.3), t2, method=method)
    out2 = r2(torch.from_numpy(_linear(lat[::-1, None], np.mod(lon2, 360.0)[None, :])))
    np.testing.assert_allclose(out2.numpy(), _linear(12.3, np.mod(t2, 360.0)), atol=1e-9)


def test_out_of_extent_raises():
    lat = np.arange(20.0, 50.01, 0.5)
    lon = np.arange(230.0, 300.01, 0.5)
    r = BilinearRegridder(lat, lon, np.array([[30.0]]), np.array([[-100.0]]))  # -100 E is 260 E
    assert not r.periodic
    with pytest.raises(ValueError, match=r"source longitudes.*\[230\.0000, 300\.0000\]"):
        BilinearRegridder(lat, lon, np.array([[30.0]]), np.array([[310.0]]))
    with pytest.raises(ValueError, match=r"source spans \[20\.0000, 50\.0000\]"):
        BilinearRegridder(lat, lon, np.array([[55.0]]), np.array([[260.0]]))
    with pytest.raises(ValueError, match="monotonic"):
        BilinearRegridder(np.array([0.0, 2.0, 1.0]), lon, np.array([[1.0]]), np.array([[260.0]]))


def test_global_target_reads_every_column():
    lat = np.arange(-90.0, 90.01, 10.0)
    lon = np.arange(0.0, 360.0, 10.0)
    tlat, tlon = np.meshgrid(np.arange(-85.0, 86.0, 7.0), np.arange(0.0, 360.0, 3.0), indexing="ij")
    field = np.random.default_rng(0).standard_normal((2, lat.size, lon.size))
    fused = BilinearRegridder(lat, lon, tlat, tlon)
    assert fused.block_shape == (19, 37)  # every column, and the first again after the seam
    ref = BilinearRegridder(lat, lon, tlat, tlon, method="gather")
    torch.testing.assert_close(fused(torch.from_numpy(field)), ref(torch.from_numpy(field)))


@pytest.mark.parametrize("method", METHODS)
def test_regridder_io_and_dtypes(method):
    lat = np.arange(-90.0, 90.01, 5.0)
    lon = np.arange(0.0, 360.0, 5.0)
    tlat, tlon = _target()
    r = BilinearRegridder(lat, lon, tlat, tlon, method=method)
    data = np.random.default_rng(1).standard_normal((2, 3, lat.size, lon.size))
    out_np = r(data)
    assert out_np.dtype == torch.float32 and out_np.shape == (2, 3, *tlat.shape)
    out64 = r(torch.from_numpy(data))
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out_np, out64.float(), atol=1e-5, rtol=1e-5)
    assert r(torch.from_numpy(data).half()).dtype == torch.float16
    assert r(np.ones((lat.size, lon.size), dtype=np.int32)).dtype == torch.float32
    # Non-contiguous input (a flipped view) gives the flipped source's answer.
    flipped = BilinearRegridder(lat[::-1], lon, tlat, tlon, method=method)
    torch.testing.assert_close(flipped(data[..., ::-1, :]), out_np)
    # compact + apply_compact is the call; block_finite flags NaN that is read.
    block = r.compact(data)
    assert block.shape[:2] == (2, 3) and block.shape[2:] == r.block_shape
    torch.testing.assert_close(r.apply_compact(block), out_np)
    assert r.block_finite(block).all()
    nan_data = data.copy()
    nan_data[1, 2, 0, 0] = np.nan  # the south pole: never read for this target
    i, j = np.unravel_index(int(r.indices[0, 7]), r.src_shape)
    nan_data[0, 1, i, j] = np.nan  # read by target point 7
    ok = r.block_finite(r.compact(nan_data)).numpy()
    np.testing.assert_array_equal(ok, [[True, False, True], [True, True, True]])
    out_nan = r(nan_data)
    assert torch.isnan(out_nan[0, 1]).any() and torch.isfinite(out_nan[1, 2]).all()
    with pytest.raises(ValueError, match="made by compact"):
        r.apply_compact(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="unknown"):
        BilinearRegridder(lat, lon, tlat, tlon, method="nearest")
    with pytest.raises(ValueError, match=r"expected \[\.\.\., 37, 72\]"):
        r(np.zeros((3, 36, 72)))
    with pytest.raises(ValueError, match="torch.Tensor or numpy"):
        r([[1.0]])


def test_get_regridder_caches():
    clear_regridder_cache()
    lat = np.arange(90.0, -90.01, -5.0)
    lon = np.arange(0.0, 360.0, 5.0)
    g = ModelGrid.hrrr((0, 16), (0, 16))
    a = get_regridder(lat, lon, g)
    assert get_regridder(lat.copy(), lon.astype(np.float32).astype(np.float64), g) is a
    assert get_regridder(lat, lon, ModelGrid.hrrr((0, 16), (0, 16), name="same values")) is a
    assert get_regridder(lat, lon, g, device="cpu") is a
    assert get_regridder(lat, lon, ModelGrid.hrrr((1, 17), (0, 16))) is not a
    assert get_regridder(lat, lon, g, method="gather") is not a and a.method == "grid_sample"
    assert a.device == torch.device("cpu") and a.to("cpu") is a
    with pytest.raises(ValueError, match="ModelGrid"):
        get_regridder(lat, lon, (g.lat, g.lon))
    clear_regridder_cache()
