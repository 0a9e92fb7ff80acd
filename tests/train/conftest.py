"""A small learnable dataset: fields advected three grid points east per hour."""

import numpy as np
import pytest

from stormcast_plugin.io.dataset_store import DatasetStore
from stormcast_plugin.utils.grid import ModelGrid

STATE = ["u10m", "v10m", "t2m", "refc"]
COND = ["u10m", "t2m"]
INV = ["lsm", "orography"]


def make_store(path, hours=40, seed=0, start="2024-05-01T00"):
    grid = ModelGrid.hrrr(rows=(500, 516), cols=(800, 816), name="train-16x16")
    rng = np.random.default_rng(seed)
    h, w = grid.shape
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    lat = np.arange(42.0, 33.9, -0.5)
    lon = np.arange(255.0, 264.1, 0.5)
    times = np.datetime64(start, "h") + np.arange(hours) * np.timedelta64(1, "h")
    store = DatasetStore.create(path, times=times, state_variables=STATE, conditioning_variables=COND,
                                invariant_names=INV, grid=grid, cond_lat=lat, cond_lon=lon)
    means = np.array([2.0, -1.0, 290.0, 10.0])
    amps = np.array([5.0, 4.0, 6.0, 15.0])
    states = []
    for t in range(hours):
        phase = 2 * np.pi * (xx - 3 * t) / w  # 3 grid points east per hour
        s = np.stack([m + a * np.sin(phase + k) * np.cos(2 * np.pi * yy / h + 0.3 * k)
                      for k, (m, a) in enumerate(zip(means, amps))])
        s = s + 0.05 * amps[:, None, None] * rng.standard_normal(s.shape)
        c = np.stack([np.full((len(lat), len(lon)), 2.0 + np.sin(t / 5)),
                      np.full((len(lat), len(lon)), 290.0 + 3 * np.cos(t / 7))])
        store.write_hour(t, s, c)
        states.append(s)
    states = np.stack(states)
    store.write_invariants(np.stack([(xx > 8).astype(float), 100.0 + yy * 10.0]))
    store.write_statistics(states.mean(axis=(0, 2, 3)), states.std(axis=(0, 2, 3)),
                           np.array([2.0, 290.0]), np.array([0.7, 2.1]))
    store.consolidate()
    return path


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("data") / "train.zarr")
