"""The fractions skill score: stormcast_plugin.statistics against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

xr = pytest.importorskip("xarray")

from stormcast_plugin import statistics as M  # noqa: E402


def field(values, dims=("y", "x")):
    return xr.DataArray(np.asarray(values, dtype=np.float64), dims=dims)


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


def test_fss_matches_scores_zero_padded_fss_away_from_the_edges_only():
    spatial = pytest.importorskip("scores.spatial")
    rng = np.random.default_rng(12)
    t = np.zeros((40, 40))
    f = np.zeros((40, 40))
    t[12:28, 12:28] = rng.uniform(0, 60, (16, 16))
    f[12:28, 12:28] = rng.uniform(0, 60, (16, 16))
    for window in (1, 5, 9):
        ours = M.fss(field(f), field(t), thresholds=[30.0], windows=[window]).item()
        theirs = float(spatial.fss_2d(field(f), field(t), event_threshold=30.0, window_size=(window, window),
                                      spatial_dims=("y", "x"), zero_padding=True,
                                      threshold_operator=np.greater_equal))
        assert ours == pytest.approx(theirs, rel=1e-12), window
    # an event on the border: zero padding dilutes it, the clipped box does not
    edge_t, edge_f = np.zeros((40, 40)), np.zeros((40, 40))
    edge_t[0, 0] = edge_f[0, 1] = 50.0
    ours = M.fss(field(edge_f), field(edge_t), thresholds=[30.0], windows=[5]).item()
    theirs = float(spatial.fss_2d(field(edge_f), field(edge_t), event_threshold=30.0, window_size=(5, 5),
                                  spatial_dims=("y", "x"), zero_padding=True, threshold_operator=np.greater_equal))
    assert ours != pytest.approx(theirs)
