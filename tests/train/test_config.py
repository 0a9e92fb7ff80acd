import pytest

import math

import yaml

from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions
from stormcast_plugin.train.config import Config, ConfigError, TrainingConfig, apply_overrides, load_config


def test_presets_load_and_inherit():
    paper = load_config("paper")
    tiny = load_config("tiny")
    assert paper.regression.steps == 16000 and paper.diffusion.steps == 450000
    assert paper.training.lr == 4e-4 and paper.training.warmup_steps == 1000
    assert paper.training.batch_size == 64 and paper.model.channel_mult == (1, 2, 2, 2, 2)
    # tiny extends paper: overridden keys change, the rest is inherited
    assert tiny.model.model_channels == 32
    assert tiny.training.betas == paper.training.betas == (0.9, 0.999)
    assert tiny.sampler.sigma_max == 800.0 and isinstance(tiny.sampler, SamplerOptions)


def test_file_inheritance_and_overrides(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("extends: tiny\ntraining:\n  lr: 0.002\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\nmodel:\n  num_blocks: 2\n")
    cfg = load_config(child, ["training.lr=2e-4", "data.store=/data/x.zarr", "model.channel_mult=[1, 2]"])
    assert cfg.training.lr == 2e-4
    assert cfg.model.num_blocks == 2 and cfg.model.channel_mult == (1, 2)
    assert cfg.model.model_channels == 32  # from tiny
    assert cfg.data.store == "/data/x.zarr" and cfg.data.stores == ["/data/x.zarr"]


def test_stage_overrides_training_keys(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("extends: tiny\ndiffusion:\n  steps: 7\n  lr: 0.0005\n")
    cfg = load_config(f)
    t = cfg.stage_training("diffusion")
    assert cfg.diffusion.steps == 7 and t.lr == 5e-4 and isinstance(t, TrainingConfig)
    assert cfg.stage_training("regression").lr == cfg.training.lr == 1e-3


@pytest.mark.parametrize(
    "override, match",
    [
        ("training.lrr=1", r"unknown keys \['lrr'\] in section training"),
        ("optim.lr=1", r"unknown config sections \['optim'\]"),
        ("training.lr=-1", r"training.lr = -1(\.0)? is invalid: expected a finite number > 0"),
        ("training.precision=fp8", r"training.precision = 'fp8' is invalid: expected one of"),
        ("model.channel_mult=[]", r"model.channel_mult = \[\] is invalid"),
        ("training.batch_size=10", r"not a multiple of training.micro_batch"),
        ("model.dropout=1.5", r"model.dropout = 1.5 is invalid"),
        ("data.train={start: yesterday}", r"data.train.start = 'yesterday' is invalid"),
        ("training.lr", r"must look like section.key=value"),
        ("model.residual_scaling=std", r"model.residual_scaling = 'std' is invalid: expected one of"),
        ("sampler.noise_memory_h=-2", r"sampler.noise_memory_h = -2(\.0)? is invalid"),
        ("data.local_time=maybe", r"data.local_time = 'maybe' is invalid"),
        ("regression.input_noise=-0.1", r"regression.input_noise = -0.1 is invalid: expected a finite number >= 0"),
        ("diffusion.input_noise=0.1", r"unknown keys \['input_noise'\] in section diffusion"),
    ],
)
def test_bad_values_are_named(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config("tiny", [override])


def test_loops_and_missing_files(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("extends: b.yaml\n")
    b.write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(a)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")


def test_yaml_tags_are_not_executed(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("extends: tiny\ntraining: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)


def test_apply_overrides_does_not_mutate():
    cfg = {"training": {"lr": 1.0}}
    out = apply_overrides(cfg, ["training.lr=2"])
    assert cfg["training"]["lr"] == 1.0 and out["training"]["lr"] == 2


def test_the_defaults_are_the_paper_recipe_and_configs_round_trip():
    assert load_config("paper") == Config()
    for preset in ("paper", "tiny", "demo"):
        cfg = load_config(preset, ["training.lr=2e-4", "diffusion.lr=1e-4", "data.store=[a.zarr, b.zarr]"])
        again = Config.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
        assert again == cfg and again.stage_training("diffusion").lr == 1e-4
    assert math.isinf(Config().sampler.S_max)  # the one value allowed to be infinite


def test_a_run_folder_config_written_before_still_loads(tmp_path):
    """config.yaml as earlier versions wrote it (plain YAML of the merged sections)."""
    f = tmp_path / "config.yaml"
    f.write_text("""data:
  store: /data/train.zarr
  state_variables: null
  conditioning_variables: null
  invariants: null
  train: {start: '2018-08-01T00', end: '2022-01-01T00'}
  valid: {start: 2022-01-01, end: null}
  crop: [32, 32]
  num_workers: 0
  normalize_invariants: true
  local_time: true
model: {model_channels: 32, channel_mult: [1, 2, 2], num_blocks: 1, attn_resolutions: [], bottleneck_attention: true,
        dropout: 0.0, additive_pos_embed: false, sigma_data: 0.5, regression_residual: true, residual_scaling: rms}
training: {seed: 0, batch_size: 8, micro_batch: 8, lr: 0.002, betas: [0.9, 0.999], warmup_steps: 50,
           schedule: cosine, min_lr: 0.0001, clip_grad: 1.0, precision: fp32, ema_decay: 0.995, compile: false,
           log_every: 10, valid_every: 500, valid_batches: 2, checkpoint_every: 100, keep_checkpoints: 3,
           P_mean: -1.2, P_std: 1.2}
regression: {steps: 4000}
diffusion: {steps: 3000, calibrate_spread: 64, lr: 0.001}
sampler: {num_steps: 12, sigma_min: 0.002, sigma_max: 800.0, rho: 7.0, noise_memory_h: 3}
logging: {tensorboard: true, wandb: false, wandb_project: stormcast, panels: true}
""")
    cfg = load_config(f)
    assert cfg.data.crop == (32, 32) and cfg.data.valid.start == "2022-01-01" and cfg.data.local_time
    assert cfg.model.residual_scaling == "rms" and cfg.diffusion.calibrate_spread == 64
    assert cfg.stage_training("diffusion").lr == 1e-3 and cfg.stage_training("regression").lr == 2e-3
    assert cfg.sampler == SamplerOptions(num_steps=12, noise_memory_h=3.0)


@pytest.mark.parametrize("override", ["training.lr=.inf", "training.lr=.nan", "training.min_lr=.inf",
                                      "training.P_mean=-.inf", "diffusion.lr=.inf", "sampler.sigma_max=.inf",
                                      "model.sigma_data=.inf", "training.clip_grad=.inf"])
def test_non_finite_hyperparameters_are_refused(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key} = -?(inf|nan) is invalid: expected a finite number"):
        load_config("tiny", [override])
