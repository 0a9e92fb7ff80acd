"""Training samples from a dataset store: pairs, normalisation, regridding, crops, workers, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from stormcast_plugin.train.dataset import StormCastDataset
from stormcast_plugin.io.dataset_store import DatasetStore, StoreError

from tests.data.test_store_sources import COND, INV, STATE, STATS, T0, at, cond_field, invariant_fields, make_store, \
    small_grid, state_field

# Valid pairs of the test store (hours after T0): 4 is missing, 7 unwritten, 10 absent.
VALID = [0, 1, 2, 5, 8, 11]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> DatasetStore:
    return make_store(tmp_path_factory.mktemp("dataset") / "case.zarr")


def hours_of(ds: StormCastDataset) -> list[int]:
    return [int((t - T0) // np.timedelta64(1, "h")) for t in ds.times]


def normalised(hour: int, channels=None) -> np.ndarray:
    ch = list(range(len(STATE))) if channels is None else channels
    x = state_field(hour, small_grid().shape).astype(np.float64)[ch]
    return (x - STATS["state_mean"][ch, None, None]) / STATS["state_std"][ch, None, None]


def test_pairs_skip_missing_unwritten_and_gaps(store):
    ds = StormCastDataset(store)
    assert len(ds) == len(VALID)
    assert hours_of(ds) == VALID
    for i, h in enumerate(VALID):
        item = ds[i]
        assert int(item["time"]) == int((at(h) - np.datetime64("1970-01-01T00", "ns")) // np.timedelta64(1, "h"))
        np.testing.assert_allclose(item["state"].numpy(), normalised(h), rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(item["next_state"].numpy(), normalised(h + 1), rtol=1e-6, atol=1e-5)
    assert ds[-1]["time"] == ds[len(ds) - 1]["time"]
    with pytest.raises(IndexError, match="out of range"):
        ds[len(ds)]


def test_item_fields_dtypes_and_values(store):
    ds = StormCastDataset(store, state_variables=["t2m", "u10m"], conditioning_variables=["z500", "v10m"],
                          invariant_names=["orography"])
    item = ds[2]  # hour 2
    assert set(item) == {"state", "next_state", "conditioning", "invariants", "time", "offset"}
    assert item["state"].shape == item["next_state"].shape == (2, 16, 24)
    assert item["conditioning"].shape == (2, 16, 24) and item["invariants"].shape == (1, 16, 24)
    for k in ("state", "next_state", "conditioning", "invariants"):
        assert item[k].dtype == torch.float32
    assert item["time"].dtype == torch.int64 and item["time"].ndim == 0
    np.testing.assert_allclose(item["state"].numpy(), normalised(2, [2, 0]), rtol=1e-6, atol=1e-5)
    # Conditioning: a linear field in lat/lon is reproduced by the bilinear regridding, then normalised.
    grid = small_grid()
    ref = cond_field(2, grid.lat, grid.lon).astype(np.float64)[[5, 1]]
    ref = (ref - STATS["conditioning_mean"][[5, 1], None, None]) / STATS["conditioning_std"][[5, 1], None, None]
    np.testing.assert_allclose(item["conditioning"].numpy(), ref, rtol=0, atol=5e-4)
    # Invariants as stored.
    np.testing.assert_array_equal(item["invariants"].numpy(), invariant_fields(grid.shape)[[1]])
    # Statistics of the selected channels, and the inverse of the normalisation.
    torch.testing.assert_close(ds.stats["state_std"], torch.tensor(STATS["state_std"][[2, 0]], dtype=torch.float32))
    back = ds.denormalize(item["state"])
    torch.testing.assert_close(back, torch.from_numpy(state_field(2, grid.shape)[[2, 0]]), rtol=0, atol=2e-4)
    np.testing.assert_allclose(ds.denormalize(item["conditioning"].numpy()[None], "conditioning")[0],
                               cond_field(2, grid.lat, grid.lon)[[5, 1]], rtol=0, atol=2e-3)
    with pytest.raises(ValueError, match=r"expected \[\.\.\., 2, H, W\]"):
        ds.denormalize(torch.zeros(3, 16, 24))


def test_time_range_restriction(store):
    ds = StormCastDataset(store, start=at(1), end="2024-05-01T09")
    assert hours_of(ds) == [1, 2, 5]  # 8 -> 9 leaves the range: the target hour must lie before end
    ds = StormCastDataset(store, start=at(5))
    assert hours_of(ds) == [5, 8, 11]
    assert hours_of(StormCastDataset(store, start=at(2), end=at(4))) == [2]
    with pytest.raises(StoreError, match=r"no valid pair .*2024-05-01T03.*2024-05-01T05"):
        StormCastDataset(store, start=at(3), end=at(5))  # (3, 4) and (4, 5) touch the missing hour
    with pytest.raises(ValueError, match="is not before end"):
        StormCastDataset(store, start=at(5), end=at(5))


def test_random_crop_shapes_reproducible_and_consistent(store):
    ds = StormCastDataset(store, crop=(8, 12), seed=3)
    inv = invariant_fields(small_grid().shape)
    a = ds[1]
    assert a["state"].shape == a["next_state"].shape == (6, 8, 12)
    assert a["conditioning"].shape == (6, 8, 12) and a["invariants"].shape == (2, 8, 12)
    r0, c0 = (int(v) for v in a["offset"])
    np.testing.assert_array_equal(a["invariants"].numpy(), inv[:, r0:r0 + 8, c0:c0 + 12])
    np.testing.assert_allclose(a["state"].numpy(), normalised(1)[:, r0:r0 + 8, c0:c0 + 12], rtol=1e-6, atol=1e-5)
    full = StormCastDataset(store)[1]["conditioning"]
    torch.testing.assert_close(a["conditioning"], full[:, r0:r0 + 8, c0:c0 + 12])
    # Same seed, epoch and index: same window, also from a fresh object.
    again = StormCastDataset(store, crop=(8, 12), seed=3)[1]
    assert torch.equal(again["offset"], a["offset"]) and torch.equal(again["state"], a["state"])
    offsets = {}
    for epoch in range(3):
        ds.set_epoch(epoch)
        offsets[epoch] = [ds.crop_offset(i) for i in range(len(ds))]
    assert offsets[0] != offsets[1] and offsets[1] != offsets[2] and offsets[0] != offsets[2]
    assert len(set(offsets[0])) > 1  # windows differ between samples too
    ds.set_epoch(1)
    assert tuple(int(v) for v in ds[1]["offset"]) == offsets[1][1]
    assert [StormCastDataset(store, crop=(8, 12), seed=4).crop_offset(i) for i in range(6)] != offsets[0]
    with pytest.raises(ValueError, match=r"crop \(17, 12\) does not fit the 16 x 24 grid"):
        StormCastDataset(store, crop=(17, 12))


def test_normalized_invariants_are_z_scored_over_the_whole_grid(store):
    from stormcast_plugin.train.dataset import normalize_invariants

    inv = invariant_fields(small_grid().shape).astype(np.float64)
    expect = (inv - inv.mean(axis=(1, 2), keepdims=True)) / inv.std(axis=(1, 2), keepdims=True)
    full = StormCastDataset(store, normalize_invariants=True)[1]["invariants"].numpy()
    np.testing.assert_allclose(full, expect, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(full.reshape(2, -1).mean(1), 0.0, atol=1e-5)
    np.testing.assert_allclose(full.reshape(2, -1).std(1), 1.0, atol=1e-5)
    # a crop is a window of the whole grid's normalised fields, not renormalised
    a = StormCastDataset(store, crop=(8, 12), seed=3, normalize_invariants=True)[1]
    r0, c0 = (int(v) for v in a["offset"])
    np.testing.assert_allclose(a["invariants"].numpy(), expect[:, r0:r0 + 8, c0:c0 + 12], rtol=1e-5, atol=1e-5)
    # a constant channel (an all-land mask) becomes zero rather than dividing by zero
    const = normalize_invariants(np.stack([np.ones((4, 5)), np.arange(20.0).reshape(4, 5)]))
    assert np.array_equal(const[0], np.zeros((4, 5))) and np.isfinite(const).all()
    assert normalize_invariants(np.zeros((0, 4, 5))).shape == (0, 4, 5)


def test_pickles_with_only_the_path(store):
    ds = StormCastDataset(str(store.path), crop=(8, 8))
    ds[0]  # opens the store in this process
    blob = pickle.dumps(ds)
    assert b"zarr" not in blob.replace(b".zarr", b"")  # no zarr objects, only the path
    copy = pickle.loads(blob)
    for k in ("state", "conditioning", "invariants", "offset"):
        assert torch.equal(copy[3][k], ds[3][k])


def test_dataloader_workers_match_single_process(store):
    ds = StormCastDataset(store, crop=(8, 16), seed=1)
    ds.set_epoch(2)

    def collect(workers):
        loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=workers, shuffle=False)
        return list(loader)

    single, multi = collect(0), collect(2)
    assert len(single) == len(multi) == 2
    for a, b in zip(single, multi):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_missing_variable_and_invariant_are_named(store):
    with pytest.raises(StoreError, match=r"lacks state variables \['t2m_bogus'\]"):
        StormCastDataset(store, state_variables=["t2m", "t2m_bogus"])
    with pytest.raises(StoreError, match=r"lacks conditioning variables \['q850'\]"):
        StormCastDataset(store, conditioning_variables=["q850"])
    with pytest.raises(StoreError, match=r"no invariants \['soil'\]"):
        StormCastDataset(store, invariant_names=["soil"])
    with pytest.raises(ValueError, match="got the string"):
        StormCastDataset(store, state_variables="t2m")


def test_missing_or_zero_std_statistics(tmp_path, store):
    bare = make_store(tmp_path / "bare.zarr", statistics=False, hours=(0, 1, 2), missing=(), unwritten=())
    with pytest.raises(StoreError, match=r"statistics are missing.*stormcast data prepare"):
        StormCastDataset(bare)
    # Statistics given explicitly make a store without them usable (e.g. training statistics for validation).
    ds = StormCastDataset(bare, statistics=StormCastDataset(store).stats)
    assert len(ds) == 2
    stats = dict(STATS, state_std=np.where(np.arange(len(STATE)) == 2, 0.0, 1.0))
    with pytest.raises(ValueError, match=r"statistics\['state_std'\].*\['t2m'\]"):
        StormCastDataset(bare, statistics=stats)
    with pytest.raises(ValueError, match=r"has 6 values; expected one per selected variable \(1"):
        StormCastDataset(bare, state_variables=["t2m"], statistics=STATS)
    bare.group["state_std"][...] = np.where(np.arange(len(STATE)) == 3, 0.0, 1.0)  # bypassing write_statistics
    bare.group["conditioning_std"][...] = 1.0
    bare.group["state_mean"][...] = 0.0
    bare.group["conditioning_mean"][...] = 0.0
    with pytest.raises(StoreError, match=r"zero std for \['msl'\]"):
        StormCastDataset(bare)


def test_store_without_valid_pairs_fails_early(tmp_path):
    st = make_store(tmp_path / "gappy.zarr", hours=(0, 1, 2), missing=(1,), unwritten=())
    with pytest.raises(StoreError, match=r"no valid pair .*3 of 3 hours written, 1 recorded missing"):
        StormCastDataset(st)


def test_conditioning_grid_must_cover_the_model_grid(tmp_path):
    grid = small_grid()
    st = DatasetStore.create(tmp_path / "small_cond.zarr", times=[T0, at(1)], state_variables=STATE,
                             conditioning_variables=COND, invariant_names=INV, grid=grid,
                             cond_lat=np.arange(45.0, 40.0, -0.25), cond_lon=np.arange(255.0, 275.0, 0.25))
    st.write_statistics(**STATS)
    st.write_invariants(invariant_fields(grid.shape))
    with pytest.raises(StoreError, match="conditioning grid does not cover the model grid"):
        StormCastDataset(st)


def test_nan_in_a_written_hour_is_named(tmp_path):
    st = make_store(tmp_path / "nan.zarr", hours=(0, 1, 2), missing=(), unwritten=())
    grid = small_grid()
    bad = state_field(1, grid.shape)
    bad[3, 2, 2] = np.nan
    lat2, lon2 = np.meshgrid(st.cond_lat, st.cond_lon, indexing="ij")
    st.write_hour(1, bad, cond_field(1, lat2, lon2))
    ds = StormCastDataset(st)
    with pytest.raises(StoreError, match=r"state at 2024-05-01T01.*NaN or infinite values in \['msl'\]"):
        ds[0]  # (0, 1): the target hour is bad


def test_local_time_channels_come_with_each_sample(store):
    from stormcast_plugin.utils.local_time import local_time_channels

    ds = StormCastDataset(store, local_time=True, normalize_invariants=True)
    assert ds.input_invariant_names == ds.invariant_names + ("cos_local_time", "sin_local_time")
    plain = StormCastDataset(store, normalize_invariants=True)
    assert "local_time" not in plain[0]
    for i in (0, 3):
        item = ds[i]
        assert np.datetime64(int(item["time"]), "h") == ds.times[i]
        expect = local_time_channels(ds.times[i], small_grid().lon)[0]
        assert item["local_time"].shape == (2,) + small_grid().shape
        np.testing.assert_allclose(item["local_time"].numpy(), expect, atol=1e-6)
        torch.testing.assert_close(item["invariants"], plain[i]["invariants"])
    # hours 0 and 1 differ by 15 degrees of local time at every point
    a, b = ds[0]["local_time"].numpy(), ds[1]["local_time"].numpy()
    angle = np.angle((b[0] + 1j * b[1]) / (a[0] + 1j * a[1]), deg=True)
    np.testing.assert_allclose(angle, 15.0, atol=1e-3)
    # a crop takes the window of the whole grid's channels
    cropped = StormCastDataset(store, crop=(8, 12), seed=3, local_time=True)[1]
    r0, c0 = (int(v) for v in cropped["offset"])
    full = ds[1]["local_time"].numpy()
    np.testing.assert_allclose(cropped["local_time"].numpy(), full[:, r0:r0 + 8, c0:c0 + 12], atol=1e-6)
