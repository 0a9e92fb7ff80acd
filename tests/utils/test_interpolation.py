"""The bilinear regridder and its cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stormcast_plugin.utils.grid import ModelGrid
from stormcast_plugin.utils.interpolation import BilinearRegridder, clear_regridder_cache, get_regridder


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
    clear_regridder_cache()
