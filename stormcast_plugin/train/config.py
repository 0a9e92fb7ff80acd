"""Training configuration: YAML files with inheritance and overrides.

A config has the sections ``data``, ``model``, ``training``, ``regression``,
``diffusion``, ``sampler`` and ``logging`` (see ``configs/paper.yaml`` for
every key). ``extends:`` names a preset (``paper``, ``tiny``) or another YAML
file (relative to the file that extends it); the child's keys override the
parent's, section by section. Overrides such as ``training.lr=2e-4`` apply
last. YAML is read with ``yaml.safe_load``: no tags, no interpolation, no
code. Unknown keys and bad values are rejected before anything runs.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

__all__ = ["ConfigError", "load_config", "apply_overrides", "validate_config", "PRESETS"]

PRESETS = ("paper", "tiny", "demo")
_MAX_DEPTH = 8


class ConfigError(ValueError):
    """A training configuration is invalid."""


# key -> (type check, description). Types: "int+", "int0", "float+", "float0",
# "prob", "bool", "str?", "list_int", "choice:a|b", "any", "path?", "paths?" (one path or a list), "time?",
# "crop?".
SCHEMA: dict[str, dict[str, str]] = {
    "data": {
        "store": "paths?", "state_variables": "names?", "conditioning_variables": "names?",
        "invariants": "names?", "train": "period", "valid": "period", "crop": "crop?",
        "num_workers": "int0", "normalize_invariants": "bool", "local_time": "bool",
    },
    "model": {
        "model_channels": "int+", "channel_mult": "list_int", "num_blocks": "int+",
        "attn_resolutions": "list_int0", "bottleneck_attention": "bool", "dropout": "prob",
        "additive_pos_embed": "bool", "sigma_data": "float+", "regression_residual": "bool",
        "residual_scaling": "choice:none|rms",
    },
    "training": {
        "seed": "int0", "batch_size": "int+", "micro_batch": "int+", "lr": "float+",
        "betas": "betas", "warmup_steps": "int0", "schedule": "choice:constant|cosine",
        "min_lr": "float0", "clip_grad": "float+?", "precision": "choice:fp32|bf16|fp16",
        "ema_decay": "prob?", "compile": "bool", "log_every": "int+", "valid_every": "int+",
        "valid_batches": "int+", "checkpoint_every": "int+", "keep_checkpoints": "int+",
        "P_mean": "float", "P_std": "float+",
    },
    "regression": {"steps": "int0"},
    "diffusion": {"steps": "int0", "calibrate_spread": "int0"},
    "sampler": {"num_steps": "int+", "sigma_min": "float+", "sigma_max": "float+", "rho": "float+",
                "S_churn": "float0", "S_min": "float0", "S_max": "float+", "S_noise": "float+",
                "noise_memory_h": "float0"},
    "logging": {"tensorboard": "bool", "wandb": "bool", "wandb_project": "str", "panels": "bool"},
}
_STAGE_TRAINING_KEYS = set(SCHEMA["training"])  # a stage may override training keys


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err}") from err
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of sections, got {type(data).__name__}")
    return data


def _preset_path(name: str) -> Path:
    return Path(str(resources.files("stormcast_plugin") / "configs" / f"{name}.yaml"))


def _merge(base: dict[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict) and key not in ("train", "valid"):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load(source: str | Path, depth: int, seen: tuple[str, ...]) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        raise ConfigError(f"config inheritance deeper than {_MAX_DEPTH} levels: {' -> '.join(seen)}")
    path = _preset_path(str(source)) if str(source) in PRESETS else Path(source)
    key = str(path.resolve())
    if key in seen:
        raise ConfigError(f"config inheritance loops: {' -> '.join(seen + (key,))}")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    parent_src = parent if str(parent) in PRESETS else (path.parent / str(parent))
    return _merge(_load(parent_src, depth + 1, seen + (key,)), data)


def apply_overrides(config: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML scalars or lists)."""
    out = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value (e.g. training.lr=2e-4)")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) < 2 or not all(parts):
            raise ConfigError(f"override {item!r} must name section.key (e.g. training.lr=2e-4)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({err})") from err
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = value
    return out


def _fail(where: str, value: Any, expected: str) -> None:
    raise ConfigError(f"{where} = {value!r} is invalid: expected {expected}")


