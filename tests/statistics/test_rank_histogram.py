"""Rank histograms: stormcast_plugin.statistics against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

xr = pytest.importorskip("xarray")

from stormcast_plugin import statistics as M  # noqa: E402


def test_rank_histogram_flat_when_calibrated_and_u_shaped_when_under_dispersive():
    rng = np.random.default_rng(6)
    m, n = 5, 30000
    t = xr.DataArray(rng.normal(size=n), dims=("p",))
    f = xr.DataArray(rng.normal(size=(m, n)), dims=("ensemble", "p"))
    counts = M.rank_histogram(f, t, dims="p")
    assert counts.dims == ("rank",)
    assert list(counts["rank"].values) == list(range(m + 1))
    assert int(counts.sum()) == n
    freq = counts.values / n
    np.testing.assert_allclose(freq, 1.0 / (m + 1), atol=0.015)
    narrow = f * 0.3
    u = M.rank_histogram(narrow, t, dims="p").values / n
    assert u[0] > 2.0 / (m + 1) and u[-1] > 2.0 / (m + 1)
    assert u[1:-1].max() < 1.0 / (m + 1)

def test_rank_histogram_breaks_ties_randomly_and_reproducibly():
    # every member equals the truth: ranks spread uniformly over 0..m
    t = xr.DataArray(np.zeros(6000), dims=("p",))
    f = xr.DataArray(np.zeros((3, 6000)), dims=("ensemble", "p"))
    a = M.rank_histogram(f, t, dims="p", seed=1)
    b = M.rank_histogram(f, t, dims="p", seed=1)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_allclose(a.values / 6000, 0.25, atol=0.03)
    # a NaN truth point is not counted
    t2 = t.copy()
    t2[0] = np.nan
    assert int(M.rank_histogram(f, t2, dims="p").sum()) == 5999


def test_rank_histogram_matches_scores_without_ties_and_on_average_with_ties():
    probability = pytest.importorskip("scores.probability")
    rng = np.random.default_rng(9)
    f = xr.DataArray(rng.normal(size=(4, 500)), dims=("ensemble", "p"))
    t = xr.DataArray(rng.normal(scale=1.5, size=500), dims=("p",))
    ours = M.rank_histogram(f, t, dims="p")
    theirs = probability.rank_histogram(f, t, "ensemble", reduce_dims=["p"])
    np.testing.assert_allclose(ours.values / 500, theirs.values, rtol=0, atol=1e-12)
    # with ties scores shares a point among its ranks; the random draws do so on average
    fi, ti = np.round(f * 2) / 2, np.round(t * 2) / 2
    theirs = probability.rank_histogram(fi, ti, "ensemble", reduce_dims=["p"]).values
    draws = np.mean([M.rank_histogram(fi, ti, dims="p", seed=s).values / 500 for s in range(200)], axis=0)
    np.testing.assert_allclose(draws, theirs, atol=0.01)
