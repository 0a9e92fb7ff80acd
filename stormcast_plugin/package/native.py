"""This project's own package layout (``stormcast-plugin``): load and save with checksums.

An export holds ``stormcast_package.json`` (the manifest: names, network
configurations, grid, sampler, and the SHA-256 of every data file),
``regression.safetensors``, ``diffusion.safetensors`` (when there is a
diffusion net), ``data.safetensors`` (statistics, invariants, grid arrays),
a ``README.md`` model card and ``stormcast_package.sha256``, a ``sha256sum``
list that covers the manifest and every other file (check a copy with
``sha256sum -c stormcast_package.sha256``). Nothing in it is unpickled.

What loading checks:

- every file the loader reads is named by a bare file name (no folder part,
  not absolute), so it lies in the package folder, and a checksum covers it;
- with ``stormcast_package.sha256`` (exports from this version on): the
  manifest and every listed file match their SHA-256, and the manifest's own
  checksum map agrees with the list;
- without it (older exports, such as the bundled demo model): every file the
  manifest lists matches its SHA-256, but nothing covers the manifest
  itself, so an edit of the manifest (say, two variable names swapped) goes
  unnoticed. Re-export such a package with :func:`save_package` to cover it.

Checksums detect damaged, partly copied or edited packages; they are no
signature: whoever can rewrite every file can rewrite the list as well.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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
    CHECKSUM_NAME,
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
    is_plain_name,
    json_safe,
    read_limited,
    sha256_file,
)

__all__ = ["load_native", "read_manifest", "save_package"]

_MAX_MANIFEST_BYTES = 1 << 22  # names, configurations and a grid description: a few kB
_MAX_CHECKSUM_BYTES = 1 << 16
_CHECKSUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------- checksums
def _read_checksum_list(folder: Path) -> dict[str, str] | None:
    """The ``{name: sha256}`` of ``stormcast_package.sha256``; None when the export predates it."""
    path = folder / CHECKSUM_NAME
    if not os.path.lexists(path):
        return None
    data = read_limited(path, _MAX_CHECKSUM_BYTES)
    sums: dict[str, str] = {}
    for i, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        m = _CHECKSUM_LINE.match(line)
        if not line.strip():
            continue
        if m is None or not is_plain_name(m.group(2)):
            raise PackageFormatError(
                f"{path} line {i} is {line[:120]!r}; expected '<sha256>  <file name>' naming a file beside it. "
                "The list is damaged: export the package again"
            )
        if m.group(2) in sums:
            raise PackageFormatError(f"{path} lists {m.group(2)!r} twice; export the package again")
        sums[m.group(2)] = m.group(1)
    if MANIFEST_NAME not in sums:
        raise PackageFormatError(f"{path} does not cover {MANIFEST_NAME}; export the package again")
    return sums


def _mismatch(path: Path, actual: str, expected: str, recorded_in: str) -> CheckpointError:
    return CheckpointError(
        f"checksum mismatch for {path}: sha256 {actual} but {recorded_in} records {expected}. "
        "The file was modified or damaged: copy or export the package again"
    )


def _verify(folder: Path, sums: Mapping[str, str], recorded_in: str) -> None:
    missing = [n for n in sums if not (folder / n).is_file()]
    if missing:
        raise PackageNotFoundError(f"{folder} lacks {missing}, listed in {recorded_in}; copy the whole package folder")
    for name, expected in sums.items():
        actual = sha256_file(folder / name)
        if actual != expected:
            raise _mismatch(folder / name, actual, expected, recorded_in)


# --------------------------------------------------------------------------- loading
def read_manifest(folder: Path, sums: Mapping[str, str] | None = None) -> dict:
    """The manifest in ``folder``, checked against ``sums[MANIFEST_NAME]`` when given; its file names are bare."""
    path = folder / MANIFEST_NAME
    raw = read_limited(path, _MAX_MANIFEST_BYTES)
    if sums is not None:  # check the very bytes that are parsed
        actual = hashlib.sha256(raw).hexdigest()
        if actual != sums[MANIFEST_NAME]:
            raise _mismatch(path, actual, sums[MANIFEST_NAME], CHECKSUM_NAME)
    try:
        manifest = json.loads(raw.decode("utf-8"))
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
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise PackageFormatError(f"{path} has no 'files' checksum map; write the export again")
    bad = [n for n, h in files.items() if not is_plain_name(n) or n in (MANIFEST_NAME, CHECKSUM_NAME)
           or not isinstance(h, str) or not _HEX.match(h)]
    if bad:
        raise PackageFormatError(
            f"{path} lists {bad[:5]} in 'files'; each entry must be a file name beside the manifest with "
            "its sha256 (64 hex digits). The manifest is damaged: write the export again"
        )
    return manifest


def _covered(folder: Path, name: Any, covered: Mapping[str, str], what: str) -> Path:
    """``folder / name`` for a file the manifest names, refused unless inside the folder and checksummed."""
    where = f"{folder / MANIFEST_NAME}: {what}"
    if not is_plain_name(name):
        raise PackageFormatError(
            f"{where} is {name!r}, which is not a file name inside the package folder; a package reads only "
            "files beside its manifest"
        )
    if name not in covered:
        raise PackageFormatError(
            f"{where} is {name!r}, which no checksum covers (covered: {sorted(covered)}); the package reads "
            "only checksummed files: export it again"
        )
    return folder / name


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
    """Read the export in ``folder`` (checked as the module docstring says); ``label`` becomes ``info['source']``."""
    sums = _read_checksum_list(folder)
    manifest = read_manifest(folder, sums)
    files = manifest["files"]
    if sums is None:
        covered, recorded_in = files, MANIFEST_NAME
    else:
        disagree = sorted(n for n, h in files.items() if sums.get(n) != h)
        if disagree:
            raise PackageFormatError(
                f"{folder / MANIFEST_NAME} and {CHECKSUM_NAME} record different checksums for {disagree}; "
                "export the package again"
            )
        covered = {n: h for n, h in sums.items() if n != MANIFEST_NAME}
        recorded_in = CHECKSUM_NAME
    _verify(folder, covered, recorded_in)
    mpath = folder / MANIFEST_NAME
    try:
        reg_entry = manifest["regression"]
        regression = RegressionNet(SongUNetConfig.from_dict(reg_entry["config"]),
                                   residual=bool(reg_entry.get("residual", False)))
        reg_file = _covered(folder, reg_entry["file"], covered, "regression.file")
        load_state_dict_strict(regression, _load_safetensors(reg_file), str(reg_file))
        diffusion = None
        diff_entry = manifest.get("diffusion")
        if diff_entry is not None:
            diffusion = EDMPrecond(SongUNetConfig.from_dict(diff_entry["config"]), float(diff_entry["sigma_data"]))
            diff_file = _covered(folder, diff_entry["file"], covered, "diffusion.file")
            load_state_dict_strict(diffusion, _load_safetensors(diff_file), str(diff_file))
        data_file = _covered(folder, manifest["data"]["file"], covered, "data.file")
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
    every data file), ``regression.safetensors``, ``diffusion.safetensors``
    (when the package has a diffusion net), ``data.safetensors``, a
    ``README.md`` model card and ``stormcast_package.sha256`` (SHA-256 of the
    manifest and of every other file). It is built next to ``out_dir`` and
    renamed into place when complete; an existing folder is replaced only
    after the new one is complete. The folder and its files get the usual
    permissions (``0o777`` / ``0o666`` less the umask).

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
        When the package is inconsistent (see :meth:`StormCastPackage.validate`)
        or a network has NaN or infinite weights.
    """
    from safetensors.torch import save_file

    from stormcast_plugin import __version__

    pkg.validate().check_finite_weights()
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
        sums = {**files, MANIFEST_NAME: sha256_file(tmp / MANIFEST_NAME)}
        listing = "".join(f"{sums[name]}  {name}\n" for name in sorted(sums))
        (tmp / CHECKSUM_NAME).write_text(listing, encoding="utf-8")
        return target.commit()
    except BaseException:
        target.abort()
        raise
