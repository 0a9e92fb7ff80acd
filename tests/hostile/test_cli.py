"""The command line as a hostile but fair user drives it: nothing the user
had is lost, nothing half-made is left behind, and every bad input gets one
clear line and exit status 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from stormcast_plugin.cli import app as cli
from stormcast_plugin.demo import DEMO_PACKAGE_DIR
from stormcast_plugin.io.replace import FORECAST, replacing

FAST = ["--no-progress", "--members", "1", "--sampler-steps", "2"]


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _thesis(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "chapter1.tex").write_text("four years of work")
    return folder


def _old_forecast(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group",
                                                "attributes": {"stormcast_forecast": 1, "note": "old"}}))
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    return err[-1]


# --------------------------------------------------------------- data loss
@pytest.mark.parametrize("command", [
    ["forecast", "--hours", "1", "--out", ".", "--overwrite"],
    ["data", "synth", "--out", ".", "--hours", "2", "--grid", "8x8", "--preset", "tiny", "--overwrite"],
    ["export", "run", ".", "--overwrite"],
])
def test_overwrite_never_touches_the_current_folder(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(_thesis(tmp_path))
    assert cli.main(command + ["--no-progress"] * (command[0] != "export")) == 2
    assert "current folder" in _error_line(capsys)
    assert (tmp_path / "chapter1.tex").read_text() == "four years of work"


@pytest.mark.parametrize("command", [
    ["forecast", "--hours", "1"],
    ["data", "synth", "--hours", "2", "--grid", "8x8", "--preset", "tiny"],
])
def test_overwrite_refuses_a_folder_it_did_not_write(command, tmp_path, capsys):
    thesis = _thesis(tmp_path / "thesis")
    assert cli.main(command + ["--out", str(thesis), "--overwrite", "--no-progress"]) == 2
    assert "not something stormcast wrote" in _error_line(capsys)
    assert _listing(thesis) == ["chapter1.tex"]


def test_the_package_being_read_is_never_the_output(tmp_path, capsys):
    import shutil

    pkg = tmp_path / "pkg"
    shutil.copytree(DEMO_PACKAGE_DIR, pkg)
    before = _listing(pkg)
    assert cli.main(["forecast", "--package", str(pkg), "--state-source", "demo", "--conditioning-source", "demo",
                     "--out", str(pkg), "--overwrite", "--hours", "1", *FAST]) == 2
    assert "input" in _error_line(capsys)
    assert _listing(pkg) == before


@pytest.mark.parametrize("bad", [["--hours", "0"], ["--members", "0"], ["--batch-size", "-1"],
                                 ["--hours", "1000000000000"], ["--start", "2024-05-01T00:30"],
                                 ["--device", "tpu"], ["--sampler-steps", "0"], ["--sampler", "rk99"]])
def test_bad_arguments_leave_an_old_output_untouched_and_no_stub(bad, tmp_path, capsys):
    old = _old_forecast(tmp_path / "old.zarr")
    assert cli.main(["forecast", "--out", str(old), "--overwrite", "--hours", "1", *FAST, *bad]) == 2
    line = _error_line(capsys)
    assert bad[0].lstrip("-").split("-")[0] in line.replace("-", "")  # the message names the argument
    assert json.loads((old / "zarr.json").read_text())["attributes"]["note"] == "old"
    assert cli.main(["forecast", "--out", str(tmp_path / "new.zarr"), "--hours", "1", *FAST, *bad]) == 2
    assert _listing(tmp_path) == ["old.zarr"]  # no stub of new.zarr, no partial, no lock of a refused run


def test_a_run_failing_midway_keeps_the_old_output(tmp_path, monkeypatch, capsys):
    old = _old_forecast(tmp_path / "old.zarr")

    def offline(*args, **kwargs):
        raise ConnectionError("the source is offline")

    monkeypatch.setattr("stormcast_plugin.run.fetch_state", offline)
    with pytest.raises(ConnectionError):
        cli.main(["forecast", "--out", str(old), "--overwrite", "--hours", "2", *FAST])
    assert json.loads((old / "zarr.json").read_text())["attributes"]["note"] == "old"
    assert [p for p in _listing(tmp_path) if not p.endswith(".lock")] == ["old.zarr"]  # no partial, no case


def test_a_failure_before_the_first_hour_leaves_no_stub(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise ValueError("the state source has no data for 2024-05-01T00")

    monkeypatch.setattr("stormcast_plugin.run.fetch_state", offline)
    assert cli.main(["forecast", "--out", str(tmp_path / "f.zarr"), "--hours", "2", *FAST]) == 2
    assert "no data" in _error_line(capsys)
    assert [p for p in _listing(tmp_path) if not p.endswith(".lock")] == []


def test_an_interrupted_demo_leaves_no_temporary_folders(tmp_path, monkeypatch, capsys):
    before = set(Path(tempfile.gettempdir()).glob("stormcast-demo-*"))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("stormcast_plugin.run.fetch_state", interrupted)
    assert cli.main(["forecast", "--out", str(tmp_path / "f.zarr"), "--hours", "2", *FAST]) == 130
    assert [p for p in _listing(tmp_path) if not p.endswith(".lock")] == []
    assert set(Path(tempfile.gettempdir()).glob("stormcast-demo-*")) == before


def test_overwrite_replaces_a_forecast_and_a_second_writer_is_turned_away(tmp_path, capsys):
    out = tmp_path / "f.zarr"
    assert cli.main(["forecast", "--out", str(out), "--hours", "1", *FAST]) == 0
    first = out.stat().st_mtime_ns
    assert cli.main(["forecast", "--out", str(out), "--hours", "1", *FAST]) == 2
    assert "--overwrite" in _error_line(capsys)
    with replacing(out, [FORECAST], overwrite=True):
        assert cli.main(["forecast", "--out", str(out), "--hours", "1", "--overwrite", *FAST]) == 2
        assert "another run is writing" in _error_line(capsys)
    assert cli.main(["forecast", "--out", str(out), "--hours", "1", "--overwrite", "--seed", "5", *FAST]) == 0
    import xarray as xr

    ds = xr.open_zarr(out)
    assert int(ds.attrs["seed"]) == 5 and out.stat().st_mtime_ns != first
    assert int(ds.attrs["completed_lead_hours"]) == 1 and np.isfinite(ds["t2m"].values).all()


def test_a_killed_synth_overwrite_keeps_the_old_store(tmp_path):
    out = tmp_path / "d.zarr"
    args = ["data", "synth", "--out", str(out), "--grid", "16x16", "--preset", "tiny", "--no-progress"]
    assert cli.main(args + ["--hours", "3"]) == 0
    from stormcast_plugin.io import DatasetStore

    old = DatasetStore.open(out).attrs
    proc = subprocess.Popen([sys.executable, "-m", "stormcast_plugin.cli", *args, "--hours", "20000", "--overwrite"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.startswith(".d.zarr.partial-") for p in tmp_path.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, "the synth never started writing"
            time.sleep(0.2)
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert DatasetStore.open(out).attrs == old
    assert len(DatasetStore.open(out).times) == 3


# ------------------------------------------------------- clear one-liners
def test_cuda_without_cuda_and_unwritable_outputs_are_one_line_errors(tmp_path, capsys):
    import torch

    if not torch.cuda.is_available():
        assert cli.main(["forecast", "--device", "cuda", "--out", str(tmp_path / "f.zarr"), *FAST]) == 2
        assert "CUDA is not available" in _error_line(capsys)
    assert cli.main(["forecast", "--out", "/proc/stormcast/f.zarr", "--hours", "1", *FAST]) == 2
    assert "cannot" in _error_line(capsys)


def test_a_start_outside_the_source_archive_names_its_range(tmp_path, capsys):
    assert cli.main(["forecast", "--package", str(DEMO_PACKAGE_DIR), "--state-source", "hrrr",
                     "--conditioning-source", "demo", "--start", "2010-01-01T00", "--hours", "1",
                     "--out", str(tmp_path / "f.zarr"), *FAST]) == 2
    line = _error_line(capsys)
    assert "state source" in line and "2018" in line  # the archive's first date
    assert _listing(tmp_path) == []


# ------------------------------------------------------------ damaged stores
def test_a_dataset_store_names_a_lost_or_damaged_chunk(tmp_path):
    from stormcast_plugin.io import DatasetStore, StoreError

    out = tmp_path / "d.zarr"
    assert cli.main(["data", "synth", "--out", str(out), "--hours", "3", "--grid", "8x8", "--preset", "tiny",
                     "--no-progress"]) == 0
    store = DatasetStore.open(out)
    assert store.written.all()
    chunks = sorted(p for p in (out / "state").rglob("*") if p.is_file() and not p.name.startswith((".z", "zarr")))
    assert chunks, "no chunk files found"
    assert len(chunks) == len(store.times)  # one chunk per hour
    victim = chunks[0]
    victim.unlink()
    with pytest.raises(StoreError, match="marked written but its data is missing"):
        DatasetStore.open(out).read_state(slice(None))
    other = next(p for p in chunks if p != victim)
    other.write_bytes(b"\x00garbage")
    with pytest.raises(StoreError, match=r"array 'state' at .* cannot be read"):
        DatasetStore.open(out).read_state(slice(None))


def test_the_sampler_is_chosen_by_name(tmp_path):
    import xarray as xr

    out = tmp_path / "f.zarr"
    assert cli.main(["forecast", "--out", str(out), "--hours", "1", "--sampler", "dpmpp_2m", *FAST]) == 0
    assert np.isfinite(xr.open_zarr(out)["t2m"].values).all()
