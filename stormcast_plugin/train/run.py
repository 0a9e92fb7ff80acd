"""A whole training run: datasets, the two stages, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from stormcast_plugin.train.config import Config, ConfigError, Period

__all__ = ["export_run", "make_datasets", "push_to_hub", "run_training", "training_data"]


def _check_same_domain(first: Any, other: Any, names: Sequence[str]) -> None:
    """Refuse a second store on another grid or with other invariants."""
    problems = []
    if tuple(first.grid.shape) != tuple(other.grid.shape):
        problems.append(f"the grid is {tuple(other.grid.shape)}, not {tuple(first.grid.shape)}")
    elif not (np.allclose(first.grid.lat, other.grid.lat, atol=1e-5)
              and np.allclose(first.grid.lon, other.grid.lon, atol=1e-5)):
        problems.append("the grid's latitudes/longitudes differ")
    else:
        a, b = first.read_invariants(names), other.read_invariants(names)
        gaps = [f"{n} by up to {float(np.nanmax(np.abs(x - y))):.4g}" for n, x, y in zip(names, a, b)
                if not np.allclose(x, y, rtol=1e-5, atol=1e-4)]
        if gaps:
            problems.append("the invariants differ: " + ", ".join(gaps))
    if problems:
        raise ConfigError(
            f"data.store: {other.path} is not on the domain of {first.path} ({'; '.join(problems)}). All the "
            "stores of a run must share the grid and the invariants, since a model keeps one set of them "
            "(synthetic stores: vary --seed and keep --terrain-seed)"
        )


def training_data(config: Config) -> dict[str, Any]:
    """The stores of ``data.store`` checked against each other, the selected
    channel names and their normalisation statistics.

    With several stores the statistics are those of all their hours pooled
    (:func:`~stormcast_plugin.train.dataset.pooled_statistics`); the first
    store gives the grid and the invariants. Returns a dict with ``paths``,
    ``stores``, ``state_variables``, ``conditioning_variables``,
    ``invariant_names`` and ``statistics``.
    """
    from stormcast_plugin.train.dataset import pooled_statistics
    from stormcast_plugin.io.dataset_store import DatasetStore

    d = config.data
    paths = d.stores
    if len(set(paths)) != len(paths):
        raise ConfigError(f"data.store lists a store twice: {paths}")
    stores = [DatasetStore.open(p) for p in paths]
    first = stores[0]
    state_vars = list(d.state_variables or first.state_variables)
    cond_vars = list(d.conditioning_variables or first.conditioning_variables)
    inv_names = list(d.invariants or first.invariant_names)
    parts = []
    for store in stores:
        if store is not first:
            _check_same_domain(first, store, inv_names)
        full = store.statistics()
        si = store.variable_index(state_vars, "state")
        ci = store.variable_index(cond_vars, "conditioning")
        parts.append(({"state_mean": full["state_mean"][si], "state_std": full["state_std"][si],
                       "conditioning_mean": full["conditioning_mean"][ci],
                       "conditioning_std": full["conditioning_std"][ci]},
                      int((store.written & ~store.missing).sum())))
    stats = pooled_statistics(parts) if len(parts) > 1 else {k: np.asarray(v) for k, v in parts[0][0].items()}
    return {"paths": paths, "stores": stores, "state_variables": state_vars, "conditioning_variables": cond_vars,
            "invariant_names": inv_names, "statistics": stats}


def _has_hours(store: Any, period: Period) -> bool:
    """Whether ``store`` has two or more hours in ``[start, end)`` (read as the dataset reads them)."""
    from stormcast_plugin.utils.time import as_times

    times = store.times
    keep = np.ones(times.shape, bool)
    if period.start is not None:
        keep &= times >= as_times(period.start, "data period start")[0]
    if period.end is not None:
        keep &= times < as_times(period.end, "data period end")[0]
    return int(keep.sum()) >= 2


def make_datasets(config: Config) -> tuple[Any, Any]:
    """Training and validation sets from ``config.data``.

    With no periods given, the last 10 % of each store's hours validate and
    the rest train. Given periods apply to every store; a store without
    hours in a period adds nothing to that set. Several stores give a
    :class:`~stormcast_plugin.train.dataset.MultiStoreDataset`.
    """
    from stormcast_plugin.train.dataset import MultiStoreDataset, StormCastDataset

    d = config.data
    data = training_data(config)
    train_p, valid_p = d.train, d.valid
    auto = train_p == valid_p == Period()
    common = dict(state_variables=data["state_variables"], conditioning_variables=data["conditioning_variables"],
                  invariant_names=data["invariant_names"], statistics=data["statistics"],
                  normalize_invariants=d.normalize_invariants, local_time=d.local_time)
    train, valid = [], []
    for k, store in enumerate(data["stores"]):
        if auto:
            cut = store.times[int(len(store.times) * 0.9)]
            train_p, valid_p = Period(None, cut), Period(cut, None)
        if _has_hours(store, train_p):
            train.append(StormCastDataset(store, start=train_p.start, end=train_p.end, crop=d.crop,
                                          seed=config.training.seed + k, **common))
        if _has_hours(store, valid_p):
            part = StormCastDataset(store, start=valid_p.start, end=valid_p.end, **common)
            if len(part):
                valid.append(part)
    if not train:
        raise ConfigError(f"data.train (start {train_p.start}, end {train_p.end}) holds no hours of any store in "
                          f"data.store {data['paths']}; "
                          "widen the period or add a store that covers it")
    train_set = train[0] if len(train) == 1 else MultiStoreDataset(train)
    valid_set = None if not valid else valid[0] if len(valid) == 1 else MultiStoreDataset(valid)
    return train_set, valid_set


def run_training(config: Config, run_dir: str | Path, *, stages: Sequence[str] = ("regression", "diffusion"),
                 device: str | None = None, progress: bool = True, stop_after: int | None = None) -> list[dict]:
    """Train the requested stages in order (each resumes from its checkpoints)."""
    from stormcast_plugin.train.loop import Trainer, dist_info

    dist = dist_info(device)
    run_dir = Path(run_dir)
    train, valid = make_datasets(config)  # the stores are checked before anything is written
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    summaries = []
    for stage in stages:
        if config.stage(stage).steps == 0:
            continue
        trainer = Trainer(config, run_dir, stage, train, valid, dist=dist, progress=progress, stop_after=stop_after)
        if dist.main:  # written once the checkpoints there (if any) are known to belong to this config
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        summaries.append(trainer.run())
    if dist.world > 1:
        import torch

        torch.distributed.barrier()
    return summaries


def export_run(run_dir: str | Path, out: str | Path, *, overwrite: bool = False, use_ema: bool = True,
               name: str | None = None, description: str | None = None) -> Path:
    """Write the run's model package (read by ``StormCast.load_model``)."""
    from stormcast_plugin.package import StormCastPackage, save_package
    from stormcast_plugin.train.config import load_config
    from stormcast_plugin.train.loop import load_stage_network

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
    d = config.data
    data = training_data(config)
    store, stats = data["stores"][0], data["statistics"]
    state_vars, cond_vars, inv_names = data["state_variables"], data["conditioning_variables"], data["invariant_names"]
    datasets = ", ".join(Path(p).name for p in data["paths"])
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
        "description": description or f"StormCast trained with stormcast-plugin on {datasets}",
        "license": "Apache-2.0",
        "source": str(run_dir),
        "training": {"dataset": data["paths"][0] if len(data["paths"]) == 1 else data["paths"],
                     "stages": history, "seed": config.training.seed, "model": config.to_dict()["model"]},
    }
    pkg = StormCastPackage(
        regression=regression,
        diffusion=diffusion,
        state_variables=tuple(state_vars),
        conditioning_variables=tuple(cond_vars),
        invariant_names=tuple(inv_names),
        state_mean=np.asarray(stats["state_mean"], np.float32),
        state_std=np.asarray(stats["state_std"], np.float32),
        conditioning_mean=np.asarray(stats["conditioning_mean"], np.float32),
        conditioning_std=np.asarray(stats["conditioning_std"], np.float32),
        invariants=_network_invariants(store.read_invariants(inv_names), d.normalize_invariants),
        grid=store.grid,
        sampler=config.sampler,
        info={**info, "layout": "stormcast-plugin"},
        local_time=d.local_time,
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
    from stormcast_plugin.train.dataset import normalize_invariants

    return normalize_invariants(inv) if normalize else np.asarray(inv, dtype=np.float32)
