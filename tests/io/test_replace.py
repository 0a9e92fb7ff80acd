"""Outputs are replaced only when they are ours, only after the new one is
complete, and never by two writers at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stormcast_plugin.io.replace import (DATASET, FORECAST, PACKAGE, OutputError, check_replaceable, output_kind,
                                         replacing)


def _forecast_store(path: Path, value: str = "old") -> Path:
    path.mkdir(parents=True)
    (path / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group",
                                                "attributes": {"stormcast_forecast": 1, "note": value}}))
    return path


def _note(path: Path) -> str:
    return json.loads((path / "zarr.json").read_text())["attributes"]["note"]


def test_markers_recognise_what_this_package_wrote(tmp_path):
    assert output_kind(_forecast_store(tmp_path / "f.zarr")) == FORECAST
    ds = tmp_path / "d.zarr"
    ds.mkdir()
    (ds / ".zattrs").write_text(json.dumps({"format": "stormcast-dataset"}))
    assert output_kind(ds) == DATASET
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "stormcast_package.json").write_text("{}")
    assert output_kind(pkg) == PACKAGE
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("...")
    assert output_kind(thesis) is None
    assert output_kind(tmp_path / "absent") is None


def test_the_current_folder_and_its_parents_are_never_replaced(tmp_path, monkeypatch):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    for target in (".", "..", str(tmp_path)):
        with pytest.raises(OutputError, match="current folder or one of its parents"):
            check_replaceable(target, [FORECAST], overwrite=True)
    assert work.is_dir()


def test_a_folder_holding_anything_else_is_refused_even_with_overwrite(tmp_path):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("my work")
    with pytest.raises(OutputError, match="not something stormcast wrote"):
        with replacing(thesis, [FORECAST], overwrite=True):
            pass
    assert (thesis / "chapter1.tex").read_text() == "my work"
    with pytest.raises(OutputError, match="pass --overwrite"):
        check_replaceable(thesis, [FORECAST], overwrite=False)


def test_an_output_of_another_kind_or_an_input_is_refused(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "stormcast_package.json").write_text("{}")
    with pytest.raises(OutputError, match="it is a model package, and this run writes a forecast store"):
        check_replaceable(pkg, [FORECAST], overwrite=True)
    with pytest.raises(OutputError, match="input"):
        check_replaceable(pkg, [PACKAGE], overwrite=True, reading=[pkg])
    with pytest.raises(OutputError, match="input"):
        check_replaceable(pkg / "inside.zarr", [FORECAST], overwrite=True, reading=[pkg])
    assert (pkg / "stormcast_package.json").is_file()


def test_the_new_output_replaces_the_old_only_when_complete(tmp_path):
    out = _forecast_store(tmp_path / "f.zarr")
    with pytest.raises(RuntimeError):
        with replacing(out, [FORECAST], overwrite=True, keep_partial=True) as tmp:
            _forecast_store(tmp, "half-written")
            raise RuntimeError("source went offline")
    assert _note(out) == "old"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["f.zarr"]
    with replacing(out, [FORECAST], overwrite=True) as tmp:
        assert tmp.parent == out.parent and not tmp.exists()
        _forecast_store(tmp, "new")
    assert _note(out) == "new"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["f.zarr"]


def test_a_partial_output_is_kept_when_there_was_nothing_before(tmp_path):
    out = tmp_path / "f.zarr"
    with pytest.raises(KeyboardInterrupt):
        with replacing(out, [FORECAST], overwrite=False, keep_partial=True) as tmp:
            _forecast_store(tmp, "first hours")
            raise KeyboardInterrupt
    assert _note(out) == "first hours"


def test_a_new_output_written_in_place_is_kept_or_removed_as_keep_partial_says(tmp_path):
    out = tmp_path / "f.zarr"
    with replacing(out, [FORECAST], overwrite=False, in_place_when_new=True) as target:
        assert target == out.resolve()
        _forecast_store(target, "complete")
    assert _note(out) == "complete"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["f.zarr"]

    fresh = tmp_path / "g.zarr"
    with pytest.raises(KeyboardInterrupt):
        with replacing(fresh, [FORECAST], overwrite=False, keep_partial=lambda p: False,
                       in_place_when_new=True) as target:
            _forecast_store(target, "no hours yet")
            raise KeyboardInterrupt
    assert not fresh.exists()
    with pytest.raises(KeyboardInterrupt):
        with replacing(fresh, [FORECAST], overwrite=False, keep_partial=lambda p: True,
                       in_place_when_new=True) as target:
            _forecast_store(target, "some hours")
            raise KeyboardInterrupt
    assert _note(fresh) == "some hours"


def test_an_old_output_is_still_replaced_through_a_sibling_when_in_place_is_asked(tmp_path):
    out = _forecast_store(tmp_path / "f.zarr")
    with pytest.raises(KeyboardInterrupt):
        with replacing(out, [FORECAST], overwrite=True, keep_partial=True, in_place_when_new=True) as target:
            assert target != out.resolve()
            _forecast_store(target, "new")
            raise KeyboardInterrupt
    assert _note(out) == "old"


def test_a_second_writer_is_told_another_run_is_writing(tmp_path):
    out = tmp_path / "f.zarr"
    with replacing(out, [FORECAST], overwrite=False):
        with pytest.raises(OutputError, match="another run is writing"):
            with replacing(out, [FORECAST], overwrite=False):
                pass


def test_a_killed_run_leaves_the_old_output_and_a_rerun_cleans_up(tmp_path):
    out = _forecast_store(tmp_path / "f.zarr")
    script = textwrap.dedent(f"""
        import json, time
        from pathlib import Path
        from stormcast_plugin.io.replace import FORECAST, replacing
        with replacing({str(out)!r}, [FORECAST], overwrite=True) as tmp:
            tmp.mkdir()
            (tmp / "zarr.json").write_text(json.dumps({{"attributes": {{"stormcast_forecast": 1, "note": "x"}}}}))
            print("writing", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert _note(out) == "old"
    assert any(p.name.startswith(".f.zarr.partial-") for p in tmp_path.iterdir())
    with replacing(out, [FORECAST], overwrite=True) as tmp:
        _forecast_store(tmp, "rerun")
    assert _note(out) == "rerun"
    assert not any(p.name.startswith(".f.zarr.partial-") for p in tmp_path.iterdir())


def test_an_unwritable_folder_is_named(tmp_path):
    if os.geteuid() == 0:
        target = Path("/proc/stormcast-test/out.zarr")  # not creatable even for root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "out.zarr"
    with pytest.raises(OutputError, match="cannot"):
        with replacing(target, [FORECAST], overwrite=False):
            pass
