"""Contingency scores: stormcast_plugin.statistics against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

xr = pytest.importorskip("xarray")

from stormcast_plugin import statistics as M  # noqa: E402


def field(values, dims=("y", "x")):
    return xr.DataArray(np.asarray(values, dtype=np.float64), dims=dims)


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


def test_counts_pool_members_and_a_zero_threshold_is_kept():
    f = xr.DataArray(np.array([[[0.0, -1.0]], [[2.0, 0.0]]]), dims=("ensemble", "y", "x"))
    t = field([[0.0, np.nan]])
    table = M.contingency_table(f, t, thresholds=[0.0], dims=("ensemble", "y", "x"))
    # events are value >= 0: the NaN truth point is not counted; both members hit at (0, 0)
    assert [table[k].item() for k in ("hits", "misses", "false_alarms", "correct_negatives")] == [2, 0, 0, 0]
    assert M.csi(f, t, [0.0], dims=("ensemble", "y", "x")).item() == 1.0
