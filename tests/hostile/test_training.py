"""Hostile inputs to training and export: each is refused or cleaned up, nothing broken is written."""

import math

import numpy as np
import pytest
import torch

from stormcast_plugin.cli import app as cli
from stormcast_plugin.cli.train import main as train_main
from stormcast_plugin.train.checkpoint import latest_checkpoint, list_checkpoints
from tests.train.conftest import make_store

SMALL = ["model.model_channels=8", "model.num_blocks=1", "model.channel_mult=[1, 2]", "training.batch_size=4",
         "training.micro_batch=4", "training.log_every=1", "training.valid_every=1000", "training.warmup_steps=1",
         "training.checkpoint_every=1", "logging.tensorboard=false", "logging.panels=false", "regression.steps=2",
         "diffusion.steps=0"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("data") / "train.zarr", hours=12)


def _train(store, run_dir, *sets, entry=cli.main):
    args = ["tiny", "--run-dir", str(run_dir), "--no-progress", "--device", "cpu", "--set", f"data.store={store}"]
    for s in [*SMALL, *sets]:
        args += ["--set", s]
    return entry(args) if entry is train_main else entry(["train", *args])


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "inf"])
def test_a_non_finite_learning_rate_is_refused_before_training(store, tmp_path, capsys, value):
    run = tmp_path / "run"
    assert _train(store, run, f"training.lr={value}") == 2
    err = capsys.readouterr().err
    assert "training.lr" in err and "expected a finite number > 0" in err
    assert not run.exists()


def test_training_stops_when_the_weights_become_non_finite(store, tmp_path, capsys, monkeypatch):
    import stormcast_plugin.train.loop as loop

    real = loop.learning_rate
    # what training.lr=.inf did before the config refused it, from step 2 on
    monkeypatch.setattr(loop, "learning_rate", lambda step, t, steps: real(step, t, steps) if step < 1 else math.inf)
    run = tmp_path / "run"
    assert _train(store, run, "regression.steps=4", entry=train_main) == 1
    err = capsys.readouterr().err
    assert "training stopped" in err and "weights became NaN or infinite" in err and "training.lr" in err
    # the last checkpoint is the last good step, and it holds finite weights
    steps = [s for s, _ in list_checkpoints(run / "regression" / "checkpoints")]
    assert steps and max(steps) < 4
    payload, _ = latest_checkpoint(run / "regression" / "checkpoints")
    assert all(torch.isfinite(v).all() for v in payload["model"].values())


def test_export_refuses_non_finite_weights(store, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(store, run) == 0
    found, path = latest_checkpoint(run / "regression" / "checkpoints")
    for name in ("model", "ema"):
        if found.get(name) is not None:
            found[name] = {k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in found[name].items()}
    torch.save(found, path)
    out = tmp_path / "pkg"
    assert cli.main(["export", str(run), str(out)]) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite regression weights" in err and "diverged" in err
    assert not out.exists()


def test_a_missing_store_creates_no_run_folder(tmp_path, capsys):
    for entry in (cli.main, train_main):
        run = tmp_path / "run"
        assert _train(tmp_path / "absent.zarr", run, entry=entry) == 2
        assert "absent.zarr does not exist" in capsys.readouterr().err
        assert not run.exists()


def test_stale_temporary_checkpoints_are_removed_at_the_next_start(store, tmp_path):
    run = tmp_path / "run"
    assert _train(store, run) == 0
    folder = run / "regression" / "checkpoints"
    stale = [folder / ".tmp-k1ll3d.pt", folder / ".tmp-abcdef.pt"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    assert _train(store, run, "regression.steps=3") == 0
    assert not any(p.exists() for p in stale)
    assert [s for s, _ in list_checkpoints(folder)] == [1, 2, 3]
    assert np.isfinite(latest_checkpoint(folder)[0]["history"][-1]["loss"])