def _check(where: str, value: Any, kind: str) -> Any:
    optional = kind.endswith("?")
    base = kind.rstrip("?")
    if value is None:
        if optional:
            return None
        _fail(where, value, f"a value ({base})")
    isnum = isinstance(value, (int, float)) and not isinstance(value, bool)
    if base in ("int+", "int0"):
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if base == "int+" else 0):
            _fail(where, value, "a positive integer" if base == "int+" else "an integer >= 0")
    elif base in ("float", "float+", "float0"):
        if isinstance(value, str):
            try:
                value = float(value)
                isnum = True
            except ValueError:
                pass
        if not isnum or value != value:
            _fail(where, value, "a number")
        value = float(value)
        if base == "float+" and value <= 0:
            _fail(where, value, "a number > 0")
        if base == "float0" and value < 0:
            _fail(where, value, "a number >= 0")
    elif base == "prob":
        if not isnum or not 0 <= float(value) < 1:
            _fail(where, value, "a number in [0, 1)")
        value = float(value)
    elif base == "bool":
        if not isinstance(value, bool):
            _fail(where, value, "true or false")
    elif base in ("str", "path"):
        if not isinstance(value, str) or not value:
            _fail(where, value, "a non-empty string")
    elif base == "paths":
        one = isinstance(value, str) and bool(value)
        many = isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)
        if not (one or many):
            _fail(where, value, "a path or a non-empty list of paths")
    elif base.startswith("choice:"):
        choices = base.split(":", 1)[1].split("|")
        if value not in choices:
            _fail(where, value, f"one of {choices}")
    elif base in ("list_int", "list_int0"):
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            _fail(where, value, "a list of positive integers")
        if base == "list_int" and not value:
            _fail(where, value, "a non-empty list")
    elif base == "names":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            _fail(where, value, "a non-empty list of variable names, or null for all")
    elif base == "betas":
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) and 0 <= v < 1 for v in value)):
            _fail(where, value, "two numbers in [0, 1), e.g. [0.9, 0.999]")
    elif base == "crop":
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
            _fail(where, value, "[height, width] in grid points, or null")
    elif base == "period":
        if not isinstance(value, dict) or set(value) - {"start", "end"}:
            _fail(where, value, "a mapping {start: TIME or null, end: TIME or null}")
        import numpy as np

        for k in ("start", "end"):
            v = value.get(k)
            if v is not None:
                try:
                    np.datetime64(str(v).replace(" ", "T"), "h")
                except ValueError:
                    _fail(f"{where}.{k}", v, "an ISO time such as 2022-01-01T00")
    return value


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check every key and value; return a normalised copy.

    Raises
    ------
    ConfigError
        Naming the unknown key or the bad value and what was expected.
    """
    cfg = copy.deepcopy(dict(config))
    unknown_sections = sorted(set(cfg) - set(SCHEMA))
    if unknown_sections:
        raise ConfigError(f"unknown config sections {unknown_sections}; known sections: {sorted(SCHEMA)}")
    for section, keys in SCHEMA.items():
        body = cfg.get(section) or {}
        if not isinstance(body, dict):
            raise ConfigError(f"section {section} must be a mapping, got {body!r}")
        allowed = set(keys) | (_STAGE_TRAINING_KEYS if section in ("regression", "diffusion") else set())
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise ConfigError(f"unknown keys {unknown} in section {section}; known keys: {sorted(allowed)}")
        for key, value in body.items():
            kind = keys.get(key) or SCHEMA["training"][key]
            body[key] = _check(f"{section}.{key}", value, kind)
        cfg[section] = body
    t = cfg["training"]
    if t.get("batch_size") and t.get("micro_batch") and t["batch_size"] % t["micro_batch"]:
        raise ConfigError(
            f"training.batch_size = {t['batch_size']} is not a multiple of training.micro_batch = "
            f"{t['micro_batch']}; the global batch is micro_batch x ranks x accumulation steps"
        )
    s = cfg["sampler"]
    if s.get("sigma_min", 0.002) >= s.get("sigma_max", 800.0):
        raise ConfigError(f"sampler.sigma_min = {s.get('sigma_min')} must be below sampler.sigma_max = {s.get('sigma_max')}")
    return cfg


def load_config(source: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Load a config file or preset, resolve ``extends``, apply overrides, validate."""
    if str(source) not in PRESETS and not Path(source).is_file():
        raise ConfigError(f"config {source} not found; give a YAML file or a preset name {PRESETS}")
    cfg = _load(source, 0, ())
    return validate_config(apply_overrides(cfg, overrides))


def stage_training(config: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """The training settings of one stage (stage keys override ``training``)."""
    out = dict(config["training"])
    out.update({k: v for k, v in config[stage].items() if k != "steps"})
    out["steps"] = int(config[stage].get("steps", 0))
    return out


def sampler_options(config: Mapping[str, Any]) -> Any:
    """The config's ``sampler`` section as :class:`~stormcast_plugin.models.nn.stormcast_nets.SamplerOptions`
    (a validated section holds only its fields)."""
    from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions

    return SamplerOptions.from_dict(config["sampler"])
