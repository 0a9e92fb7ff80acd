"""The ensemble CRPS: stormcast_plugin.statistics against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

xr = pytest.importorskip("xarray")

from stormcast_plugin import statistics as M  # noqa: E402


def gaussian_crps(mu: float, sigma: float, y: np.ndarray) -> np.ndarray:
    """Closed-form CRPS of N(mu, sigma^2) at y."""
    z = (np.asarray(y, dtype=np.float64) - mu) / sigma
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * z ** 2) / math.sqrt(2.0 * math.pi)
    return sigma * (z * (2.0 * cdf - 1.0) + 2.0 * pdf - 1.0 / math.sqrt(math.pi))


def test_crps_large_gaussian_ensemble_matches_closed_form():
    rng = np.random.default_rng(1)
    mu, sigma = 1.5, 2.0
    y = np.array([-3.0, 0.0, 1.5, 2.5, 6.0])
    members = rng.normal(mu, sigma, size=(4000, 1)) * np.ones((1, y.size))
    f = xr.DataArray(members, dims=("ensemble", "point"))
    t = xr.DataArray(y, dims=("point",))
    got = M.crps_ensemble(f, t, dims=())
    assert got.dims == ("point",)
    np.testing.assert_allclose(got.values, gaussian_crps(mu, sigma, y), atol=0.04)

def test_crps_sorted_formula_equals_pairwise_definition():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(7, 5))
    y = rng.normal(size=5)
    m = x.shape[0]
    pairs = np.abs(x[:, None, :] - x[None, :, :]).sum(axis=(0, 1))
    fair = np.abs(x - y).mean(axis=0) - pairs / (2 * m * (m - 1))
    plain = np.abs(x - y).mean(axis=0) - pairs / (2 * m * m)
    f = xr.DataArray(x, dims=("member", "p"))
    t = xr.DataArray(y, dims=("p",))
    np.testing.assert_allclose(M.crps_ensemble(f, t, dims=()).values, fair, rtol=1e-12)
    np.testing.assert_allclose(M.crps_ensemble(f, t, dims=(), fair=False).values, plain, rtol=1e-12)

def test_crps_of_one_member_is_mae():
    rng = np.random.default_rng(3)
    f = xr.DataArray(rng.normal(size=(1, 6, 8)), dims=("ensemble", "y", "x"))
    t = xr.DataArray(rng.normal(size=(6, 8)), dims=("y", "x"))
    assert float(M.crps_ensemble(f, t)) == pytest.approx(float(M.mae(f.isel(ensemble=0), t)))

def test_fair_crps_is_unbiased_for_small_ensembles():
    rng = np.random.default_rng(4)
    mu, sigma, y0 = 0.0, 1.0, 0.7
    n = 40000
    expected = float(gaussian_crps(mu, sigma, np.array([y0]))[0])
    for m in (2, 3, 5):
        f = xr.DataArray(rng.normal(mu, sigma, size=(m, n)), dims=("ensemble", "draw"))
        t = xr.DataArray(np.full(n, y0), dims=("draw",))
        fair = float(M.crps_ensemble(f, t, dims="draw"))
        plain = float(M.crps_ensemble(f, t, dims="draw", fair=False))
        assert fair == pytest.approx(expected, abs=0.01), m
        # the standard estimator over-scores small ensembles by sigma/(m sqrt(pi)) on average
        assert plain - expected == pytest.approx(sigma / (m * math.sqrt(math.pi)), abs=0.01), m


def test_crps_is_scores_fair_and_ecdf_crps():
    probability = pytest.importorskip("scores.probability")
    rng = np.random.default_rng(10)
    f = xr.DataArray(rng.normal(size=(5, 6, 8)), dims=("ensemble", "y", "x"))
    t = xr.DataArray(rng.normal(size=(6, 8)), dims=("y", "x"))
    for fair, method in ((True, "fair"), (False, "ecdf")):
        theirs = probability.crps_for_ensemble(f, t, "ensemble", method=method, reduce_dims=["y", "x"])
        assert float(M.crps_ensemble(f, t, fair=fair)) == pytest.approx(float(theirs), rel=1e-12)
