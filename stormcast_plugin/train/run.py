"""A whole training run: datasets, the two stages, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from .config import ConfigError

__all__ = ["export_run", "make_datasets", "push_to_hub", "run_training"]


def make_datasets(config: Mapping[str, Any]) -> tuple[Any, Any]:
    """Training and validation sets from ``config['data']``.

    With no periods given, the last 10 % of the store's hours validate and the
    rest train.
    """
    from ..data.dataset import StormCastDataset
    from ..data.store import DatasetStore

    d = config["data"]
    if not d.get("store"):
        raise ConfigError("data.store is not set: give the dataset with --set data.store=PATH")
    train_p, valid_p = dict(d.get("train") or {}), dict(d.get("valid") or {})
    if not any(train_p.values()) and not any(valid_p.values()):
        times = DatasetStore.open(d["store"]).times
        cut = times[int(len(times) * 0.9)]
        train_p, valid_p = {"start": None, "end": cut}, {"start": cut, "end": None}
    common = dict(state_variables=d.get("state_variables"), conditioning_variables=d.get("conditioning_variables"),
                  invariant_names=d.get("invariants"),
                  normalize_invariants=bool(d.get("normalize_invariants", True)),
                  local_time=bool(d.get("local_time", False)))
    train = StormCastDataset(d["store"], start=train_p.get("start"), end=train_p.get("end"),
                             crop=tuple(d["crop"]) if d.get("crop") else None,
                             seed=config["training"]["seed"], **common)
    valid = StormCastDataset(d["store"], start=valid_p.get("start"), end=valid_p.get("end"), **common)
    return train, (valid if len(valid) else None)


def run_training(config: Mapping[str, Any], run_dir: str | Path, *, stages: Sequence[str] = ("regression", "diffusion"),
                 device: str | None = None, progress: bool = True, stop_after: int | None = None) -> list[dict]:
    """Train the requested stages in order (each resumes from its checkpoints)."""
    from .loop import Trainer, dist_info

    dist = dist_info(device)
    run_dir = Path(run_dir)
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    train, valid = make_datasets(config)
    summaries = []
    for stage in stages:
        if int(config[stage].get("steps", 0)) == 0:
            continue
        trainer = Trainer(config, run_dir, stage, train, valid, dist=dist, progress=progress, stop_after=stop_after)
        if dist.main:  # written once the checkpoints there (if any) are known to belong to this config
            (run_dir / "config.yaml").write_text(yaml.safe_dump(_plain(config), sort_keys=False))
        summaries.append(trainer.run())
    if dist.world > 1:
        import torch

        torch.distributed.barrier()
    return summaries


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return obj


def export_run(run_dir: str | Path, out: str | Path, *, overwrite: bool = False, use_ema: bool = True,
               name: str | None = None, description: str | None = None) -> Path:
    """Write the run's model package (read by ``StormCast.load_model``)."""
    from ..data.store import DatasetStore
    from ..package import StormCastPackage, save_package
    from .config import load_config, sampler_options
    from .loop import load_stage_network

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run (no config.yaml); train with `stormcast train`")
    config = load_config(cfg_path)
    regression = load_stage_network(run_dir, "regression", ema=use_ema)
    try:
        diffusion = load_stage_network(run_dir, "diffusion", ema=use_ema)
    except FileNotFoundError:
        diffusion = None
    d = config["data"]
    store = DatasetStore.open(d["store"])
    state_vars = list(d.get("state_variables") or store.state_variables)
    cond_vars = list(d.get("conditioning_variables") or store.conditioning_variables)
    inv_names = list(d.get("invariants") or store.invariant_names)
    stats = store.statistics()
    si = store.variable_index(state_vars, "state")
    ci = store.variable_index(cond_vars, "conditioning")
    history = {}
    for stage in ("regression", "diffusion"):
        metrics = run_dir / stage / "metrics.jsonl"
        if metrics.is_file():
            rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
            train_rows = [r for r in rows if r.get("kind") == "train"]
            history[stage] = {"steps": train_rows[-1]["step"] if train_rows else 0,
                              "final_loss": train_rows[-1]["loss"] if train_rows else None}
    info = {
        "name": name or run_dir.name,
        "description": description or f"StormCast trained with stormcast-plugin on {Path(d['store']).name}",
        "license": "Apache-2.0",
        "source": str(run_dir),
        "training": {"dataset": str(d["store"]), "stages": history, "seed": config["training"]["seed"],
                     "model": config["model"]},
    }
    pkg = StormCastPackage(
        regression=regression,
        diffusion=diffusion,
        state_variables=tuple(state_vars),
        conditioning_variables=tuple(cond_vars),
        invariant_names=tuple(inv_names),
        state_mean=np.asarray(stats["state_mean"][si], np.float32),
        state_std=np.asarray(stats["state_std"][si], np.float32),
        conditioning_mean=np.asarray(stats["conditioning_mean"][ci], np.float32),
        conditioning_std=np.asarray(stats["conditioning_std"][ci], np.float32),
        invariants=_network_invariants(store.read_invariants(inv_names), bool(d.get("normalize_invariants", True))),
        grid=store.grid,
        sampler=sampler_options(config),
        info={**info, "layout": "stormcast-plugin"},
        local_time=bool(d.get("local_time", False)),
    )
    pkg.validate()
    return save_package(pkg, out, overwrite=overwrite)


def push_to_hub(package_dir: str | Path, repo_id: str, *, token: str | None = None, private: bool = False,
                revision: str | None = None, api: Any = None) -> str:
    """Upload an exported package folder to the Hugging Face Hub; returns the commit URL."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    package_dir = Path(package_dir)
    if not (package_dir / "stormcast_package.json").is_file():
        raise FileNotFoundError(f"{package_dir} is not an exported package (no stormcast_package.json); "
                                "run `stormcast export RUN_DIR OUT` first")
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(package_dir), repo_id=repo_id, revision=revision,
                             commit_message="Upload StormCast package")
    return str(getattr(info, "commit_url", info))


def _network_invariants(inv: np.ndarray, normalize: bool) -> np.ndarray:
    """The invariants as the trained networks saw them (what a package stores)."""
    from ..data.dataset import normalize_invariants

    return normalize_invariants(inv) if normalize else np.asarray(inv, dtype=np.float32)
