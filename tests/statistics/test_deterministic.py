"""Deterministic errors: stormcast_plugin.statistics against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

xr = pytest.importorskip("xarray")

from stormcast_plugin import statistics as M  # noqa: E402


def field(values, dims=("y", "x")):
    return xr.DataArray(np.asarray(values, dtype=np.float64), dims=dims)


def test_rmse_mae_bias_by_hand():
    f = field([[1.0, 2.0], [3.0, 4.0]])
    t = field([[0.0, 2.0], [5.0, 4.0]])
    # errors: 1, 0, -2, 0
    assert float(M.rmse(f, t)) == pytest.approx(math.sqrt(5.0 / 4.0))
    assert float(M.mae(f, t)) == pytest.approx(3.0 / 4.0)
    assert float(M.bias(f, t)) == pytest.approx(-1.0 / 4.0)
    # NaN points are skipped; other dimensions are kept.
    f3 = xr.concat([f, f.where(f != 1.0)], dim="time")
    t3 = xr.concat([t, t], dim="time")
    out = M.rmse(f3, t3)
    assert out.dims == ("time",)
    assert out.values == pytest.approx([math.sqrt(5.0 / 4.0), math.sqrt(4.0 / 3.0)])

def test_mismatched_coordinates_are_named():
    f = xr.DataArray(np.zeros((2, 3)), dims=("y", "x"), coords={"x": [0, 1, 2]})
    t = xr.DataArray(np.zeros((2, 3)), dims=("y", "x"), coords={"x": [0, 1, 3]})
    with pytest.raises(ValueError, match="coordinates differ"):
        M.rmse(f, t)
    with pytest.raises(ValueError, match="'x' has 3 points in the forecast and 4"):
        M.rmse(f, xr.DataArray(np.zeros((2, 4)), dims=("y", "x")))
    with pytest.raises(ValueError, match="cannot reduce over \\['lead_time'\\]"):
        M.mae(f, f, dims="lead_time")


def test_deterministic_errors_match_numpy_with_missing_points_and_members():
    rng = np.random.default_rng(11)
    f = rng.normal(size=(3, 5, 7))
    t = rng.normal(size=(5, 7))
    t[0, 0] = np.nan
    fa = xr.DataArray(f, dims=("ensemble", "y", "x"))
    ta = xr.DataArray(t, dims=("y", "x"))
    err = f - t
    np.testing.assert_allclose(M.rmse(fa, ta).values, np.sqrt(np.nanmean(err ** 2, axis=(1, 2))), rtol=1e-12)
    np.testing.assert_allclose(M.mae(fa, ta).values, np.nanmean(np.abs(err), axis=(1, 2)), rtol=1e-12)
    np.testing.assert_allclose(M.bias(fa, ta).values, np.nanmean(err, axis=(1, 2)), rtol=1e-12)
    assert M.rmse(fa, ta).dims == ("ensemble",) and M.rmse(fa, ta).name == "rmse"


def test_importing_the_statistics_leaves_scores_and_torch_unloaded():
    import subprocess
    import sys

    code = ("import sys, stormcast_plugin.statistics; "
            "print([m for m in ('scores', 'torch', 'xarray') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
