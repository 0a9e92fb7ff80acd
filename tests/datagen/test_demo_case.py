"""The default case of the embedded demo model (stormcast_plugin.datagen.demo_case)."""

import numpy as np
import pytest

from stormcast_plugin.datagen.demo_case import demo_sources
from stormcast_plugin.demo import DEMO_TERRAIN_SEED, demo_package
from stormcast_plugin.train.dataset import normalize_invariants


def test_default_case_lies_on_the_demo_models_own_terrain(tmp_path):
    pkg = demo_package()
    state, cond, store = demo_sources("2024-05-02T12", 1, tmp_path / "case")
    assert store.grid.shape == pkg.grid.shape
    # the hour before the start (the previous state) through start + hours, served by the sources
    assert store.times[0] == np.datetime64("2024-05-02T11") and len(store) == 3
    assert state(np.datetime64("2024-05-02T12"), ["t2m"]).shape == (1, 1, *pkg.grid.shape)
    assert cond(np.datetime64("2024-05-02T13"), ["t2m"]).dims == ("time", "variable", "lat", "lon")
    # the networks see the store's orography exactly as in training (z-scored over the grid)
    seen = normalize_invariants(store.read_invariants(pkg.invariant_names))
    np.testing.assert_allclose(seen, pkg.invariants, atol=1e-5)
    # another terrain seed is another domain, which the model would not know
    _, _, other = demo_sources("2024-05-02T12", 1, tmp_path / "other", terrain_seed=DEMO_TERRAIN_SEED + 1)
    assert np.abs(normalize_invariants(other.read_invariants(pkg.invariant_names)) - pkg.invariants).max() > 0.5


def test_a_start_off_the_hour_is_refused(tmp_path):
    with pytest.raises(ValueError, match="start 2024-05-02T12:30 is not on the hour"):
        demo_sources("2024-05-02T12:30", 1, tmp_path / "case")
    assert not (tmp_path / "case").exists()
