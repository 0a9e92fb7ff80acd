"""``stormcast hindcast``: initial times, the campaign store, scoring over every initial time, --resume checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

xr = pytest.importorskip("xarray")

from stormcast_plugin.cli import app as cli  # noqa: E402
from stormcast_plugin.cli.hindcast import parse_starts  # noqa: E402
from stormcast_plugin.run import _deal  # noqa: E402

FAST = ["--hours", "2", "--members", "2", "--sampler-steps", "2", "--no-progress"]


def test_starts_from_a_range_or_a_list():
    got = parse_starts("2024-05-01T00/2024-05-02T00/12h")
    assert got.tolist() == np.array(["2024-05-01T00", "2024-05-01T12", "2024-05-02T00"],
                                    dtype="datetime64[ns]").tolist()
    assert len(parse_starts("2024-05-01T00/2024-05-31T00/1d")) == 31
    assert parse_starts("2024-05-02T00, 2024-05-01T06").astype("datetime64[h]").astype(str).tolist() == [
        "2024-05-01T06", "2024-05-02T00"]


@pytest.mark.parametrize("text, message", [
    ("2024-05-01T00/2024-05-02T00/90m", "not a whole number of hours or days"),
    ("2024-05-02T00/2024-05-01T00/6h", "last time comes before the first"),
    ("2024-05-01T00,2024-05-01T00", "more than once"),
    ("2024-05-01T00/2024-05-02T00", "neither FIRST/LAST/STEP"),
    ("2024-05-01T00:30", "hour"),
])
def test_bad_starts_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_starts(text)


def test_units_are_dealt_by_work_left_the_same_on_every_rank():
    assert _deal([6, 3, 6, 3], 2) == [[0, 1], [2, 3]]
    assert _deal([6, 3, 6, 3], 1) == [[0, 1, 2, 3]]
    assert _deal([0, 4, 0, 4, 4], 2) == [[1, 4], [3]]  # finished units go to nobody
    assert _deal([1], 3) == [[0], [], []]


def test_a_campaign_scores_over_all_its_initial_times(tmp_path, capsys):
    from stormcast_plugin.datagen.demo_case import demo_sources

    out = tmp_path / "hc.zarr"
    assert cli.main(["hindcast", "--starts", "2024-05-01T00/2024-05-01T06/6h", "--out", str(out), *FAST]) == 0
    assert "2 initial times" in capsys.readouterr().err
    ds = xr.open_zarr(out)
    assert ds["t2m"].shape == (2, 2, 3, 64, 64) and bool((ds["written"] == 1).all())
    # the demo's truth over the campaign's valid times
    *_, truth = demo_sources(np.datetime64("2024-05-01T00"), 8, tmp_path / "truth")
    assert cli.main(["score", str(out), str(truth.path), "--out", str(tmp_path / "s"), "--no-plots",
                     "--variables", "t2m"]) == 0
    table = pd.read_csv(tmp_path / "s" / "scores.csv")
    assert table["lead_time_h"].tolist() == [0, 1, 2]
    assert table["n_points"].tolist() == [2 * 64 * 64] * 3  # both initial times verified at every lead
    assert table["rmse"].iloc[0] < 1e-3 < table["rmse"].iloc[2]  # lead 0 is the truth itself


def test_resume_of_a_complete_store_computes_nothing_and_bad_resumes_are_one_line_errors(tmp_path, capsys,
                                                                                         monkeypatch):
    out = tmp_path / "f.zarr"
    assert cli.main(["forecast", "--out", str(out), *FAST]) == 0
    from stormcast_plugin.models.px.stormcast import StormCast

    def no_step(*args, **kwargs):
        raise AssertionError("a complete store was computed again")

    monkeypatch.setattr(StormCast, "_step", no_step)
    assert cli.main(["forecast", "--out", str(out), "--resume", *FAST]) == 0
    capsys.readouterr()
    for args, message in [
        (["--out", str(tmp_path / "none.zarr"), "--resume"], "no store at"),
        (["--out", str(out), "--resume", "--overwrite"], "give one of them"),
        (["--out", str(tmp_path / "f.nc"), "--resume"], "writes a zarr store"),
        (["--out", str(out), "--resume", "--seed", "9"], "written with seed = 0; this run has seed = 9"),
        (["--out", str(out), "--resume", "--start", "2024-05-02T00"], "initial times"),
    ]:
        assert cli.main(["forecast", *FAST, *args]) == 2, args
        assert message in capsys.readouterr().err.strip().splitlines()[-1], args
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["f.zarr"]
