"""Training configuration: typed sections read from YAML with inheritance and overrides.

A config has the sections ``data``, ``model``, ``training``, ``regression``,
``diffusion``, ``sampler`` and ``logging``, one dataclass each (see
``configs/paper.yaml`` for every key; the dataclasses' defaults are that
recipe). ``extends:`` names a preset (``paper``, ``tiny``, ``demo``) or
another YAML file (relative to the file that extends it); the child's keys
override the parent's, section by section. Overrides such as
``training.lr=2e-4`` apply last. YAML is read with ``yaml.safe_load``: no
tags, no interpolation, no code.

Every value is checked against its field's type (and the range in the field's
metadata: ``ge``, ``gt``, ``lt``; numbers must be finite unless
``allow_inf``) before anything runs; an error names the key, the value and
what is accepted. The stage sections ``regression`` and ``diffusion`` may set
any ``training`` key for that stage alone (:meth:`Config.stage_training`).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import math
import types
import typing
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from stormcast_plugin.models.nn.songunet import SongUNetConfig
from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions

__all__ = [
    "PRESETS",
    "Config",
    "ConfigError",
    "DataConfig",
    "DiffusionStageConfig",
    "LoggingConfig",
    "ModelConfig",
    "Period",
    "StageConfig",
    "TrainingConfig",
    "apply_overrides",
    "load_config",
]

PRESETS = ("paper", "tiny", "demo")
_MAX_DEPTH = 8


class ConfigError(ValueError):
    """A training configuration is invalid."""


def _spec(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, ge: float | None = None,
          gt: float | None = None, lt: float | None = None, nonempty: bool = False, allow_inf: bool = False,
          time: bool = False, expected: str | None = None) -> Any:
    """A dataclass field with the accepted range of its values in the metadata."""
    meta = {k: v for k, v in dict(ge=ge, gt=gt, lt=lt, nonempty=nonempty, allow_inf=allow_inf, time=time,
                                  expected=expected).items() if v is not None and v is not False}
    return field(default=default, default_factory=factory, metadata=meta)


# --------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class Period:
    """Hours ``[start, end)``; ``None`` leaves that side open."""

    start: str | None = _spec(None, time=True)
    end: str | None = _spec(None, time=True)


_PERIOD = "a mapping {start: TIME or null, end: TIME or null}"
_NAMES = "a non-empty list of variable names, or null for all"


@dataclass(frozen=True)
class DataConfig:
    """``data``: the stores, the channels and the split into training and validation hours."""

    store: str | tuple[str, ...] | None = _spec(None, nonempty=True, expected="a path or a non-empty list of paths")
    state_variables: tuple[str, ...] | None = _spec(None, nonempty=True, expected=_NAMES)
    conditioning_variables: tuple[str, ...] | None = _spec(None, nonempty=True, expected=_NAMES)
    invariants: tuple[str, ...] | None = _spec(None, nonempty=True, expected=_NAMES)
    train: Period = _spec(factory=lambda: Period("2018-08-01T00", "2022-01-01T00"), expected=_PERIOD)
    valid: Period = _spec(factory=lambda: Period("2022-01-01T00", "2023-01-01T00"), expected=_PERIOD)
    crop: tuple[int, int] | None = _spec(None, ge=1, expected="[height, width] in grid points, or null")
    num_workers: int = _spec(4, ge=0)
    normalize_invariants: bool = True
    local_time: bool = False

    @property
    def stores(self) -> list[str]:
        """The paths of ``store`` (one or several)."""
        if not self.store:
            raise ConfigError("data.store is not set: give the dataset with --set data.store=PATH "
                              "(or a list: --set 'data.store=[A.zarr, B.zarr]')")
        return [self.store] if isinstance(self.store, str) else list(self.store)


@dataclass(frozen=True)
class ModelConfig:
    """``model``: the architecture both networks share, and how they are scaled."""

    model_channels: int = _spec(128, ge=1)
    channel_mult: tuple[int, ...] = _spec((1, 2, 2, 2, 2), ge=1, nonempty=True)
    num_blocks: int = _spec(4, ge=1)
    attn_resolutions: tuple[int, ...] = _spec((), ge=1)
    bottleneck_attention: bool = True
    dropout: float = _spec(0.1, ge=0, lt=1)
    additive_pos_embed: bool = True  # diffusion net only
    sigma_data: float = _spec(0.5, gt=0)
    regression_residual: bool = False
    residual_scaling: Literal["none", "rms"] = "none"

    def network(self, stage: str, state: int, conditioning: int, invariants: int,
                shape: tuple[int, int]) -> SongUNetConfig:
        """The SongUNet of ``stage`` for ``state``, ``conditioning`` and
        ``invariants`` input channels (local-time channels included) on a grid
        of ``shape``: the regression net maps ``cat[state, conditioning,
        invariants]`` to the state, the denoiser ``cat[noisy state, state,
        regression mean, invariants]``."""
        common = dict(img_resolution=tuple(shape), out_channels=state, model_channels=self.model_channels,
                      channel_mult=self.channel_mult, num_blocks=self.num_blocks,
                      attn_resolutions=self.attn_resolutions, bottleneck_attention=self.bottleneck_attention,
                      dropout=self.dropout)
        if stage == "regression":
            return SongUNetConfig(in_channels=state + conditioning + invariants, embedding_type="zero", **common)
        return SongUNetConfig(in_channels=3 * state + invariants, embedding_type="positional",
                              additive_pos_embed=self.additive_pos_embed, **common)


@dataclass(frozen=True)
class TrainingConfig:
    """``training``: optimiser, schedule, precision, cadence and the EDM noise levels."""

    seed: int = _spec(0, ge=0)
    batch_size: int = _spec(64, ge=1)  # global: all ranks, after accumulation
    micro_batch: int = _spec(1, ge=1)  # per rank and forward pass
    lr: float = _spec(4e-4, gt=0)
    betas: tuple[float, float] = _spec((0.9, 0.999), ge=0, lt=1)
    warmup_steps: int = _spec(1000, ge=0)
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr: float = _spec(0.0, ge=0)
    clip_grad: float | None = _spec(None, gt=0)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    ema_decay: float | None = _spec(None, ge=0, lt=1)
    compile: bool = False
    log_every: int = _spec(50, ge=1)
    valid_every: int = _spec(1000, ge=1)
    valid_batches: int = _spec(8, ge=1)
    checkpoint_every: int = _spec(1000, ge=1)
    keep_checkpoints: int = _spec(3, ge=1)
    P_mean: float = -1.2
    P_std: float = _spec(1.2, gt=0)


@dataclass(frozen=True)
class StageConfig:
    """``regression``: its steps, and the ``training`` keys it sets for itself (``overrides``)."""

    steps: int = _spec(0, ge=0)
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RegressionStageConfig(StageConfig):
    """``regression``: as a stage, and the noise added to the input state while
    training (``input_noise``: its standard deviation in normalised units; the
    target stays clean, so the net learns to damp small perturbations of its
    input instead of amplifying them hour after hour in a rollout)."""

    input_noise: float = _spec(0.0, ge=0)


@dataclass(frozen=True)
class DiffusionStageConfig(StageConfig):
    """``diffusion``: as a stage, and the spread calibration after its last step
    (> 0: on that many validation samples)."""

    calibrate_spread: int = _spec(0, ge=0)


@dataclass(frozen=True)
class LoggingConfig:
    """``logging``: where metrics go (metrics.jsonl always)."""

    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "stormcast"
    panels: bool = True


@dataclass(frozen=True)
class Config:
    """A whole training configuration; ``Config()`` is the paper recipe."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    regression: RegressionStageConfig = field(default_factory=lambda: RegressionStageConfig(steps=16000))
    diffusion: DiffusionStageConfig = field(default_factory=lambda: DiffusionStageConfig(steps=450000))
    sampler: SamplerOptions = field(default_factory=SamplerOptions)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def stage(self, name: str) -> StageConfig:
        """The section of stage ``name`` (``regression`` or ``diffusion``)."""
        if name not in ("regression", "diffusion"):
            raise ValueError(f"stage {name!r} must be 'regression' or 'diffusion'")
        return getattr(self, name)

    def stage_training(self, name: str) -> TrainingConfig:
        """The ``training`` section with the overrides of stage ``name`` applied."""
        return dataclasses.replace(self.training, **self.stage(name).overrides)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Config":
        """Check every section, key and value of a parsed YAML mapping.

        Raises
        ------
        ConfigError
            Naming the unknown section or key, or the bad value and what is accepted.
        """
        hints = typing.get_type_hints(cls)
        unknown = sorted(set(raw) - set(hints))
        if unknown:
            raise ConfigError(f"unknown config sections {unknown}; known sections: {sorted(hints)}")
        sections = {}
        for name, kind in hints.items():
            body = raw.get(name) or {}
            if not isinstance(body, Mapping):
                raise ConfigError(f"section {name} must be a mapping, got {body!r}")
            if issubclass(kind, StageConfig):
                own = {f.name for f in fields(kind)} - {"overrides"}
                extra = {k: v for k, v in body.items() if k not in own}
                body = {k: v for k, v in body.items() if k in own}
                sections[name] = _section(kind, body, name, overrides=_values(TrainingConfig, extra, name, own))
            else:
                sections[name] = _section(kind, body, name)
        cfg = cls(**sections)
        for name in ("training", "regression", "diffusion"):
            t = cfg.training if name == "training" else cfg.stage_training(name)
            if t.batch_size % t.micro_batch:
                raise ConfigError(
                    f"training.batch_size = {t.batch_size} is not a multiple of training.micro_batch = "
                    f"{t.micro_batch}{'' if name == 'training' else f' in the {name} stage'}; the global batch "
                    "is micro_batch x ranks x accumulation steps"
                )
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML data (what ``run_dir/config.yaml`` holds); reads back equal."""
        out: dict[str, Any] = {}
        for f in fields(self):
            section = getattr(self, f.name)
            body = {s.name: _plain(getattr(section, s.name)) for s in fields(section) if s.name != "overrides"}
            if isinstance(section, StageConfig):
                body.update(_plain(dict(section.overrides)))
            out[f.name] = body
        return out


# --------------------------------------------------------------------------- reading
def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _section(kind: type, body: Mapping[str, Any], where: str, **extra: Any) -> Any:
    values = _values(kind, body, where)
    try:
        return kind(**values, **extra)
    except ValueError as err:  # a check across fields (e.g. SamplerOptions: sigma_min < sigma_max)
        raise ConfigError(f"section {where}: {err}") from err


def _values(kind: type, body: Mapping[str, Any], where: str, also: set[str] = frozenset()) -> dict[str, Any]:
    """``body`` checked against the fields of dataclass ``kind`` (``also``: keys allowed besides)."""
    specs = {f.name: f for f in fields(kind) if f.name != "overrides"}
    unknown = sorted(set(body) - set(specs))
    if unknown:
        raise ConfigError(f"unknown keys {unknown} in section {where}; known keys: {sorted(set(specs) | also)}")
    hints = typing.get_type_hints(kind)
    return {k: _convert(f"{where}.{k}", v, hints[k], specs[k].metadata) for k, v in body.items()}


def _convert(where: str, value: Any, kind: Any, meta: Mapping[str, Any]) -> Any:
    """``value`` as type ``kind`` within the range of ``meta``, or a ConfigError."""

    def fail(expected: str | None = None) -> typing.NoReturn:
        raise ConfigError(f"{where} = {value!r} is invalid: expected "
                          f"{meta.get('expected') or expected or _describe(kind, meta)}")

    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        optional = len(options) < len(args)
        if value is None:
            return None if optional else fail()
        for option in options:
            try:
                return _convert(where, value, option, meta)
            except ConfigError:
                pass
        fail(" or ".join(_describe(o, meta) for o in options) + (", or null" if optional else ""))
    if value is None:
        fail(f"a value ({_describe(kind, meta)})")
    if origin is Literal:
        return value if value in args else fail(f"one of {list(args)}")
    if kind is bool:
        return value if isinstance(value, bool) else fail()
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or not _in_range(value, meta):
            fail()
        return value
    if kind is float:
        if isinstance(value, str):  # YAML reads 4e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                fail()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            fail()
        if (math.isinf(value) and not meta.get("allow_inf")) or not _in_range(value, meta):
            fail()
        return float(value)
    if kind is str:
        if meta.get("time"):
            return _time(value, fail)
        return value if isinstance(value, str) and value else fail()
    if origin is tuple:
        item, n = (args[0], None) if len(args) == 2 and args[1] is Ellipsis else (args[0], len(args))
        if not isinstance(value, (list, tuple)) or (n is not None and len(value) != n) or (
                meta.get("nonempty") and not value):
            fail()
        inner = {k: v for k, v in meta.items() if k != "expected"}
        try:
            return tuple(_convert(where, v, item, inner) for v in value)
        except ConfigError:
            fail()
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, Mapping):
            fail()
        return _section(kind, value, where)
    raise TypeError(f"{where}: no reader for the type {kind!r}")  # a new field type needs one here


def _in_range(value: float, meta: Mapping[str, Any]) -> bool:
    return ((meta.get("ge") is None or value >= meta["ge"]) and (meta.get("gt") is None or value > meta["gt"])
            and (meta.get("lt") is None or value < meta["lt"]) and (meta.get("le") is None or value <= meta["le"]))


def _time(value: Any, fail: Any) -> str:
    """An ISO time as a string (YAML gives dates and datetimes as objects)."""
    import numpy as np

    if isinstance(value, (datetime.date, datetime.datetime)):
        value = value.isoformat()
    if not isinstance(value, str):
        fail()
    try:
        np.datetime64(value.replace(" ", "T"), "h")
    except ValueError:
        fail()
    return value


def _describe(kind: Any, meta: Mapping[str, Any], plural: bool = False) -> str:
    """What ``kind`` within ``meta`` accepts, in words."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    ge, gt, lt, le = meta.get("ge"), meta.get("gt"), meta.get("lt"), meta.get("le")
    if kind is bool:
        return "true or false"
    if kind is int:
        if ge == 1:
            return "positive integers" if plural else "a positive integer"
        return ("integers" if plural else "an integer") + (f" >= {ge}" if ge is not None else "")
    if kind is float:
        words = "finite numbers" if plural else "a finite number"
        if meta.get("allow_inf"):
            words = "numbers" if plural else "a number"
        if ge is not None and lt is not None:
            return f"{words} in [{ge:g}, {lt:g})"
        if ge is not None and le is not None:
            return f"{words} in [{ge:g}, {le:g}]"
        return words + (f" > {gt:g}" if gt is not None else f" >= {ge:g}" if ge is not None else "")
    if kind is str:
        if meta.get("time"):
            return "ISO times" if plural else "an ISO time such as 2022-01-01T00"
        return "non-empty strings" if plural else "a non-empty string"
    if origin is Literal:
        return f"one of {list(args)}"
    if origin is tuple:
        items = _describe(args[0], meta, plural=True)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a {'non-empty ' if meta.get('nonempty') else ''}list of {items}"
        return f"{len(args)} {items}"
    if dataclasses.is_dataclass(kind):
        return f"a mapping with the keys {[f.name for f in fields(kind)]}"
    return str(kind)


# --------------------------------------------------------------------------- files
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
        # a period replaces the parent's whole: {start: X} alone leaves end open
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
    """Apply ``section.key=value`` overrides to a raw config mapping (values
    parsed as YAML scalars or lists); returns a new mapping."""
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


def load_config(source: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Load a config file or preset, resolve ``extends``, apply overrides, check.

    Parameters
    ----------
    source : str or path-like
        A YAML file (a run folder's ``config.yaml`` too) or a preset name.
    overrides : sequence of str
        ``section.key=value`` items, applied last.

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        For a missing or unreadable file, an inheritance loop, or a bad key or value.
    """
    if str(source) not in PRESETS and not Path(source).is_file():
        raise ConfigError(f"config {source} not found; give a YAML file or a preset name {PRESETS}")
    return Config.from_dict(apply_overrides(_load(source, 0, ()), overrides))
