import pytest

from stormcast_plugin.train.config import ConfigError, apply_overrides, load_config, stage_training


def test_presets_load_and_inherit():
    paper = load_config("paper")
    tiny = load_config("tiny")
    assert paper["regression"]["steps"] == 16000 and paper["diffusion"]["steps"] == 450000
    assert paper["training"]["lr"] == 4e-4 and paper["training"]["warmup_steps"] == 1000
    assert paper["training"]["batch_size"] == 64 and paper["model"]["channel_mult"] == [1, 2, 2, 2, 2]
    # tiny extends paper: overridden keys change, the rest is inherited
    assert tiny["model"]["model_channels"] == 32
    assert tiny["training"]["betas"] == paper["training"]["betas"]
    assert tiny["sampler"]["sigma_max"] == 800.0


def test_file_inheritance_and_overrides(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("extends: tiny\ntraining:\n  lr: 0.002\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\nmodel:\n  num_blocks: 2\n")
    cfg = load_config(child, ["training.lr=2e-4", "data.store=/data/x.zarr", "model.channel_mult=[1, 2]"])
    assert cfg["training"]["lr"] == 2e-4
    assert cfg["model"]["num_blocks"] == 2 and cfg["model"]["channel_mult"] == [1, 2]
    assert cfg["model"]["model_channels"] == 32  # from tiny
    assert cfg["data"]["store"] == "/data/x.zarr"


def test_stage_overrides_training_keys(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("extends: tiny\ndiffusion:\n  steps: 7\n  lr: 0.0005\n")
    cfg = load_config(f)
    t = stage_training(cfg, "diffusion")
    assert t["steps"] == 7 and t["lr"] == 5e-4
    assert stage_training(cfg, "regression")["lr"] == cfg["training"]["lr"]


@pytest.mark.parametrize(
    "override, match",
    [
        ("training.lrr=1", r"unknown keys \['lrr'\] in section training"),
        ("optim.lr=1", r"unknown config sections \['optim'\]"),
        ("training.lr=-1", r"training.lr = -1(\.0)? is invalid: expected a number > 0"),
        ("training.precision=fp8", r"training.precision = 'fp8' is invalid: expected one of"),
        ("model.channel_mult=[]", r"model.channel_mult = \[\] is invalid"),
        ("training.batch_size=10", r"not a multiple of training.micro_batch"),
        ("model.dropout=1.5", r"model.dropout = 1.5 is invalid"),
        ("data.train={start: yesterday}", r"data.train.start = 'yesterday' is invalid"),
        ("training.lr", r"must look like section.key=value"),
        ("model.residual_scaling=std", r"model.residual_scaling = 'std' is invalid: expected one of"),
        ("sampler.noise_memory_h=-2", r"sampler.noise_memory_h = -2(\.0)? is invalid"),
        ("data.local_time=maybe", r"data.local_time = 'maybe' is invalid"),
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
