"""``stormcast data``: the synth and prepare commands (stormcast_plugin.cli.data)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from stormcast_plugin.cli.app import main
from stormcast_plugin.cli.data import add_prepare_arguments, parse_grid, prepare_from_args
from stormcast_plugin.io.dataset_store import DatasetStore
from tests.datagen.test_prepare import GRID


def test_parse_grid():
    assert parse_grid("64x64") == (64, 64)
    assert parse_grid(" 128X96 ") == (128, 96)
    for bad in ("64", "64x", "ax3"):
        with pytest.raises(ValueError, match=f"grid size '{bad}' is not of the form 'HxW'"):
            parse_grid(bad)
    with pytest.raises(ValueError, match="grid size 1x64 is too small"):
        parse_grid("1x64")


def test_synth_command(tmp_path: Path, capsys) -> None:
    out = tmp_path / "s.zarr"
    argv = ["data", "synth", "--out", str(out), "--start", "2024-05-01T06", "--hours", "3", "--grid", "12x16",
            "--preset", "tiny", "--seed", "2", "--terrain-seed", "0", "--no-progress"]
    assert main(argv) == 0
    store = DatasetStore.open(out)
    assert store.grid.shape == (12, 16) and len(store) == 3 and store.written.all()
    assert str(store.times[0].astype("datetime64[h]")) == "2024-05-01T06" and store.attrs["seed"] == 2
    assert main(argv[:-1] + ["--grid", "12", "--overwrite"]) == 2
    assert "grid size '12' is not of the form 'HxW'" in capsys.readouterr().err
    assert main(argv + ["--start", "2024-05-01T06:30", "--overwrite"]) == 2
    assert "start 2024-05-01T06:30 is not on the hour" in capsys.readouterr().err
    assert main(["data"]) == 2
    assert "choose a data command" in capsys.readouterr().err


def test_prepare_from_args(tmp_path: Path) -> None:
    parser = add_prepare_arguments(argparse.ArgumentParser())
    out = tmp_path / "cli.zarr"
    args = parser.parse_args([
        "--out", str(out), "--start", "2022-06-01T00", "--end", "2022-06-01T03", "--domain", "300:316,600:624",
        "--variables", "tiny", "--state-source", "tests.datagen.test_prepare:StateStandIn",
        "--conditioning-source", "tests.datagen.test_prepare:CondStandIn", "--stats-end", "2022-06-01T02",
        "--no-progress"])
    assert prepare_from_args(args) == 0
    store = DatasetStore.open(out)
    assert store.written.all() and store.state_variables[-1] == "refc" and store.grid.shape == GRID.shape
    assert store.attrs["statistics_period"] == ["2022-06-01T00", "2022-06-01T02"]
    with pytest.raises(ValueError, match="--domain"):
        prepare_from_args(parser.parse_args(["--out", str(out), "--start", "2022", "--end", "2023",
                                             "--domain", "bad"]))
    with pytest.raises(ValueError, match="--variables 'huge' is unknown"):
        prepare_from_args(parser.parse_args(["--out", str(out), "--start", "2022", "--end", "2023",
                                             "--variables", "huge"]))
