"""The stormcast command line and the forecast runner."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr

from stormcast_plugin.cli import app as cli
from stormcast_plugin.testing import DemoConditioningSource, DemoStateSource
from stormcast_plugin.run import open_output, run_forecast
from stormcast_plugin.utils.grid import ModelGrid
from stormcast_plugin.models.px.stormcast import StormCast
from stormcast_plugin.testing import random_package
from stormcast_plugin.utils.variables import INVARIANTS, PRESETS


@pytest.fixture(scope="module")
def package():
    grid = ModelGrid.hrrr(rows=(500, 516), cols=(800, 824), name="test-16x24")
    return random_package(PRESETS["tiny"]["state"], PRESETS["tiny"]["conditioning"], INVARIANTS, grid,
                          model_channels=8, channel_mult=(1, 2, 2), num_blocks=1, seed=9)


def test_help_loads_no_heavy_library():
    code = ("import sys; from stormcast_plugin.cli import app; app._build_parser(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'earth2studio', 'xarray', 'zarr', "
            "'matplotlib'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
    out = subprocess.run([sys.executable, "-m", "stormcast_plugin.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and all(c in out.stdout for c in ("forecast", "plot", "score", "train", "data"))


def test_import_is_light():
    code = "import sys, stormcast_plugin; print(any(m.startswith(('torch', 'earth2studio')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_forecast_writes_readable_store(package, tmp_path):
    model = StormCast(package, DemoConditioningSource(package), seed=3, sampler_steps=2)
    io = open_output(tmp_path / "f.zarr")
    run_forecast(model, DemoStateSource(package), np.datetime64("2024-05-01T00"), 2, io, members=3,
                 batch_size=2, progress=False)
    ds = xr.open_zarr(tmp_path / "f.zarr", consolidated=False)
    assert ds["refc"].shape == (3, 1, 3, 16, 24)
    assert ds.attrs["completed_lead_hours"] == 2 and ds.attrs["seed"] == 3
    np.testing.assert_allclose(ds["lat"].values, package.grid.lat, rtol=1e-6)
    assert np.isfinite(ds["t2m"].values).all()
    assert not np.allclose(ds["t2m"].values[0, 0, 2], ds["t2m"].values[1, 0, 2])


def test_interrupted_forecast_keeps_completed_hours(package, tmp_path, monkeypatch):
    model = StormCast(package, DemoConditioningSource(package), seed=3, sampler_steps=2)
    real_step = model._step
    calls = {"n": 0}

    def failing_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during hour 2
        return real_step(*args, **kwargs)

    monkeypatch.setattr(model, "_step", failing_step)
    io = open_output(tmp_path / "cut.zarr")
    with pytest.raises(KeyboardInterrupt):
        run_forecast(model, DemoStateSource(package), np.datetime64("2024-05-01T00"), 4, io, progress=False)
    ds = xr.open_zarr(tmp_path / "cut.zarr", consolidated=False)
    assert ds.attrs["completed_lead_hours"] == 1
    t2m = ds["t2m"].values
    assert np.isfinite(t2m[:, :, :2]).all()  # hours 0 and 1 are there
    assert np.isnan(t2m[:, :, 2:]).all()  # the rest was never written


def test_output_is_never_overwritten_silently(tmp_path):
    (tmp_path / "f.zarr").mkdir()
    (tmp_path / "f.zarr" / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="--overwrite"):
        open_output(tmp_path / "f.zarr")
    assert (tmp_path / "f.zarr" / "keep.txt").read_text() == "precious"
    code = cli.main(["forecast", "--out", str(tmp_path / "f.zarr"), "--hours", "1", "--no-progress"])
    assert code == 2 and (tmp_path / "f.zarr" / "keep.txt").exists()


def test_cli_demo_forecast_netcdf_and_plot(tmp_path):
    out = tmp_path / "demo.nc"
    code = cli.main(["forecast", "--out", str(out), "--hours", "1", "--members", "2", "--sampler-steps", "2",
                     "--no-progress", "--plot", "refc"])
    assert code == 0
    ds = xr.open_dataset(out)
    assert ds["refc"].shape[:3] == (2, 1, 2) and ds.attrs["completed_lead_hours"] == 1
    pictures = sorted(p.name for p in (tmp_path / "demo.nc_plots").iterdir())
    assert pictures == ["refc.gif", "refc_000h.png", "refc_001h.png"]


def test_cli_rejects_bad_start(tmp_path, capsys):
    assert cli.main(["forecast", "--out", str(tmp_path / "x.zarr"), "--start", "yesterday"]) == 2
    assert "ISO 8601" in capsys.readouterr().err
