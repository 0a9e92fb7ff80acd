"""The training loop: learning, exact resume, checkpoints, export."""

import json
import warnings

import numpy as np
import pytest
import torch

from stormcast_plugin.train.checkpoint import latest_checkpoint, list_checkpoints
from stormcast_plugin.train.config import load_config
from stormcast_plugin.train.loop import learning_rate
from stormcast_plugin.train.run import export_run, push_to_hub, run_training


def _config(store, **over):
    sets = [f"data.store={store}", "model.model_channels=8", "model.num_blocks=1", "model.channel_mult=[1, 2]",
            "training.batch_size=4", "training.micro_batch=4", "training.log_every=1", "training.valid_every=1000",
            "training.checkpoint_every=5", "training.warmup_steps=5", "logging.tensorboard=false",
            "logging.panels=false", "regression.steps=12", "diffusion.steps=6", "sampler.num_steps=4"]
    sets += [f"{k}={v}" for k, v in over.items()]
    return load_config("tiny", sets)


def _weights(run_dir, stage):
    payload, _ = latest_checkpoint(run_dir / stage / "checkpoints")
    return payload


def test_learning_rate_schedule():
    from dataclasses import replace

    from stormcast_plugin.train.config import TrainingConfig

    t = TrainingConfig(lr=1.0, warmup_steps=4, schedule="cosine", min_lr=0.1)
    assert learning_rate(0, t, 14) == pytest.approx(0.25)
    assert learning_rate(3, t, 14) == pytest.approx(1.0)
    assert learning_rate(4, t, 14) == pytest.approx(1.0)
    assert learning_rate(9, t, 14) == pytest.approx(0.55)  # halfway down the cosine
    assert learning_rate(14, t, 14) == pytest.approx(0.1)
    assert learning_rate(100, replace(t, schedule="constant"), 14) == 1.0


def test_regression_learns_and_beats_persistence(tiny_store, tmp_path):
    cfg = _config(tiny_store, **{"regression.steps": 120, "training.valid_every": 120, "training.lr": 3e-3,
                                 "training.checkpoint_every": 120})
    (summary,) = run_training(cfg, tmp_path / "run", stages=("regression",), progress=False)
    losses = [h["loss"] for h in summary["history"]]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) / 3  # stated factor: 3x
    valid = summary["valid"]
    assert valid["skill_vs_persistence"] < 1.0  # RMSE below persistence on average
    assert valid["rmse/t2m"] < valid["rmse_persistence/t2m"]


