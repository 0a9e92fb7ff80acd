"""Training on several dataset stores of one domain."""

import numpy as np
import pytest
import torch

from stormcast_plugin.train.dataset import MultiStoreDataset, StormCastDataset, pooled_statistics
from stormcast_plugin.io.dataset_store import DatasetStore
from stormcast_plugin.train.config import ConfigError, load_config
from stormcast_plugin.train.run import export_run, make_datasets, run_training

from .conftest import make_store


def _config(stores, **over):
    sets = [f"data.store=[{', '.join(str(s) for s in stores)}]", "model.model_channels=8", "model.num_blocks=1",
            "model.channel_mult=[1, 2]", "training.batch_size=4", "training.micro_batch=4",
            "training.valid_every=1000", "training.checkpoint_every=5", "logging.tensorboard=false",
            "logging.panels=false", "regression.steps=3", "diffusion.steps=0"]
    return load_config("tiny", sets + [f"{k}={v}" for k, v in over.items()])


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    return make_store(root / "a.zarr", hours=40, seed=0), make_store(root / "b.zarr", hours=24, seed=5)


def test_pooled_statistics_are_those_of_all_hours():
    rng = np.random.default_rng(0)
    a = rng.normal(3.0, 2.0, (50, 4))
    b = rng.normal(-1.0, 0.5, (20, 4))
    ca, cb = rng.normal(size=(50, 2)), rng.normal(5.0, 3.0, (20, 2))

    def stats(x, c):
        return {"state_mean": x.mean(0), "state_std": x.std(0), "conditioning_mean": c.mean(0),
                "conditioning_std": c.std(0)}

    pooled = pooled_statistics([(stats(a, ca), 50), (stats(b, cb), 20)])
    np.testing.assert_allclose(pooled["state_mean"], np.concatenate([a, b]).mean(0), rtol=1e-12)
    np.testing.assert_allclose(pooled["state_std"], np.concatenate([a, b]).std(0), rtol=1e-12)
    np.testing.assert_allclose(pooled["conditioning_std"], np.concatenate([ca, cb]).std(0), rtol=1e-12)
    with pytest.raises(ValueError, match="at least one"):
        pooled_statistics([])


def test_two_stores_are_one_training_set_with_pooled_statistics(two_stores):
    a, b = two_stores
    train, valid = make_datasets(_config([a, b]))
    assert isinstance(train, MultiStoreDataset) and isinstance(valid, MultiStoreDataset)
    # the statistics are those of every hour of both stores
    states = np.concatenate([DatasetStore.open(p).read_state(slice(None), None) for p in (a, b)])
    np.testing.assert_allclose(train.stats["state_mean"].numpy(), states.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(train.stats["state_std"].numpy(), states.std(axis=(0, 2, 3)), rtol=1e-4)
    # each store gives its first 90 % of hours to training and the rest to validation
    stats = {k: v.numpy() for k, v in train.stats.items()}
    parts = []
    for path in (a, b):
        times = DatasetStore.open(path).times
        cut = times[int(len(times) * 0.9)]
        parts.append(StormCastDataset(path, end=cut, statistics=stats, normalize_invariants=True))
    assert len(train) == len(parts[0]) + len(parts[1]) == 35 + 20
    assert len(valid) == (40 - 36) + (24 - 21) - 2
    got, want = train[len(parts[0]) + 3], parts[1][3]
    for key in ("state", "next_state", "conditioning", "invariants"):
        torch.testing.assert_close(got[key], want[key])
    assert list(train.state_variables) == list(parts[0].state_variables)
    assert train.times[len(parts[0]) + 3] == parts[1].times[3]


def test_a_run_on_two_stores_exports_the_pooled_statistics(two_stores, tmp_path):
    a, b = two_stores
    cfg = _config([a, b])
    run_training(cfg, tmp_path / "run", progress=False)
    pkg_dir = export_run(tmp_path / "run", tmp_path / "pkg")
    from stormcast_plugin.package import load_package

    pkg = load_package(pkg_dir)
    train, _ = make_datasets(cfg)
    np.testing.assert_allclose(pkg.state_mean, train.stats["state_mean"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(pkg.state_std, train.stats["state_std"].numpy(), rtol=1e-6)
    assert pkg.info["description"].endswith("on a.zarr, b.zarr")


def test_stores_of_another_domain_or_listed_twice_are_refused(two_stores, tmp_path):
    a, _ = two_stores
    other = make_store(tmp_path / "c.zarr", hours=10)
    store = DatasetStore.open(other, mode="a")
    inv = store.read_invariants()
    inv[1] += 250.0
    store.write_invariants(inv)
    store.consolidate()
    with pytest.raises(ConfigError, match=r"c\.zarr is not on the domain of .*orography by up to 250"):
        make_datasets(_config([a, other]))
    with pytest.raises(ConfigError, match="lists a store twice"):
        make_datasets(_config([a, a]))
    with pytest.raises(ConfigError, match="a path or a non-empty list of paths"):
        load_config("tiny", ["data.store=[1, 2]"])


def test_periods_apply_to_every_store_and_skip_stores_outside_them(two_stores, tmp_path):
    a, _ = two_stores  # 2024-05-01T00 .. 2024-05-02T15
    later = make_store(tmp_path / "june.zarr", hours=20, seed=2, start="2024-06-01T00")
    cfg = _config([a, later], **{"data.train": "{start: null, end: 2024-05-20T00}",
                                 "data.valid": "{start: 2024-05-20T00, end: null}"})
    train, valid = make_datasets(cfg)
    # the May store only trains and the June store only validates: one plain dataset each
    assert isinstance(train, StormCastDataset) and isinstance(valid, StormCastDataset)
    assert (len(train), len(valid)) == (39, 19)
    assert train.path.name == "a.zarr" and valid.path.name == "june.zarr"
    cfg = _config([a, later], **{"data.train": "{start: 2025-01-01T00, end: null}"})
    with pytest.raises(ConfigError, match="holds no hours of any store"):
        make_datasets(cfg)
