"""Training in real processes: SIGKILL and resume, torchrun data parallelism."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from stormcast_plugin.train.checkpoint import latest_checkpoint, list_checkpoints

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _args(store, run_dir, *extra):
    sets = [f"data.store={store}", "model.model_channels=8", "model.num_blocks=1", "model.channel_mult=[1, 2]",
            "training.log_every=1", "training.valid_every=1000", "training.warmup_steps=3",
            "logging.tensorboard=false", "logging.panels=false", "diffusion.steps=0", *extra]
    out = ["tiny", "--run-dir", str(run_dir), "--stage", "regression", "--no-progress", "--device", "cpu"]
    for s in sets:
        out += ["--set", s]
    return out


def _train(args, **kw):
    return subprocess.run([sys.executable, "-m", "stormcast_plugin.train", *args], env=ENV, capture_output=True,
                          text=True, timeout=600, **kw)


def _final(run_dir):
    payload, _ = latest_checkpoint(run_dir / "regression" / "checkpoints")
    return payload


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(tiny_store, tmp_path):
    extra = ("regression.steps=24", "training.checkpoint_every=2", "training.batch_size=4",
             "training.micro_batch=4", "training.keep_checkpoints=50")
    straight = _train(_args(tiny_store, tmp_path / "straight", *extra))
    assert straight.returncode == 0, straight.stderr[-2000:]

    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "stormcast_plugin.train", *_args(tiny_store, run_dir, *extra)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        steps = [s for s, _ in list_checkpoints(run_dir / "regression" / "checkpoints")]
        if steps and max(steps) >= 8:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = max(s for s, _ in list_checkpoints(run_dir / "regression" / "checkpoints"))
    assert 8 <= killed_at < 24, f"the run was not interrupted midway (last checkpoint {killed_at})"
    resumed = _train(_args(tiny_store, run_dir, *extra))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from" in resumed.stdout

    a, b = _final(tmp_path / "straight"), _final(run_dir)
    assert a["step"] == b["step"] == 24
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tiny_store, tmp_path):
    common = ("regression.steps=6", "training.checkpoint_every=6", "training.batch_size=4")
    single = _train(_args(tiny_store, tmp_path / "one", *common, "training.micro_batch=4"))
    assert single.returncode == 0, single.stderr[-2000:]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "stormcast_plugin.train", *_args(tiny_store, tmp_path / "two", *common, "training.micro_batch=2")],
        env=ENV, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _final(tmp_path / "one"), _final(tmp_path / "two")
    assert a["step"] == b["step"] == 6
    for ha, hb in zip(a["history"], b["history"]):
        assert ha["loss"] == pytest.approx(hb["loss"], rel=1e-4)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5, msg=k)
