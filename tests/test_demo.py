"""The embedded demo model and its default synthetic case."""

import numpy as np

from stormcast_plugin.train.dataset import normalize_invariants
from stormcast_plugin.demo import DEMO_TERRAIN_SEED, demo_package, demo_sources


def test_default_case_lies_on_the_demo_models_own_terrain(tmp_path):
    pkg = demo_package()
    _, _, store = demo_sources("2024-05-02T12", 1, tmp_path / "case")
    assert store.grid.shape == pkg.grid.shape
    # the networks see the store's orography exactly as in training (z-scored over the grid)
    seen = normalize_invariants(store.read_invariants(pkg.invariant_names))
    np.testing.assert_allclose(seen, pkg.invariants, atol=1e-5)
    # another terrain seed is another domain, which the model would not know
    _, _, other = demo_sources("2024-05-02T12", 1, tmp_path / "other", terrain_seed=DEMO_TERRAIN_SEED + 1)
    assert np.abs(normalize_invariants(other.read_invariants(pkg.invariant_names)) - pkg.invariants).max() > 0.5
