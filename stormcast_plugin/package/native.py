"""This project's own package layout (``stormcast-plugin``): load and save with checksums.

An export holds ``stormcast_package.json`` (the manifest: names, network
configurations, grid, sampler, and the SHA-256 of every other file),
``regression.safetensors``, ``diffusion.safetensors`` (when there is a
diffusion net), ``data.safetensors`` (statistics, invariants, grid arrays)
and a ``README.md`` model card. Nothing in it is unpickled. Loading checks
every file the manifest lists against its SHA-256.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from stormcast_plugin.models.nn.mdlus import CheckpointError, load_state_dict_strict
from stormcast_plugin.models.nn.networks import EDMPrecond, RegressionNet
from stormcast_plugin.models.nn.songunet import SongUNetConfig
from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions
from stormcast_plugin.package.card import model_card
from stormcast_plugin.package.spec import (
    FORMAT_NAME,
    FORMAT_VERSION,
    INFO_KEYS,
    MANIFEST_NAME,
    OWN_DATA,
    OWN_DIFFUSION,
    OWN_README,
    OWN_REGRESSION,
    PackageFormatError,
    PackageNotFoundError,
    StormCastPackage,
)
from stormcast_plugin.package.storage import (
    AtomicDir,
    grid_from_parts,
    grid_to_parts,
    json_safe,
    sha256_file,
)

__all__ = ["load_native", "save_package"]


# --------------------------------------------------------------------------- loading
def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PackageFormatError(f"{path} is not valid JSON ({err}); the export is damaged: write it again") from err
    found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
    if found != FORMAT_NAME:
        raise PackageFormatError(
            f"{path} is not a stormcast-plugin manifest (format {found!r}, expected {FORMAT_NAME!r})"
        )
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise PackageFormatError(
            f"{path} has format_version {version!r}; this stormcast_plugin reads versions 1..{FORMAT_VERSION}. "
            "Upgrade stormcast_plugin to read newer exports"
        )
    return manifest


def _verify_files(folder: Path, manifest: dict) -> None:
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise PackageFormatError(f"{folder / MANIFEST_NAME} has no 'files' checksum map; write the export again")
    missing = [n for n in files if not (folder / n).is_file()]
    if missing:
        raise PackageNotFoundError(
            f"{folder} lacks {missing}, listed in {MANIFEST_NAME}; copy the whole package folder"
        )
    for name, expected in files.items():
        actual = sha256_file(folder / name)
        if actual != expected:
            raise CheckpointError(
                f"checksum mismatch for {folder / name}: sha256 {actual} but {MANIFEST_NAME} "
                f"records {expected}. The file was modified or damaged: copy or export the package again"
            )


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} cannot be read as safetensors ({err})") from err


def _manifest_bool(manifest: Mapping[str, Any], key: str) -> bool:
    value = manifest.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{key} is {value!r}; expected true or false")
    return value


def load_native(folder: Path, label: str) -> StormCastPackage:
    """Read the export in ``folder``, every listed file checked; ``label`` becomes ``info['source']``."""
    manifest = _read_manifest(folder)
    _verify_files(folder, manifest)
    mpath = folder / MANIFEST_NAME
    try:
        reg_entry = manifest["regression"]
        regression = RegressionNet(SongUNetConfig.from_dict(reg_entry["config"]),
                                   residual=bool(reg_entry.get("residual", False)))
        reg_file = folder / reg_entry["file"]
        load_state_dict_strict(regression, _load_safetensors(reg_file), str(reg_file))
        diffusion = None
        diff_entry = manifest.get("diffusion")
        if diff_entry is not None:
            diffusion = EDMPrecond(SongUNetConfig.from_dict(diff_entry["config"]), float(diff_entry["sigma_data"]))
            diff_file = folder / diff_entry["file"]
            load_state_dict_strict(diffusion, _load_safetensors(diff_file), str(diff_file))
        data_file = folder / manifest["data"]["file"]
        arrays = {k: v.numpy() for k, v in _load_safetensors(data_file).items()}
        info = {k: str(v) for k, v in dict(manifest.get("info", {})).items()}
        info.update(source=label, layout="stormcast-plugin")
        return StormCastPackage(
            regression=regression.eval(),
            diffusion=None if diffusion is None else diffusion.eval(),
            state_variables=manifest["state_variables"],
            conditioning_variables=manifest["conditioning_variables"],
            invariant_names=manifest["invariant_names"],
            state_mean=arrays["state_mean"],
            state_std=arrays["state_std"],
            conditioning_mean=arrays["conditioning_mean"],
            conditioning_std=arrays["conditioning_std"],
            invariants=arrays["invariants"],
            grid=grid_from_parts(manifest["grid"], arrays, str(mpath)),
            sampler=SamplerOptions.from_dict(manifest["sampler"]),
            info=info,
            local_time=_manifest_bool(manifest, "local_time"),
        )
    except KeyError as err:
        raise PackageFormatError(
            f"{mpath} or {OWN_DATA} lacks the entry {err}; the export is incomplete: write it again"
        ) from err
    except (TypeError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise PackageFormatError(f"{mpath} has an invalid entry: {err}") from err


# --------------------------------------------------------------------------- saving
def _state_tensors(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}


def save_package(pkg: StormCastPackage, out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Export a package in the ``stormcast-plugin`` layout.

    The folder holds ``stormcast_package.json`` (manifest and SHA-256 of
    every other file), ``regression.safetensors``, ``diffusion.safetensors``
    (when the package has a diffusion net), ``data.safetensors`` and a
    ``README.md`` model card. It is built next to ``out_dir`` and renamed into
    place when complete; an existing folder is replaced only after the new
    one is complete.

    Parameters
    ----------
    pkg : StormCastPackage
        The package (validated first).
    out_dir : path-like
        Destination folder.
    overwrite : bool
        Replace an existing ``out_dir``.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    FileExistsError
        When ``out_dir`` exists and ``overwrite`` is False.
    ValueError
        When the package is inconsistent (see :meth:`StormCastPackage.validate`).
    """
    from safetensors.torch import save_file

    from stormcast_plugin import __version__

    pkg.validate()
    target = AtomicDir(out_dir, overwrite)
    try:
        tmp = target.tmp
        save_file(_state_tensors(pkg.regression), str(tmp / OWN_REGRESSION), metadata={"format": "pt"})
        diffusion_entry = None
        if pkg.diffusion is not None:
            save_file(_state_tensors(pkg.diffusion), str(tmp / OWN_DIFFUSION), metadata={"format": "pt"})
            diffusion_entry = {
                "file": OWN_DIFFUSION,
                "config": pkg.diffusion.config.to_dict(),
                "sigma_data": float(pkg.diffusion.sigma_data),
            }
        grid_meta, grid_arrays = grid_to_parts(pkg.grid)
        data = {
            "state_mean": pkg.state_mean,
            "state_std": pkg.state_std,
            "conditioning_mean": pkg.conditioning_mean,
            "conditioning_std": pkg.conditioning_std,
            "invariants": pkg.invariants,
            **grid_arrays,
        }
        save_file(
            {k: torch.from_numpy(np.ascontiguousarray(v)).clone() for k, v in data.items()},
            str(tmp / OWN_DATA),
            metadata={"format": "pt"},
        )
        (tmp / OWN_README).write_text(model_card(pkg), encoding="utf-8")
        files = {
            name: sha256_file(tmp / name)
            for name in (OWN_REGRESSION, OWN_DIFFUSION, OWN_DATA, OWN_README)
            if (tmp / name).is_file()
        }
        info = {k: str(pkg.info.get(k, "")) for k in INFO_KEYS}
        info["layout"] = "stormcast-plugin"
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "created_by": f"stormcast_plugin {__version__}",
            "info": info,
            "state_variables": list(pkg.state_variables),
            "conditioning_variables": list(pkg.conditioning_variables),
            "invariant_names": list(pkg.invariant_names),
            "local_time": pkg.local_time,
            "sampler": pkg.sampler.to_dict(),
            "regression": {"file": OWN_REGRESSION, "config": pkg.regression.config.to_dict(),
                           "residual": bool(getattr(pkg.regression, "residual", False))},
            "diffusion": diffusion_entry,
            "data": {"file": OWN_DATA},
            "grid": grid_meta,
            "files": files,
        }
        text = json.dumps(json_safe(manifest), indent=2, allow_nan=False) + "\n"
        (tmp / MANIFEST_NAME).write_text(text, encoding="utf-8")
        return target.commit()
    except BaseException:
        target.abort()
        raise
