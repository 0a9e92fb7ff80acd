"""Streaming per-channel statistics (stormcast_plugin.datagen.statistics)."""

from __future__ import annotations

import numpy as np
import pytest

from stormcast_plugin.datagen.statistics import RunningStats



def test_running_stats_large_offset_small_spread() -> None:
    rng = np.random.default_rng(0)
    data = (1.0e5 + 1.0e-2 * rng.standard_normal((40, 3, 16, 16))).astype(np.float32)
    data[:, 1] += np.float32(500.0)
    truth = data.astype(np.float64)
    stats = RunningStats()
    for k in range(0, 40, 7):  # uneven float32 chunks
        stats.update(data[k:k + 7])
    assert stats.count == 40 * 16 * 16
    np.testing.assert_allclose(stats.mean, truth.mean(axis=(0, 2, 3)), rtol=1e-14)
    np.testing.assert_allclose(stats.variance, truth.var(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(stats.std, truth.std(axis=(0, 2, 3)), rtol=1e-9)
    # the textbook sum-of-squares formula is far off here: the test has teeth
    naive = (truth ** 2).mean(axis=(0, 2, 3)) - truth.mean(axis=(0, 2, 3)) ** 2
    assert np.abs(naive / truth.var(axis=(0, 2, 3)) - 1).max() > 1e-6


def test_running_stats_merge_and_errors() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(3.0, 2.0, (5, 4, 6)).astype(np.float32)
    b = rng.normal(-1.0, 0.5, (9, 4, 6)).astype(np.float32)
    left, right = RunningStats().update(a), RunningStats(4).update(b)
    left.merge(right).merge(RunningStats())
    both = np.concatenate([a, b]).astype(np.float64)
    np.testing.assert_allclose(left.mean, both.mean(axis=(0, 2)), rtol=1e-13)
    np.testing.assert_allclose(left.std, both.std(axis=(0, 2)), rtol=1e-12)
    empty = RunningStats().merge(RunningStats(4).update(b))
    np.testing.assert_allclose(empty.mean, b.astype(np.float64).mean(axis=(0, 2)), rtol=1e-13)
    with pytest.raises(ValueError, match="no data"):
        RunningStats().mean
    with pytest.raises(ValueError, match="channels"):
        left.update(np.zeros((2, 3, 6)))
    with pytest.raises(ValueError, match="NaN"):
        RunningStats().update(np.array([[1.0, np.nan]]))
    # channels last
    last = RunningStats(axis=-1).update(np.moveaxis(a, 1, -1))
    np.testing.assert_allclose(last.mean, a.astype(np.float64).mean(axis=(0, 2)), rtol=1e-13)
