"""Forecasts and campaigns under torchrun (2 CPU processes, gloo) against one process.

Every run is a real ``stormcast`` command (through ``_entry.py``, which can
count the member-hours each rank computes and kill a rank) with the embedded
demo model, one thread per process, so that both sides do the same
arithmetic: the stores must be equal bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

xr = pytest.importorskip("xarray")

ENTRY = str(Path(__file__).with_name("_entry.py"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
CAMPAIGN = ["hindcast", "--starts", "2024-05-01T00/2024-05-01T12/12h", "--hours", "3", "--members", "3",
            "--max-batch", "2", "--sampler-steps", "2", "--no-progress"]
FORECAST = ["forecast", "--start-time", "2024-05-01T00", "--hours", "2", "--members", "3", "--max-batch", "1",
            "--sampler-steps", "2", "--no-progress"]

pytestmark = pytest.mark.slow


def _run(args, *, ranks=1, env=None):
    launcher = [] if ranks == 1 else ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    return subprocess.run([sys.executable, *launcher, ENTRY, *args], env={**ENV, **(env or {})},
                          capture_output=True, text=True, timeout=900)


def _fields(path):
    ds = xr.open_zarr(path)
    return {v: ds[v].values for v in ds.data_vars}, ds.attrs


def _assert_same_store(a, b):
    fa, attrs_a = _fields(a)
    fb, attrs_b = _fields(b)
    assert sorted(fa) == sorted(fb)
    for v in fa:
        assert np.array_equal(fa[v], fb[v], equal_nan=True), v
    assert attrs_a == attrs_b


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The campaign written by one process."""
    out = tmp_path_factory.mktemp("one") / "hc.zarr"
    done = _run([*CAMPAIGN, "--out", str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_a_campaign_over_two_ranks_equals_one_process(one_process, tmp_path):
    out = tmp_path / "hc.zarr"
    count = tmp_path / "count"
    done = _run([*CAMPAIGN, "--out", str(out)], ranks=2, env={"STORMCAST_TEST_COUNT": str(count)})
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_store(one_process, out)
    per_rank = [[tuple(json.loads(line)) for line in Path(f"{count}.{r}").read_text().splitlines()] for r in (0, 1)]
    # 2 initial times x 3 members x 3 hours in blocks of 2 + 1 members, shared evenly
    assert len(per_rank[0]) == len(per_rank[1]) == 9
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["count.0", "count.1", "hc.zarr"]
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name or p.name.endswith(".case")]


def test_a_forecast_over_two_ranks_equals_one_process(tmp_path):
    one, two = tmp_path / "one.zarr", tmp_path / "two.zarr"
    done = _run([*FORECAST, "--out", str(one)])
    assert done.returncode == 0, done.stderr[-3000:]
    done = _run([*FORECAST, "--out", str(two)], ranks=2)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_store(one, two)
    assert done.stderr.count("wrote ") == 1  # rank 0 reports


def test_a_killed_rank_then_resume_equals_the_uninterrupted_campaign(one_process, tmp_path):
    out = tmp_path / "hc.zarr"
    killed = _run([*CAMPAIGN, "--out", str(out)], ranks=2, env={"STORMCAST_TEST_KILL": "1:5"})
    assert killed.returncode != 0
    listing = sorted(p.name for p in tmp_path.iterdir())
    assert out.is_dir(), f"the partial campaign is not at --out; folder: {listing}\n{killed.stderr[-3000:]}"
    before = xr.open_zarr(out)["written"].values.astype(bool)
    assert 0 < before[..., 1:].sum() < before[..., 1:].size  # some member-hours written, some not
    times = xr.open_zarr(out)["time"].values

    count = tmp_path / "count"
    resumed = _run([*CAMPAIGN, "--out", str(out), "--resume"], ranks=2, env={"STORMCAST_TEST_COUNT": str(count)})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    computed = [tuple(json.loads(line)) for r in (0, 1) if Path(f"{count}.{r}").exists()
                for line in Path(f"{count}.{r}").read_text().splitlines()]
    missing = {(int(m), str(np.datetime64(times[t], "h")), int(h)) for m, t, h in zip(*np.nonzero(~before)) if h}
    assert sorted(computed) == sorted(missing)  # each missing member-hour once; no finished one again
    _assert_same_store(one_process, out)