def test_resume_reproduces_an_uninterrupted_run(tiny_store, tmp_path):
    cfg = _config(tiny_store, **{"training.checkpoint_every": 3, "model.dropout": 0.1})
    run_training(cfg, tmp_path / "straight", stages=("regression",), progress=False)
    run_training(cfg, tmp_path / "cut", stages=("regression",), progress=False, stop_after=7)  # last ckpt: 6
    run_training(cfg, tmp_path / "cut", stages=("regression",), progress=False)
    a, b = _weights(tmp_path / "straight", "regression"), _weights(tmp_path / "cut", "regression")
    assert a["step"] == b["step"] == 12
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    logged = [json.loads(x) for x in (tmp_path / "cut" / "regression" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if r["kind"] == "train"] == list(range(1, 13))


def test_run_dir_of_another_network_is_refused_and_kept(tiny_store, tmp_path):
    run = tmp_path / "run"
    cfg = _config(tiny_store, **{"regression.steps": 3, "training.checkpoint_every": 3})
    run_training(cfg, run, stages=("regression",), progress=False)
    before = (run / "config.yaml").read_text()
    ckpts = sorted(p.name for p in (run / "regression" / "checkpoints").iterdir())
    other = _config(tiny_store, **{"regression.steps": 6, "data.local_time": "true"})
    with pytest.raises(ValueError, match=r"in_channels: 8 there, 10 here.*another run.*new --run-dir"):
        run_training(other, run, stages=("regression",), progress=False)
    assert (run / "config.yaml").read_text() == before
    assert sorted(p.name for p in (run / "regression" / "checkpoints").iterdir()) == ckpts
    # the same network with more steps resumes
    longer = _config(tiny_store, **{"regression.steps": 6, "training.checkpoint_every": 3})
    run_training(longer, run, stages=("regression",), progress=False)
    assert _weights(run, "regression")["step"] == 6 and "steps: 6" in (run / "config.yaml").read_text()


def test_checkpoints_rotate_and_corrupt_latest_falls_back(tiny_store, tmp_path):
    cfg = _config(tiny_store, **{"training.checkpoint_every": 2, "training.keep_checkpoints": 2})
    run_training(cfg, tmp_path / "run", stages=("regression",), progress=False)
    ckpts = list_checkpoints(tmp_path / "run" / "regression" / "checkpoints")
    assert [s for s, _ in ckpts] == [10, 12]
    ckpts[-1][1].write_bytes(b"torn write")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        payload, path = latest_checkpoint(tmp_path / "run" / "regression" / "checkpoints")
    assert payload["step"] == 10 and path == ckpts[0][1]
    # resuming uses the previous checkpoint and finishes the run again
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        (summary,) = run_training(cfg, tmp_path / "run", stages=("regression",), progress=False)
    assert summary["step"] == 12


def test_nonfinite_gradients_are_zeroed(tiny_store, tmp_path, monkeypatch):
    from stormcast_plugin.train.loop import Trainer
    from stormcast_plugin.train.run import make_datasets

    cfg = _config(tiny_store, **{"regression.steps": 2})
    ts, _ = make_datasets(cfg)
    trainer = Trainer(cfg, tmp_path / "r", "regression", ts, None, progress=False)
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    real = trainer.loss
    monkeypatch.setattr(trainer, "loss", lambda *a, **k: real(*a, **k) * float("nan"))
    record = trainer.train_step()
    assert record["nonfinite_grads"] > 0
    for k, v in trainer.net.state_dict().items():
        assert torch.isfinite(v).all(), k
    # zeroed gradients leave Adam's first step at zero: the weights are untouched
    assert all(torch.equal(before[k], v) for k, v in trainer.net.state_dict().items())


def test_two_stages_export_and_forecast(tiny_store, tmp_path):
    from stormcast_plugin.data.store_sources import StoreConditioningSource, StoreStateSource
    from stormcast_plugin.run import fetch_state
    from stormcast_plugin.models.px.stormcast import StormCast

    cfg = _config(tiny_store)
    summaries = run_training(cfg, tmp_path / "run", progress=False)
    assert [s["stage"] for s in summaries] == ["regression", "diffusion"]
    assert all(np.isfinite(h["loss"]) for s in summaries for h in s["history"])
    out = export_run(tmp_path / "run", tmp_path / "pkg")
    model = StormCast.load_model(str(out), conditioning_data_source=StoreConditioningSource(tiny_store),
                                 seed=0, sampler_steps=2)
    x, coords = fetch_state(StoreStateSource(tiny_store), [np.datetime64("2024-05-01T05")],
                            list(model.variables), model.grid)
    y, c = model(x, coords)
    assert y.shape == x.shape and torch.isfinite(y).all()
    card = (out / "README.md").read_text()
    assert "t2m" in card
    # the package holds the invariants as the networks saw them: z-scored
    from stormcast_plugin.train.dataset import normalize_invariants
    from stormcast_plugin.io.dataset_store import DatasetStore

    raw = DatasetStore.open(tiny_store).read_invariants(["lsm", "orography"])
    from stormcast_plugin.package import load_package

    inv = load_package(out).invariants
    np.testing.assert_allclose(inv, normalize_invariants(raw), rtol=1e-6, atol=1e-6)
    assert abs(float(inv[1].std()) - 1.0) < 1e-4


def test_local_time_inputs_train_export_and_forecast(tiny_store, tmp_path):
    from stormcast_plugin.data.store_sources import StoreConditioningSource, StoreStateSource
    from stormcast_plugin.run import fetch_state
    from stormcast_plugin.models.px.stormcast import StormCast
    from stormcast_plugin.package import load_package

    cfg = _config(tiny_store, **{"data.local_time": "true", "regression.steps": 3, "diffusion.steps": 2,
                                 "training.checkpoint_every": 3})
    run_training(cfg, tmp_path / "run", progress=False)
    out = export_run(tmp_path / "run", tmp_path / "pkg")
    pkg = load_package(out)
    assert pkg.local_time and pkg.input_invariant_names[-2:] == ("cos_local_time", "sin_local_time")
    # 4 state + 2 conditioning + 2 invariants + 2 local-time channels
    assert pkg.regression.config.in_channels == 10 and pkg.diffusion.condition_channels == 2 * 4 + 4
    model = StormCast(pkg, StoreConditioningSource(tiny_store), seed=0, sampler_steps=2)
    x, coords = fetch_state(StoreStateSource(tiny_store), [np.datetime64("2024-05-01T05")],
                            list(model.variables), model.grid)
    y, _ = model(x, coords)
    assert y.shape == x.shape and torch.isfinite(y).all()
    with pytest.raises(ValueError, match="data.local_time"):
        _config(tiny_store, **{"data.local_time": "sometimes"})


def test_spread_calibration_matches_sampled_and_true_residual_rms(tiny_store, tmp_path):
    from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions, StormCastNets
    from stormcast_plugin.train.loop import load_stage_network, sample_generators
    from stormcast_plugin.train.run import make_datasets

    cfg = _config(tiny_store, **{"diffusion.calibrate_spread": 6, "regression.steps": 4, "diffusion.steps": 3,
                                 "training.checkpoint_every": 3, "data.valid": "{start: 2024-05-02T06, end: null}",
                                 "data.train": "{start: null, end: 2024-05-02T06}"})
    summaries = run_training(cfg, tmp_path / "run", progress=False)
    factor = torch.tensor(summaries[-1]["spread_calibration"])
    assert factor.shape == (4,) and torch.isfinite(factor).all()
    assert _weights(tmp_path / "run", "diffusion")["spread_calibration"] == factor.tolist()
    raw = load_stage_network(tmp_path / "run", "diffusion", ema=True)
    logged = [json.loads(x) for x in (tmp_path / "run" / "diffusion" / "metrics.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "calibration" for r in logged)
    # The calibrated net's one-hour samples have the RMS of the true residual, channel by channel.
    _, valid = make_datasets(cfg)
    idx = np.unique(np.linspace(0, len(valid) - 1, 6).round().astype(int)).tolist()
    batch = {k: torch.stack([valid[i][k] for i in idx]) for k in ("state", "next_state", "conditioning", "invariants")}
    nets = StormCastNets(load_stage_network(tmp_path / "run", "regression"), raw)
    with torch.no_grad():
        mean = nets.regression(torch.cat([batch["state"], batch["conditioning"], batch["invariants"]], 1))
        out = nets.step(batch["state"], batch["conditioning"], batch["invariants"], sampler=SamplerOptions(num_steps=4),
                        generators=sample_generators(cfg.training.seed + 7919, 0, idx))
    rms_true = (batch["next_state"] - mean).pow(2).mean(dim=(0, 2, 3)).sqrt()
    rms_sampled = (out - mean).pow(2).mean(dim=(0, 2, 3)).sqrt()
    free = (factor > 0.25) & (factor < 4.0)
    assert free.any()
    torch.testing.assert_close(rms_sampled[free], rms_true[free], rtol=1e-4, atol=1e-6)
    # more steps: the factors are measured again at the new end
    more = _config(tiny_store, **{"diffusion.calibrate_spread": 6, "regression.steps": 4, "diffusion.steps": 6,
                                  "training.checkpoint_every": 3, "data.valid": "{start: 2024-05-02T06, end: null}",
                                  "data.train": "{start: null, end: 2024-05-02T06}"})
    again = run_training(more, tmp_path / "run", stages=("diffusion",), progress=False)[-1]
    assert again["step"] == 6 and again["spread_calibration"] != factor.tolist()


def test_push_to_hub_uses_the_api_without_network(tmp_path):
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, private, exist_ok):
            calls.append(("create", repo_id, private))

        def upload_folder(self, folder_path, repo_id, revision, commit_message):
            calls.append(("upload", repo_id, folder_path))
            return type("Info", (), {"commit_url": f"https://hub/{repo_id}/commit/1"})()

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    with pytest.raises(FileNotFoundError, match="stormcast export"):
        push_to_hub(pkg, "me/model", api=FakeApi())
    (pkg / "stormcast_package.json").write_text("{}")
    assert push_to_hub(pkg, "me/model", api=FakeApi()) == "https://hub/me/model/commit/1"
    assert calls == [("create", "me/model", False), ("upload", "me/model", str(pkg))]


def test_residual_scaling_measures_the_tendency_and_the_residual(tiny_store, tmp_path):
    from stormcast_plugin.train.loop import Trainer, load_stage_network
    from stormcast_plugin.train.run import make_datasets

    cfg = _config(tiny_store, **{"model.residual_scaling": "rms", "diffusion.steps": 2,
                                 "model.regression_residual": "true"})
    run_training(cfg, tmp_path / "run", stages=["regression"], progress=False)
    ds, _ = make_datasets(cfg)
    picks = np.unique(np.linspace(0, len(ds) - 1, min(64, len(ds))).round().astype(int))
    # the regression loss is measured in units of each channel's tendency scale
    reg_trainer = Trainer(cfg, tmp_path / "run", "regression", ds, progress=False)
    batch = reg_trainer._collate([0, 1])

    class Persist(torch.nn.Module):
        def forward(self, x):
            return x[:, :4]

    loss = float(reg_trainer.loss(batch, [], model=Persist()))
    scale = reg_trainer.net.tendency_scale.reshape(1, -1, 1, 1)
    expect_loss = float((((batch["state"] - batch["next_state"]) / scale) ** 2).mean())
    assert loss == pytest.approx(expect_loss, rel=1e-5)
    # the regression net's tendency scale: RMS of the hourly change
    change = torch.stack([ds[int(i)]["next_state"] - ds[int(i)]["state"] for i in picks])
    tendency = change.pow(2).mean(dim=(0, 2, 3)).sqrt()
    torch.testing.assert_close(load_stage_network(tmp_path / "run", "regression").tendency_scale, tendency,
                               rtol=1e-4, atol=1e-6)
    trainer = Trainer(cfg, tmp_path / "run", "diffusion", ds, progress=False)
    # by hand: every sample's residual against the frozen regression
    reg = load_stage_network(tmp_path / "run", "regression")
    sq, n = 0.0, 0
    with torch.no_grad():
        for i in picks:
            s = ds[int(i)]
            r = reg(torch.cat([s["state"], s["conditioning"], s["invariants"]])[None])[0]
            sq = sq + ((s["next_state"] - r) ** 2).sum(dim=(1, 2)).double()
            n += r.shape[1] * r.shape[2]
    expect = (sq / n).sqrt().float() / 0.5  # sigma_data
    torch.testing.assert_close(trainer.net.residual_scale, expect, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(trainer.ema.residual_scale, expect, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(expect, torch.ones_like(expect))

    # the EDM loss sees the scaled residual: with the scale doubled, the same
    # noise draw and a denoiser that returns zero, the loss is a quarter
    from stormcast_plugin.train.loop import sample_generators

    batch = trainer._collate([0, 1])

    class Zero(torch.nn.Module):
        def forward(self, x, sigma, cond):
            return torch.zeros_like(x)

    def loss_with(scale):
        trainer.net.set_residual_scale(scale)
        return float(trainer.loss(batch, sample_generators(0, 0, [0, 1]), model=Zero()))

    a, b = loss_with(expect), loss_with(2 * expect)
    assert b == pytest.approx(a / 4, rel=1e-5)

    # trained, exported and reloaded, the package keeps the scale
    run_training(cfg, tmp_path / "run", stages=["diffusion"], progress=False)
    out = export_run(tmp_path / "run", tmp_path / "pkg")
    from stormcast_plugin.package import load_package

    pkg = load_package(out)
    torch.testing.assert_close(pkg.diffusion.residual_scale, expect, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(pkg.regression.tendency_scale, tendency, rtol=1e-4, atol=1e-6)
    card = (out / "README.md").read_text()
    assert f"t2m {float(expect[2]):.3g}" in card and f"t2m {float(tendency[2]):.3g}" in card


def test_trainer_losses_are_the_formulas_written_out(tiny_store, tmp_path):
    """The trainer's losses, local-time channels included, against the regression MSE and the
    EDM loss written out (the noise of batch position j from generator j)."""
    import torch.nn.functional as F

    from stormcast_plugin.train.loop import Trainer, sample_generators
    from stormcast_plugin.train.run import make_datasets

    cfg = _config(tiny_store, **{"data.local_time": "true", "regression.steps": 2, "diffusion.steps": 2,
                                 "training.checkpoint_every": 2})
    run_training(cfg, tmp_path / "run", stages=("regression",), progress=False)
    ds, _ = make_datasets(cfg)
    reg = Trainer(cfg, tmp_path / "run", "regression", ds, progress=False)
    b = reg._collate([0, 3])
    assert b["local_time"].shape == (2, 2, 16, 16)
    inputs = torch.cat([b["state"], b["conditioning"], b["invariants"], b["local_time"]], 1)
    with torch.no_grad():
        torch.testing.assert_close(reg.loss(b, []), F.mse_loss(reg.net(inputs), b["next_state"]), rtol=0, atol=0)

    dif = Trainer(cfg, tmp_path / "run", "diffusion", ds, progress=False)
    dif.net.eval()
    with torch.no_grad():
        got = dif.loss(b, sample_generators(0, 5, [0, 1]))
        mean = dif.regression(inputs)
        y = b["next_state"] - mean
        gens = sample_generators(0, 5, [0, 1])
        n = torch.stack([torch.randn(1, generator=g) for g in gens]).reshape(-1)
        sigma = torch.exp(-1.2 + 1.2 * n)
        noise = torch.stack([torch.randn(y.shape[1:], generator=g) for g in gens])
        cond = torch.cat([b["state"], mean, b["invariants"], b["local_time"]], 1)
        denoised = dif.net(y + noise * sigma[:, None, None, None], sigma, cond)
        weight = ((sigma ** 2 + 0.25) / (sigma * 0.5) ** 2)[:, None, None, None]
        torch.testing.assert_close(got, (weight * (denoised - y) ** 2).mean(), rtol=0, atol=0)
