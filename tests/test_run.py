"""The forecast runner in one process: campaigns, written flags, resume, out-of-memory halving, precision."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

xr = pytest.importorskip("xarray")

from stormcast_plugin.io.forecast_store import WRITTEN, open_forecast, open_output  # noqa: E402
from stormcast_plugin.models.px.stormcast import StormCast  # noqa: E402
from stormcast_plugin.run import run_forecast  # noqa: E402
from stormcast_plugin.testing import DemoConditioningSource, DemoStateSource, random_package  # noqa: E402
from stormcast_plugin.utils.grid import ModelGrid  # noqa: E402
from stormcast_plugin.utils.variables import INVARIANTS, PRESETS  # noqa: E402

STARTS = np.array(["2024-05-01T00", "2024-05-01T12", "2024-05-02T00"], dtype="datetime64[ns]")
FIELDS = ("t2m", "refc", "u10m")


@pytest.fixture(scope="module")
def package():
    grid = ModelGrid.hrrr(rows=(500, 516), cols=(800, 824), name="test-16x24")
    return random_package(PRESETS["tiny"]["state"], PRESETS["tiny"]["conditioning"], INVARIANTS, grid,
                          model_channels=8, channel_mult=(1, 2, 2), num_blocks=1, seed=9)


def model_of(package, **kw):
    return StormCast(package, DemoConditioningSource(package), seed=kw.pop("seed", 3), sampler_steps=2, **kw)


def campaign(package, path, *, starts=STARTS, hours=3, members=3, batch_size=2, model=None, **kw):
    run_forecast(model or model_of(package), DemoStateSource(package), starts, hours, path, members=members,
                 batch_size=batch_size, progress=False, **kw)
    return path


def fields(path):
    ds = xr.open_zarr(path)
    return {v: ds[v].values for v in FIELDS}


@pytest.fixture(scope="module")
def straight(package, tmp_path_factory):
    """An uninterrupted campaign: 3 initial times x 3 members x 3 hours, blocks of 2 members."""
    return campaign(package, tmp_path_factory.mktemp("straight") / "hc.zarr")


def counting(model):
    """Record every member-hour the model computes: (member, initial time, lead hour of the result)."""
    done = []
    real = model._step

    def step(x, coords, members, seed, memory=None):
        lead = int(coords["lead_time"][0] / np.timedelta64(1, "h")) + 1
        done.extend((int(m), np.datetime64(t, "h"), lead) for m in members for t in coords["time"])
        return real(x, coords, members, seed, memory)

    model._step = step
    return done


def test_a_campaign_store_has_every_member_hour_of_every_initial_time(straight):
    ds = xr.open_zarr(straight)
    assert ds["t2m"].dims == ("ensemble", "time", "lead_time", "hrrr_y", "hrrr_x")
    assert ds["t2m"].shape == (3, 3, 4, 16, 24)
    assert (ds["time"].values == STARTS).all()
    assert ds[WRITTEN].dims == ("ensemble", "time", "lead_time") and bool((ds[WRITTEN] == 1).all())
    assert ds[WRITTEN].encoding["chunks"] == (2, 1, 4)  # one flag chunk per block of members and initial time
    assert ds["t2m"].encoding["chunks"] == (1, 1, 1, 16, 24)  # fields per member, initial time and hour
    assert ds.attrs["completed_lead_hours"] == 3 and ds.attrs["seed"] == 3 and ds.attrs["precision"] == "fp32"
    assert np.isfinite(ds["t2m"].values).all()
    # the initial times differ, the members differ
    assert not np.allclose(ds["t2m"].values[0, 0, 1], ds["t2m"].values[0, 1, 1])
    assert not np.allclose(ds["t2m"].values[0, 0, 2], ds["t2m"].values[1, 0, 2])


def test_each_initial_time_of_a_campaign_is_its_own_forecast(package, straight, tmp_path):
    whole = fields(straight)
    one = fields(campaign(package, tmp_path / "one.zarr", starts=STARTS[1:2]))
    for v in FIELDS:
        assert np.array_equal(one[v][:, 0], whole[v][:, 1]), v


def test_resume_computes_exactly_the_missing_member_hours(package, straight, tmp_path):
    path = tmp_path / "cut.zarr"
    model = model_of(package)
    real, calls = model._step, {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # Ctrl-C during the second unit
        return real(*args, **kwargs)

    model._step = failing
    with pytest.raises(KeyboardInterrupt):
        campaign(package, path, model=model)
    before = xr.open_zarr(path)[WRITTEN].values.astype(bool)
    assert 0 < before[..., 1:].sum() < before[..., 1:].size
    with pytest.warns(UserWarning, match=r"incomplete \(completed_lead_hours = -1\).*"
                                         r"\(26 of 36 member-hours are missing\)"):
        partial = open_forecast(path)
    assert bool(partial["t2m"].isel(ensemble=0, time=0, lead_time=3).notnull().all())  # written: kept

    resumed = model_of(package)
    done = counting(resumed)
    campaign(package, path, model=resumed, resume=True)
    missing = {(int(m), np.datetime64(STARTS[t], "h"), h) for m, t, h in zip(*np.nonzero(~before)) if h > 0}
    assert sorted(done) == sorted(missing)  # every missing member-hour once, nothing finished again
    got, want = fields(path), fields(straight)
    for v in FIELDS:
        assert np.array_equal(got[v], want[v]), v
    ds = xr.open_zarr(path)
    assert ds.attrs["completed_lead_hours"] == 3 and bool((ds[WRITTEN] == 1).all())

    again = model_of(package)
    done = counting(again)
    campaign(package, path, model=again, resume=True)
    assert done == []  # a complete store: nothing to compute


def test_resume_takes_the_store_seed_and_refuses_other_settings(package, straight, tmp_path):
    import shutil

    path = shutil.copytree(straight, tmp_path / "copy.zarr")
    with pytest.raises(ValueError, match="written with seed = 3; this run has seed = 4"):
        campaign(package, path, model=model_of(package, seed=4), resume=True)
    with pytest.raises(ValueError, match="written with members = 3; this run has members = 2"):
        campaign(package, path, members=2, resume=True)
    with pytest.raises(ValueError, match="initial times"):
        campaign(package, path, starts=STARTS[:2], resume=True)
    with pytest.raises(ValueError, match="pass its path"):
        campaign(package, open_output(tmp_path / "x.zarr"), resume=True)
    seedless = StormCast(package, DemoConditioningSource(package), seed=None, sampler_steps=2)
    done = counting(seedless)
    campaign(package, path, model=seedless, resume=True)  # nothing left, and no complaint about the seed
    assert done == []


def test_out_of_memory_halves_the_batch_says_so_and_completes(package, straight, tmp_path):
    model = model_of(package)
    real = model._step
    sizes = []

    def small_device(x, coords, members, seed, memory=None):
        lead = int(coords["lead_time"][0] / np.timedelta64(1, "h"))
        if len(members) > 1 and lead == 1:  # the second hour of a batch of two does not fit
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        sizes.append(len(members))
        return real(x, coords, members, seed, memory)

    model._step = small_device
    path = tmp_path / "oom.zarr"
    with pytest.warns(RuntimeWarning, match="out of memory with 2 members stepped together .* batches of 1"):
        campaign(package, path, model=model)
    assert sizes[0] == 2 and set(sizes[1:]) == {1}  # later units step one member at a time
    ds = xr.open_zarr(path)
    assert bool((ds[WRITTEN] == 1).all()) and ds.attrs["completed_lead_hours"] == 3
    got, want = fields(path), fields(straight)
    for v in FIELDS:  # the same forecast up to float rounding (kernels may depend on the batch size)
        scale = np.abs(want[v]).max()
        np.testing.assert_allclose(got[v], want[v], rtol=0, atol=1e-4 * scale)

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    model._step = no_memory
    with pytest.raises(RuntimeError, match="out of memory with a single member"):
        campaign(package, tmp_path / "none.zarr", model=model, members=1, batch_size=1)


def test_bf16_autocast_is_recorded_and_close_to_fp32(package, straight, tmp_path):
    path = campaign(package, tmp_path / "bf16.zarr", starts=STARTS[:1], model=model_of(
        package, autocast_dtype=torch.bfloat16))
    ds = xr.open_zarr(path)
    assert ds.attrs["precision"] == "bf16"
    got, want = ds["t2m"].values, fields(straight)["t2m"][:, :1]
    assert np.isfinite(got).all() and not np.array_equal(got, want)
    assert np.abs(got - want).max() < 0.05 * (np.abs(want - want.mean()).max())


def test_a_seedless_model_draws_one_seed_and_records_it(package, tmp_path):
    torch.manual_seed(123)
    model = StormCast(package, DemoConditioningSource(package), seed=None, sampler_steps=2)
    ds = xr.open_zarr(campaign(package, tmp_path / "s.zarr", starts=STARTS[:1], hours=1, model=model))
    seed = int(ds.attrs["seed"])
    again = xr.open_zarr(campaign(package, tmp_path / "again.zarr", starts=STARTS[:1], hours=1,
                                  model=model_of(package, seed=seed)))
    assert np.array_equal(ds["t2m"].values, again["t2m"].values)


@pytest.mark.slow
def test_compiled_denoiser_gives_the_same_forecast(package, straight, tmp_path):
    model = model_of(package)
    model.compile_denoiser()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = fields(campaign(package, tmp_path / "c.zarr", starts=STARTS[:1], hours=2, model=model))
    want = fields(straight)
    for v in FIELDS:
        scale = np.abs(want[v]).max()
        np.testing.assert_allclose(got[v], want[v][:, :1, :3], rtol=0, atol=1e-4 * scale)
