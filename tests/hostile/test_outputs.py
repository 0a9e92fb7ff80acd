"""Forecast outputs tell the truth: bad runs fail, partial stores say so, bad requests get clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

xr = pytest.importorskip("xarray")

from stormcast_plugin.cli import app as cli  # noqa: E402
from stormcast_plugin.testing import DemoConditioningSource, DemoStateSource  # noqa: E402
from stormcast_plugin.models.px.stormcast import StormCast  # noqa: E402
from stormcast_plugin.testing import random_package  # noqa: E402
from stormcast_plugin.run import open_output, run_forecast  # noqa: E402
from stormcast_plugin.utils.grid import ModelGrid  # noqa: E402
from stormcast_plugin.utils.variables import INVARIANTS, PRESETS  # noqa: E402

START = np.datetime64("2024-05-01T00")


@pytest.fixture(scope="module")
def package():
    grid = ModelGrid.hrrr(rows=(500, 516), cols=(800, 824), name="test-16x24")
    return random_package(PRESETS["tiny"]["state"], PRESETS["tiny"]["conditioning"], INVARIANTS, grid,
                          model_channels=8, channel_mult=(1, 2, 2), num_blocks=1, seed=9)


def model_of(package):
    return StormCast(package, DemoConditioningSource(package), seed=3, sampler_steps=2)


def forecast(package, path, hours=2, members=2, **kw):
    run_forecast(model_of(package), DemoStateSource(package), START, hours, open_output(path), members=members,
                 progress=False, **kw)
    return path


def interrupted(package, path, hours=4, fail_at=2, **kw):
    """A run stopped (Ctrl-C) while computing hour ``fail_at``."""
    model = model_of(package)
    real_step, calls = model._step, {"n": 0}

    def failing_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    model._step = failing_step
    with pytest.raises(KeyboardInterrupt):
        run_forecast(model, DemoStateSource(package), START, hours, open_output(path), progress=False, **kw)
    return path


@pytest.fixture(scope="module")
def store(package, tmp_path_factory):
    """A complete two-member zarr forecast of two hours."""
    return forecast(package, tmp_path_factory.mktemp("fc") / "f.zarr")


# ---------------------------------------------------------------- a. the runner reports only what it wrote

@pytest.mark.parametrize("batch_size", [-1, 0])
def test_bad_batch_size_is_refused_before_writing(package, tmp_path, batch_size):
    with pytest.raises(ValueError, match=f"batch_size must be a positive number .* got {batch_size}"):
        forecast(package, tmp_path / "b.zarr", batch_size=batch_size)
    assert not (tmp_path / "b.zarr" / "t2m").exists()


def test_batch_size_above_members_steps_all(package, tmp_path):
    ds = xr.open_zarr(forecast(package, tmp_path / "big.zarr", hours=1, batch_size=5))
    assert ds.attrs["completed_lead_hours"] == 1 and np.isfinite(ds["t2m"].values).all()


def test_run_whose_iterator_stops_early_is_not_a_success(package, tmp_path):
    model = model_of(package)
    real = model.create_iterator

    def two_hours(x, coords, **kw):
        for step, item in enumerate(real(x, coords, **kw)):
            yield item
            if step == 1:
                return

    model.create_iterator = two_hours
    with pytest.raises(RuntimeError, match="stopped after lead hour 1 of 3"):
        run_forecast(model, DemoStateSource(package), START, 3, open_output(tmp_path / "s.zarr"), progress=False)
    assert xr.open_zarr(tmp_path / "s.zarr").attrs["completed_lead_hours"] == 1


def test_run_that_wrote_no_finite_value_raises(package, tmp_path):
    model = model_of(package)
    real_step = model._step

    def nan_step(*args, **kwargs):
        x, coords = real_step(*args, **kwargs)
        return torch.full_like(x, float("nan")), coords

    model._step = nan_step
    with pytest.raises(RuntimeError, match="no finite value after the initial state"):
        run_forecast(model, DemoStateSource(package), START, 1, open_output(tmp_path / "n.zarr"), progress=False)


def test_zarr_store_opens_without_the_consolidated_metadata_warning(store, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(store)
    assert ds.attrs["completed_lead_hours"] == 2 and ds["refc"].shape == (2, 1, 3, 16, 24)
    out = tmp_path / "cli.zarr"
    assert cli.main(["forecast", "--out", str(out), "--hours", "1", "--sampler-steps", "2", "--no-progress"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert xr.open_zarr(out).attrs["completed_lead_hours"] == 1


# ---------------------------------------------------------------- b. partial stores read as missing, and say so

def test_netcdf_forecast_stopped_midway_reads_nan_for_unwritten_hours(package, tmp_path):
    path = interrupted(package, tmp_path / "cut.nc")
    ds = xr.open_dataset(path)
    assert int(ds.attrs["completed_lead_hours"]) == 1
    t2m = ds["t2m"].values
    assert np.isfinite(t2m[:, :, :2]).all()
    assert np.isnan(t2m[:, :, 2:]).all()  # not netCDF's default fill 9.97e36


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_score_and_plot_of_a_partial_store_warn_and_leave_unwritten_hours_out(package, tmp_path, suffix):
    pytest.importorskip("matplotlib")
    from stormcast_plugin.plot import plot_forecast
    from stormcast_plugin.scoring import score

    path = interrupted(package, tmp_path / f"cut{suffix}")
    truth = forecast(package, tmp_path / "truth.zarr", hours=4, members=1)
    with pytest.warns(UserWarning, match=r"incomplete \(completed_lead_hours = 1\): 3 of 5 lead times "
                                         r"\(\+2 h, \+3 h, \+4 h\) .* treated as missing"):
        table = score(path, truth, variables=["t2m"], plots=False)
    assert list(table["n_points"]) == [16 * 24, 16 * 24, 0, 0, 0]
    assert table["rmse"].iloc[:2].notna().all() and table["rmse"].iloc[2:].isna().all()
    with pytest.warns(UserWarning, match="incomplete"):
        paths = plot_forecast(path, ["t2m"], tmp_path / "maps", gif=False, dpi=30)
    assert [p.name for p in paths] == ["t2m_000h.png", "t2m_001h.png"]


# ---------------------------------------------------------------- c. scoring without common times fails

def test_score_without_common_times_exits_non_zero_naming_both_ranges(package, store, tmp_path, capsys):
    later = tmp_path / "later.zarr"
    run_forecast(model_of(package), DemoStateSource(package), START + np.timedelta64(48, "h"), 2,
                 open_output(later), progress=False)
    code = cli.main(["score", str(store), str(later), "--out", str(tmp_path / "s"), "--no-plots"])
    err = capsys.readouterr().err
    assert code == 2
    assert "none of the forecast's initial times" in err
    assert "2024-05-01T00:00 to 2024-05-01T00:00 (1 times)" in err and "2024-05-03T00:00" in err
    assert not (tmp_path / "s" / "scores.csv").exists()


# ---------------------------------------------------------------- d. members outside the store

@pytest.mark.parametrize("member, message", [
    ("5", "member 5 is out of range: .*f.zarr has 2 ensemble members, numbered 0 to 1"),
    ("-1", "--member -1 is negative"),
])
def test_plot_member_outside_the_store_is_a_clear_error(store, tmp_path, capsys, member, message):
    code = cli.main(["plot", str(store), "--variables", "t2m", "--member", member, "--out", str(tmp_path / "p"),
                     "--no-gif"])
    assert code == 2
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)
    assert not list((tmp_path / "p").glob("*.png")) if (tmp_path / "p").exists() else True


# ---------------------------------------------------------------- e. damaged stores name what is damaged

def copy_store(src, dst, **kwargs):
    """``src`` rewritten by xarray at ``dst`` without consolidated metadata."""
    ds = xr.open_zarr(src).load()
    for v in ds.variables.values():
        v.encoding = {}
    ds.to_zarr(dst, consolidated=False, **kwargs)


def test_truncated_chunk_names_store_array_and_hour(package, store, tmp_path, capsys):
    import shutil

    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(store, damaged)
    chunk = damaged / "t2m" / "c" / "1" / "0" / "1" / "0" / "0"  # member 1, lead hour 1
    chunk.write_bytes(chunk.read_bytes()[:7])
    assert cli.main(["plot", str(damaged), "--variables", "t2m", "--member", "1", "--out", str(tmp_path / "p"),
                     "--no-gif"]) == 2
    err = capsys.readouterr().err
    assert "'t2m' at lead +1 h" in err and str(damaged) in err
    truth = forecast(package, tmp_path / "truth.zarr", members=1)
    assert cli.main(["score", str(damaged), str(truth), "--out", str(tmp_path / "s"), "--variables", "t2m",
                     "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "'t2m' at lead +1 h" in err and str(damaged) in err


def test_invalid_metadata_json_names_store_and_array(store, tmp_path, capsys):
    legacy = tmp_path / "legacy.zarr"  # a store without consolidated metadata reads every array's own file
    copy_store(store, legacy, zarr_format=2)
    (legacy / "t2m" / ".zarray").write_text('{"chunks": [1,')
    assert cli.main(["plot", str(legacy), "--variables", "t2m", "--out", str(tmp_path / "p"), "--no-gif"]) == 2
    err = capsys.readouterr().err
    assert str(legacy) in err and "t2m/.zarray (array 't2m' (every lead hour of it)) is not valid JSON" in err
    ours = tmp_path / "ours.zarr"
    copy_store(store, ours, zarr_format=3)
    (ours / "t2m" / "zarr.json").write_text("{")
    assert cli.main(["score", str(ours), str(store), "--out", str(tmp_path / "s")]) == 2
    assert "t2m/zarr.json (array 't2m' (every lead hour of it)) is not valid JSON" in capsys.readouterr().err
