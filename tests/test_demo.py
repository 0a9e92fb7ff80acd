"""The embedded demo model (stormcast_plugin.demo)."""

import numpy as np
import pytest

import stormcast_plugin.demo as demo
from stormcast_plugin.demo import demo_grid, demo_package
from stormcast_plugin.utils.grid import ModelGrid


def test_the_bundled_package_is_on_the_demo_grid():
    pkg = demo_package()
    grid = demo_grid()
    assert grid.shape == (64, 64) and grid.native_window == (497, 561, 867, 931)
    pkg.grid.check_coords(grid.y, grid.x, atol=1e-6)
    np.testing.assert_allclose(pkg.grid.lat, grid.lat, rtol=0, atol=1e-9)
    np.testing.assert_allclose(pkg.grid.lon, grid.lon, rtol=0, atol=1e-9)
    v1 = ModelGrid.hrrr()
    assert abs(grid.y.mean() - v1.y.mean()) <= 1500 and abs(grid.x.mean() - v1.x.mean()) <= 1500
    assert pkg.info.get("name") != "stormcast-demo-random"


def test_a_missing_bundle_falls_back_to_a_random_package(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DEMO_PACKAGE_DIR", tmp_path / "absent")
    with pytest.warns(RuntimeWarning, match="bundled demo model is missing"):
        pkg = demo_package()
    assert pkg.info["name"] == "stormcast-demo-random" and "NOT a weather forecast" in pkg.info["description"]
    assert pkg.grid.fingerprint() == demo_grid().fingerprint()
    assert np.isfinite(pkg.state_mean).all()
