"""Tests for stormcast_plugin.statistics.metrics against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

xr = pytest.importorskip("xarray")

from stormcast_plugin.statistics import metrics as M  # noqa: E402


def gaussian_crps(mu: float, sigma: float, y: np.ndarray) -> np.ndarray:
    """Closed-form CRPS of N(mu, sigma^2) at y."""
    z = (np.asarray(y, dtype=np.float64) - mu) / sigma
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * z ** 2) / math.sqrt(2.0 * math.pi)
    return sigma * (z * (2.0 * cdf - 1.0) + 2.0 * pdf - 1.0 / math.sqrt(math.pi))


def field(values, dims=("y", "x")):
    return xr.DataArray(np.asarray(values, dtype=np.float64), dims=dims)


# ---------------------------------------------------------------- deterministic

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


# ---------------------------------------------------------------- ensembles

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


def test_spread_skill_ratio_is_one_when_calibrated_and_low_when_under_dispersive():
    rng = np.random.default_rng(5)
    m, n = 4, 20000
    centre = rng.normal(0.0, 3.0, size=n)  # a predictable signal, different at each point
    f = xr.DataArray(centre + rng.normal(0.0, 1.0, size=(m, n)), dims=("ensemble", "p"))
    t = xr.DataArray(centre + rng.normal(0.0, 1.0, size=n), dims=("p",))
    assert float(M.spread_skill_ratio(f, t, dims="p")) == pytest.approx(1.0, abs=0.03)
    narrow = xr.DataArray(centre + rng.normal(0.0, 0.3, size=(m, n)), dims=("ensemble", "p"))
    parts = M.spread_skill_ratio(narrow, t, dims="p", components=True)
    assert float(parts["ratio"]) < 0.5
    assert float(parts["ratio"]) == pytest.approx(float(parts["spread"] / parts["skill"]))
    with pytest.raises(ValueError, match="at least 2 members"):
        M.spread_skill_ratio(f.isel(ensemble=[0]), t, dims="p")
    with pytest.raises(ValueError, match="needs an ensemble forecast"):
        M.spread_skill_ratio(t, t, dims="p")


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


# ---------------------------------------------------------------- spectra

@pytest.mark.parametrize("k", [1, 3, 7])
def test_plane_wave_spectrum_peaks_at_its_wavenumber(k):
    n = 32
    x = np.arange(n)
    wave = field(np.sin(2 * np.pi * k * x / n)[None, :] * np.ones((n, 1)))
    spec = M.radial_power_spectrum(wave, grid_spacing_km=3.0)
    assert spec.dims == ("wavenumber",)
    assert int(spec["wavenumber"][int(np.argmax(spec.values))]) == k
    assert float(spec["wavelength_km"].sel(wavenumber=k)) == pytest.approx(n * 3.0 / k)
    # all the variance (1/2) is in bin k; other bins are empty
    assert float((spec * spec["modes"]).sum()) == pytest.approx(0.5)
    assert float(spec.drop_sel(wavenumber=k).max()) < 1e-20


def test_spectrum_on_a_rectangular_grid_counts_cycles_along_the_longer_side():
    ny, nx, k = 16, 24, 5
    wave = field(np.cos(2 * np.pi * k * np.arange(nx) / nx)[None, :] * np.ones((ny, 1)))
    spec = M.radial_power_spectrum(wave)
    assert spec.sizes["wavenumber"] == nx // 2
    assert int(spec["wavenumber"][int(np.argmax(spec.values))]) == k


def test_spectral_ratio_of_identical_fields_is_one():
    rng = np.random.default_rng(7)
    a = xr.DataArray(rng.normal(size=(2, 20, 20)), dims=("time", "y", "x"))
    ratio = M.spectral_ratio(a, a)
    np.testing.assert_allclose(ratio.values, 1.0)
    smooth = M.spectral_ratio(0.5 * a, a, mean_dims=("time",))
    np.testing.assert_allclose(smooth.values, 0.25)


# ---------------------------------------------------------------- categorical

def test_contingency_scores_on_a_hand_made_case():
    # 2 x 2 fields, threshold 30: hit at (0,0), miss at (0,1), false alarm at (1,0), correct negative (1,1)
    f = field([[35.0, 10.0], [42.0, 5.0]])
    t = field([[31.0, 33.0], [12.0, 0.0]])
    table = M.contingency_table(f, t, thresholds=[30.0])
    assert [table[k].item() for k in ("hits", "misses", "false_alarms", "correct_negatives")] == [1, 1, 1, 1]
    assert M.csi(f, t, [30.0]).item() == pytest.approx(1 / 3)
    assert M.pod(f, t, [30.0]).item() == pytest.approx(1 / 2)
    assert M.far(f, t, [30.0]).item() == pytest.approx(1 / 2)
    # threshold 40: no observed event, one forecast event
    scores = M.categorical_scores(f, t, thresholds=[20.0, 30.0, 40.0])
    assert scores["csi"].dims == ("threshold",)
    assert list(scores["threshold"].values) == [20.0, 30.0, 40.0]
    assert np.isnan(float(scores["pod"].sel(threshold=40.0)))
    assert float(scores["far"].sel(threshold=40.0)) == 1.0
    assert float(scores["csi"].sel(threshold=40.0)) == 0.0


def test_csi_without_any_event_is_nan():
    zeros = field(np.zeros((4, 4)))
    assert np.isnan(M.csi(zeros, zeros, [20.0, 30.0, 40.0]).values).all()


# ---------------------------------------------------------------- FSS

def test_fss_perfect_forecast_is_one():
    rng = np.random.default_rng(8)
    refc = field(rng.uniform(0, 60, size=(20, 30)))
    out = M.fss(refc, refc)
    assert out.dims == ("threshold", "window")
    assert list(out["window"].values) == [1, 9, 25]
    np.testing.assert_allclose(out.values, 1.0)


def test_fss_of_a_shifted_event_grows_with_window_size():
    t = np.zeros((32, 32))
    f = np.zeros((32, 32))
    t[16, 10] = 50.0
    f[16, 13] = 50.0  # three points east
    windows = [1, 3, 5, 7, 9, 15, 31]
    out = M.fss(field(f), field(t), thresholds=[30.0], windows=windows).isel(threshold=0).values
    assert out[0] == 0.0 and out[1] == 0.0  # no overlap within a 3 x 3 box
    assert np.all(np.diff(out[1:]) > 0)
    assert out[-1] > 0.8


def test_fss_no_events_is_nan_and_one_sided_is_zero():
    zeros = field(np.zeros((10, 10)))
    assert np.isnan(M.fss(zeros, zeros).values).all()
    storm = field(np.where(np.arange(100).reshape(10, 10) == 55, 45.0, 0.0))
    assert (M.fss(storm, zeros, thresholds=[40.0]).values == 0.0).all()


def test_neighbourhood_fraction_clips_the_box_at_the_edge():
    a = field(np.eye(3) * 50.0)
    frac = M.neighbourhood_fraction(a, 30.0, 3).values
    # the corner box holds (0,0),(0,1),(1,0),(1,1): two events out of four points
    assert frac[0, 0] == pytest.approx(0.5)
    assert frac[1, 1] == pytest.approx(3 / 9)


def test_fss_ensemble_uses_member_mean_fractions_and_checks_windows():
    t = np.zeros((12, 12))
    t[6, 6] = 50.0
    members = np.zeros((2, 12, 12))
    members[0, 6, 6] = 50.0  # one member right, one with nothing
    f = xr.DataArray(members, dims=("ensemble", "y", "x"))
    out = M.fss(f, field(t), thresholds=[40.0], windows=[1])
    # Pf = 0.5 at the event: 1 - 0.25 / (0.25 + 1)
    assert out.item() == pytest.approx(0.8)
    with pytest.raises(ValueError, match="odd positive integers"):
        M.fss(f, field(t), windows=[4])
    with pytest.raises(ValueError, match="must include the spatial dimensions"):
        M.fss(f, field(t), dims=("y",))
