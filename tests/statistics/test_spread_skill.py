"""The spread/skill ratio: stormcast_plugin.statistics against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

xr = pytest.importorskip("xarray")

from stormcast_plugin import statistics as M  # noqa: E402


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
