"""StormCast model packages: find, load, validate, export.

A package holds everything a forecast needs besides the input data: the
regression and diffusion networks, the state / conditioning / invariant
variable names, the normalisation statistics, the invariant fields, the
model grid and the diffusion sampler settings.

Two on-disk layouts are read:

``official``
    The Hugging Face repository ``nvidia/stormcast-v1-era5-hrrr``:
    ``StormCastUNet.0.0.mdlus``, ``EDMPrecond.0.0.mdlus``, ``model.yaml``
    and ``metadata.zarr.zip`` (zarr format 2 in a zip). ``model.yaml`` is an
    OmegaConf file; it is parsed with ``yaml.safe_load`` and only the keys
    ``data.invariants`` and ``sampler_args`` are read. Interpolations such as
    ``${eval:...}`` are never evaluated: where they appear in a key that is
    read, loading stops with an error.

``stormcast-plugin``
    The export written by :func:`save_package`: ``stormcast_package.json``
    (manifest with SHA-256 of every file), ``regression.safetensors``,
    ``diffusion.safetensors``, ``data.safetensors`` and a ``README.md``
    model card. Nothing in it is unpickled.

Sources are local folders, ``hf://org/repo[@revision]`` (downloaded with
``huggingface_hub.snapshot_download``, which honours ``HF_HOME``,
``HF_HUB_OFFLINE`` and the hub cache) or earth2studio ``Package`` objects.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions, StormCastNets
from stormcast_plugin.utils.local_time import LOCAL_TIME_CHANNELS
from stormcast_plugin.models.nn.mdlus import CheckpointError, load_mdlus, load_state_dict_strict, write_mdlus
from stormcast_plugin.models.nn.networks import EDMPrecond, RegressionNet
from stormcast_plugin.models.nn.songunet import SongUNetConfig

__all__ = [
    "DEFAULT_REPO",
    "DEFAULT_REVISION",
    "DEFAULT_SOURCE",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "OFFICIAL_FILES",
    "PackageFormatError",
    "PackageNotFoundError",
    "StormCastPackage",
    "load_package",
    "random_package",
    "resolve_package",
    "save_package",
    "write_official_layout",
]

DEFAULT_REPO = "nvidia/stormcast-v1-era5-hrrr"
DEFAULT_REVISION = "6c89a0877a0d6b231033d3b0d8b9828a6f833ed8"
DEFAULT_SOURCE = f"hf://{DEFAULT_REPO}@{DEFAULT_REVISION}"

FORMAT_NAME = "stormcast-plugin-package"
FORMAT_VERSION = 1
MANIFEST_NAME = "stormcast_package.json"

REGRESSION_FILE = "StormCastUNet.0.0.mdlus"
DIFFUSION_FILE = "EDMPrecond.0.0.mdlus"
OFFICIAL_FILES: tuple[str, ...] = ("model.yaml", REGRESSION_FILE, DIFFUSION_FILE, "metadata.zarr.zip")
"""Files that make up the official layout (``config.json`` is optional)."""

_OWN_REGRESSION = "regression.safetensors"
_OWN_DIFFUSION = "diffusion.safetensors"
_OWN_DATA = "data.safetensors"
_OWN_README = "README.md"
_HF_FILES = sorted(
    set(OFFICIAL_FILES)
    | {"config.json", MANIFEST_NAME, _OWN_REGRESSION, _OWN_DIFFUSION, _OWN_DATA, _OWN_README}
)
_LAYOUTS = ("official", "stormcast-plugin")
_GRID_ATTR = "stormcast_plugin_grid"
_INFO_KEYS = ("name", "description", "license", "source", "layout")
_NEEDS = (
    "a StormCast package is either the official layout (model.yaml, StormCastUNet.0.0.mdlus, "
    "EDMPrecond.0.0.mdlus, metadata.zarr.zip) or an export written by save_package "
    f"({MANIFEST_NAME} and the files it lists)"
)


class PackageNotFoundError(FileNotFoundError):
    """A package (or a file it needs) cannot be found or downloaded."""


class PackageFormatError(CheckpointError):
    """A package's files are present but their content is invalid."""


# --------------------------------------------------------------------------- the package
@dataclass
class StormCastPackage:
    """Everything StormCast needs besides the input data.

    Attributes
    ----------
    regression : RegressionNet
        Mean next-state network, input ``cat[state, conditioning, invariants]``.
    diffusion : EDMPrecond or None
        Residual denoiser, condition ``cat[state, regression mean, invariants]``;
        ``None`` for a regression-only package.
    state_variables, conditioning_variables, invariant_names : tuple of str
        Channel names, in network order.
    state_mean, state_std : numpy.ndarray
        float32 ``[C]`` normalisation of the state.
    conditioning_mean, conditioning_std : numpy.ndarray
        float32 ``[Ce]`` normalisation of the conditioning.
    invariants : numpy.ndarray
        float32 ``[Ci, H, W]`` static fields, as the networks see them.
    grid : ModelGrid
        The model grid (``H x W``).
    sampler : SamplerOptions
        Diffusion sampler settings.
    info : dict
        ``name``, ``description``, ``license``, ``source`` and ``layout``
        (``"official"`` or ``"stormcast-plugin"``).
    local_time : bool
        The networks take two more channels after the invariants: cos and sin
        of the local solar time of the input state
        (:func:`~stormcast_plugin.utils.local_time.local_time_channels`).
    """

    regression: RegressionNet
    diffusion: EDMPrecond | None
    state_variables: tuple[str, ...]
    conditioning_variables: tuple[str, ...]
    invariant_names: tuple[str, ...]
    state_mean: np.ndarray
    state_std: np.ndarray
    conditioning_mean: np.ndarray
    conditioning_std: np.ndarray
    invariants: np.ndarray
    grid: Any
    sampler: SamplerOptions = field(default_factory=SamplerOptions)
    info: dict = field(default_factory=dict)
    local_time: bool = False

    def __post_init__(self) -> None:
        self.state_variables = tuple(str(v) for v in self.state_variables)
        self.conditioning_variables = tuple(str(v) for v in self.conditioning_variables)
        self.invariant_names = tuple(str(v) for v in self.invariant_names)
        self.local_time = bool(self.local_time)
        for name in ("state_mean", "state_std", "conditioning_mean", "conditioning_std", "invariants"):
            setattr(self, name, np.ascontiguousarray(np.asarray(getattr(self, name), dtype=np.float32)))
        info = {"name": "stormcast", "description": "", "license": "unknown", "source": "",
                "layout": "stormcast-plugin"}
        info.update(self.info or {})
        self.info = info

    @property
    def shape(self) -> tuple[int, int]:
        """Grid shape ``(H, W)``."""
        return tuple(int(s) for s in self.invariants.shape[-2:])

    @property
    def input_invariant_names(self) -> tuple[str, ...]:
        """Names of the channels after the state and conditioning: invariants, then local time."""
        return self.invariant_names + (LOCAL_TIME_CHANNELS if self.local_time else ())

    def nets(self) -> StormCastNets:
        """The two networks wrapped in a :class:`~stormcast_plugin.models.nn.stormcast_nets.StormCastNets`."""
        return StormCastNets(self.regression, self.diffusion)

    def to(self, device: str | torch.device | None) -> "StormCastPackage":
        """Move the networks to ``device`` (in place) and return ``self``."""
        if device is not None:
            self.regression.to(device)
            if self.diffusion is not None:
                self.diffusion.to(device)
        return self

    def validate(self) -> "StormCastPackage":
        """Check that all parts of the package fit together.

        Returns
        -------
        StormCastPackage
            ``self``, for chaining.

        Raises
        ------
        ValueError
            Naming the inconsistent part, the values found and what was
            expected.
        """
        if not isinstance(self.regression, RegressionNet):
            raise ValueError(
                f"regression is a {type(self.regression).__name__}; expected a "
                "stormcast_plugin.models.nn.RegressionNet (load one with load_mdlus)"
            )
        if self.diffusion is not None and not isinstance(self.diffusion, EDMPrecond):
            raise ValueError(
                f"diffusion is a {type(self.diffusion).__name__}; expected a stormcast_plugin.models.nn.EDMPrecond or None"
            )
        if not isinstance(self.sampler, SamplerOptions):
            raise ValueError(
                f"sampler is a {type(self.sampler).__name__}; expected SamplerOptions "
                "(build one with SamplerOptions.from_dict)"
            )
        layout = self.info.get("layout")
        if layout not in _LAYOUTS:
            raise ValueError(f"info['layout'] is {layout!r}; expected one of {_LAYOUTS}")
        for what, names in (
            ("state", self.state_variables),
            ("conditioning", self.conditioning_variables),
            ("invariant", self.invariant_names),
        ):
            dup = sorted({v for v in names if names.count(v) > 1})
            if dup:
                raise ValueError(f"{what} variable names are duplicated: {dup}; each channel needs a unique name")
        c, ce, ci = len(self.state_variables), len(self.conditioning_variables), len(self.input_invariant_names)
        if c == 0:
            raise ValueError("state_variables is empty; a package needs at least one state variable")
        extra = " (including the 2 local-time channels)" if self.local_time else ""
        _check_stats("state", self.state_mean, self.state_std, c)
        _check_stats("conditioning", self.conditioning_mean, self.conditioning_std, ce)

        rc = self.regression.config
        if rc.out_channels != c:
            raise ValueError(
                f"the regression net predicts {rc.out_channels} channels but the package has {c} state "
                "variables; the variable list does not belong to this checkpoint"
            )
        if rc.in_channels != c + ce + ci:
            raise ValueError(
                f"the regression net takes {rc.in_channels} input channels; the package gives "
                f"{c} state + {ce} conditioning + {ci} invariants{extra} = {c + ce + ci}. "
                "Check the conditioning variables, the invariant names and local_time"
            )
        if self.diffusion is not None:
            dc = self.diffusion.config
            if self.diffusion.img_channels != c:
                raise ValueError(
                    f"the diffusion net denoises {self.diffusion.img_channels} channels; expected the "
                    f"{c} state variables"
                )
            if self.diffusion.condition_channels != 2 * c + ci:
                raise ValueError(
                    f"the diffusion net expects {self.diffusion.condition_channels} condition channels; "
                    f"the package gives 2 x {c} (state, regression mean) + {ci} invariants{extra} = {2 * c + ci}"
                )
        inv = self.invariants
        if inv.ndim != 3 or inv.shape[0] != len(self.invariant_names):
            raise ValueError(
                f"invariants have shape {inv.shape}; expected [{len(self.invariant_names)}, H, W] for the "
                "invariant names "
                f"{list(self.invariant_names)}"
            )
        if not np.isfinite(inv).all():
            raise ValueError("invariants contain NaN or infinite values; fill them before packaging")
        gshape = tuple(int(s) for s in self.grid.shape)
        if tuple(inv.shape[1:]) != gshape:
            raise ValueError(
                f"invariants cover a {tuple(inv.shape[1:])} grid but the package grid "
                f"{getattr(self.grid, 'name', '?')!r} is {gshape}; crop the invariants to the grid"
            )
        for net_name, net in (("regression", self.regression), ("diffusion", self.diffusion)):
            if net is None:
                continue
            try:
                net.config.check_grid(gshape)
            except ValueError as err:
                raise ValueError(f"the {net_name} net cannot run on the package grid: {err}") from err
        return self


def _check_stats(what: str, mean: np.ndarray, std: np.ndarray, n: int) -> None:
    for label, arr in (("mean", mean), ("std", std)):
        if arr.shape != (n,):
            raise ValueError(
                f"{what}_{label} has shape {arr.shape}; expected ({n},), one value per {what} variable"
            )
        if not np.isfinite(arr).all():
            idx = np.nonzero(~np.isfinite(arr))[0][:5].tolist()
            raise ValueError(
                f"{what}_{label} contains NaN or infinite values in channels {idx}; "
                "recompute the statistics over finite data"
            )
    if (std <= 0).any():
        idx = np.nonzero(std <= 0)[0][:5].tolist()
        raise ValueError(
            f"{what}_std must be > 0; channels {idx} have {std[idx].tolist()}. "
            "A constant channel needs a positive std (e.g. 1.0) to be normalised"
        )


# --------------------------------------------------------------------------- resolving
def resolve_package(
    source: Any = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Find (and if needed download) a package folder.

    Parameters
    ----------
    source : str, path-like or earth2studio Package, optional
        A local folder, ``"hf://org/repo"`` or ``"hf://org/repo@revision"``,
        or an earth2studio ``Package``. ``None`` means the official package
        at its pinned revision (:data:`DEFAULT_SOURCE`).
    revision : str, optional
        Hugging Face revision (branch, tag or commit) when ``source`` is
        ``hf://org/repo`` without ``@revision``. Without either, the official
        repository uses :data:`DEFAULT_REVISION` and others ``main``.
    cache_dir : path-like, optional
        Hugging Face cache folder (default: ``$HF_HUB_CACHE`` or
        ``$HF_HOME/hub``).

    Returns
    -------
    Path
        The folder holding the package files.

    Raises
    ------
    PackageNotFoundError
        When the folder does not exist or the download is impossible (offline
        with nothing cached, unknown repository or revision).
    ValueError, TypeError
        For a malformed source.
    """
    if source is None:
        source = DEFAULT_SOURCE
    if not isinstance(source, (str, os.PathLike)) and hasattr(source, "root") and hasattr(source, "resolve"):
        return _resolve_e2s_package(source, revision=revision, cache_dir=cache_dir)
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise TypeError(
            f"package source {source!r} is a {type(source).__name__}; expected a folder path, "
            "'hf://org/repo[@revision]' or an earth2studio Package"
        )
    if source.startswith("hf://"):
        repo_id, rev = _parse_hf(source, revision)
        return _hf_snapshot(repo_id, rev, cache_dir)
    if revision is not None:
        raise ValueError(
            f"revision={revision!r} applies only to 'hf://' sources, not to {source!r}; drop the revision"
        )
    if source.startswith("file://"):
        source = source[len("file://"):]
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", source):
        raise ValueError(
            f"package source {source!r} uses an unsupported scheme; use a local folder, "
            "'hf://org/repo[@revision]', or wrap the URL in an earth2studio Package"
        )
    return _local_dir(Path(source).expanduser())


def _local_dir(path: Path) -> Path:
    if path.is_file() and (path.name in OFFICIAL_FILES or path.name == MANIFEST_NAME):
        path = path.parent
    if not path.exists():
        raise PackageNotFoundError(
            f"package folder {str(path)!r} does not exist; pass an existing folder, "
            f"'hf://org/repo[@revision]' or an earth2studio Package ({_NEEDS})"
        )
    if not path.is_dir():
        raise PackageNotFoundError(f"package source {str(path)!r} is a file, not a folder; {_NEEDS}")
    return path.resolve()


def _parse_hf(source: str, revision: str | None) -> tuple[str, str | None]:
    body = source[len("hf://"):].strip("/")
    rev = None
    if "@" in body:
        body, rev = body.split("@", 1)
        rev = rev.strip("/") or None
    parts = body.split("/")
    if len(parts) != 2 or not all(parts) or parts[0] in ("datasets", "spaces"):
        raise ValueError(
            f"Hugging Face source {source!r} must be 'hf://org/repo' or 'hf://org/repo@revision' "
            "(a model repository, no sub-folder)"
        )
    if rev is not None and revision is not None and rev != revision:
        raise ValueError(
            f"two revisions given: {rev!r} in {source!r} and revision={revision!r}; give only one"
        )
    rev = rev or revision
    if rev is None and body == DEFAULT_REPO:
        rev = DEFAULT_REVISION
    return body, rev


def _download_hint(repo_id: str, revision: str | None) -> str:
    rev = f" --revision {revision}" if revision else ""
    return (
        f"On a machine with internet access run `huggingface-cli download {repo_id}{rev}` "
        "(or `hf download`), then copy its Hugging Face cache (~/.cache/huggingface/hub) here "
        "and point HF_HOME (or HF_HUB_CACHE / cache_dir=) at it; or download the files into a "
        "folder (`--local-dir DIR`) and pass that folder as the package"
    )


def _hf_snapshot(repo_id: str, revision: str | None, cache_dir: Any) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub import errors as hf_errors
    except ImportError as err:  # pragma: no cover - huggingface-hub is a dependency
        raise PackageNotFoundError(
            f"hf://{repo_id} needs the huggingface-hub package: pip install huggingface-hub"
        ) from err
    missing_types = tuple(
        t
        for t in (
            getattr(hf_errors, name, None)
            for name in ("LocalEntryNotFoundError", "OfflineModeIsEnabled", "IncompleteSnapshotError")
        )
        if isinstance(t, type)
    )
    not_found_types = tuple(
        t
        for t in (getattr(hf_errors, name, None) for name in ("RepositoryNotFoundError", "RevisionNotFoundError"))
        if isinstance(t, type)
    )
    where = f"hf://{repo_id}" + (f"@{revision}" if revision else "")
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
            allow_patterns=_HF_FILES,
        )
    except missing_types as err:
        raise PackageNotFoundError(
            f"the StormCast package {where} is not in the Hugging Face cache and cannot be "
            f"downloaded ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            + _download_hint(repo_id, revision)
        ) from err
    except not_found_types as err:
        raise PackageNotFoundError(
            f"{where} does not exist on the Hugging Face Hub ({type(err).__name__}); check the "
            f"repository name and revision (the official package is hf://{DEFAULT_REPO}@{DEFAULT_REVISION})"
        ) from err
    return Path(folder)


def _resolve_e2s_package(package: Any, *, revision: str | None, cache_dir: Any) -> Path:
    root = str(package.root)
    if root.startswith("hf://"):
        repo_id, rev = _parse_hf(root, revision)
        return _hf_snapshot(repo_id, rev, cache_dir)
    if root.startswith("file://"):
        root = root[len("file://"):]
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", root):
        return _local_dir(Path(root).expanduser())
    # Any other file system (ngc://, s3://, ...): fetch through the package
    # itself and gather the files under their own names.
    return _stage_remote(package, cache_dir)


def _stage_remote(package: Any, cache_dir: Any) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(package.root)).strip("_")
    base = Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir()) / "stormcast_plugin"
    stage = base / "staged" / safe
    stage.mkdir(parents=True, exist_ok=True)

    def fetch(name: str) -> bool:
        try:
            local = Path(package.resolve(name))
        except FileNotFoundError:
            return False
        target = stage / name
        if target.exists() or target.is_symlink():
            target.unlink()
        try:
            target.symlink_to(local.resolve())
        except OSError:
            shutil.copy2(local, target)
        return True

    if fetch(MANIFEST_NAME):
        manifest = json.loads((stage / MANIFEST_NAME).read_text())
        names = list(manifest.get("files", {}))
    else:
        names = list(OFFICIAL_FILES)
    missing = [n for n in names if not fetch(n)]
    if missing:
        raise PackageNotFoundError(f"{package.root} lacks {missing}; {_NEEDS}")
    return stage


# --------------------------------------------------------------------------- loading
def load_package(
    source: Any = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> StormCastPackage:
    """Load a StormCast package from a folder, the Hub or an earth2studio Package.

    Parameters
    ----------
    source : str, path-like or earth2studio Package, optional
        See :func:`resolve_package`; ``None`` loads the official package.
    revision, cache_dir
        See :func:`resolve_package`.
    device : str or torch.device, optional
        Where to put the networks (default: CPU).

    Returns
    -------
    StormCastPackage
        Validated, networks in evaluation mode.

    Raises
    ------
    PackageNotFoundError
        When the package or one of its files is missing.
    CheckpointError
        When a file is corrupt, fails its checksum or does not match the rest.
    """
    folder = resolve_package(source, revision=revision, cache_dir=cache_dir)
    label = _source_label(source, folder)
    if (folder / MANIFEST_NAME).is_file():
        pkg = _load_own(folder, label)
    else:
        missing = [f for f in OFFICIAL_FILES if not (folder / f).is_file()]
        if missing:
            present = sorted(p.name for p in folder.iterdir())[:10]
            raise PackageNotFoundError(
                f"{folder} is not a complete StormCast package: missing {missing} "
                f"(found {present}); {_NEEDS}"
            )
        pkg = _load_official(folder, label)
    try:
        pkg.validate()
    except ValueError as err:
        raise PackageFormatError(f"package {label} is inconsistent: {err}") from err
    return pkg.to(device)


def _source_label(source: Any, folder: Path) -> str:
    if source is None:
        return DEFAULT_SOURCE
    if hasattr(source, "root") and not isinstance(source, (str, os.PathLike)):
        return str(source.root)
    if isinstance(source, str) and source.startswith("hf://"):
        return source
    return str(folder)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
        actual = _sha256(folder / name)
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


def _load_own(folder: Path, label: str) -> StormCastPackage:
    manifest = _read_manifest(folder)
    _verify_files(folder, manifest)
    mpath = folder / MANIFEST_NAME
    try:
        reg_entry = manifest["regression"]
        reg_cfg = SongUNetConfig.from_dict(reg_entry["config"])
        regression = RegressionNet(reg_cfg, residual=bool(reg_entry.get("residual", False)))
        reg_file = folder / reg_entry["file"]
        load_state_dict_strict(regression, _load_safetensors(reg_file), str(reg_file))
        diffusion = None
        diff_entry = manifest.get("diffusion")
        if diff_entry is not None:
            diffusion = EDMPrecond(SongUNetConfig.from_dict(diff_entry["config"]), float(diff_entry["sigma_data"]))
            load_state_dict_strict(
                diffusion, _load_safetensors(folder / diff_entry["file"]), str(folder / diff_entry["file"])
            )
        data = _load_safetensors(folder / manifest["data"]["file"])
        arrays = {k: v.numpy() for k, v in data.items()}
        grid = _grid_from_parts(manifest["grid"], arrays, f"{mpath}")
        sampler = SamplerOptions.from_dict(manifest["sampler"])
        info = {k: str(v) for k, v in dict(manifest.get("info", {})).items()}
        info.update(source=label, layout="stormcast-plugin")
        pkg = StormCastPackage(
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
            grid=grid,
            sampler=sampler,
            info=info,
            local_time=_manifest_bool(manifest, "local_time"),
        )
    except KeyError as err:
        raise PackageFormatError(
            f"{mpath} or {_OWN_DATA} lacks the entry {err}; the export is incomplete: write it again"
        ) from err
    except (TypeError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise PackageFormatError(f"{mpath} has an invalid entry: {err}") from err
    return pkg


# ---- official layout
_SAMPLER_KEYS = ("num_steps", "sigma_min", "sigma_max", "rho", "S_churn", "S_min", "S_max", "S_noise")


def _check_no_interpolation(value: Any, where: str, path: Path) -> None:
    if isinstance(value, str) and "${" in value:
        raise PackageFormatError(
            f"{path}: {where} is the OmegaConf interpolation {value!r}, which is not supported "
            "(it is never evaluated); replace it with a literal value"
        )
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_no_interpolation(v, f"{where}.{k}", path)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_no_interpolation(v, f"{where}[{i}]", path)


def _read_model_yaml(path: Path) -> dict:
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise PackageFormatError(f"{path} is not valid YAML ({err})") from err
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise PackageFormatError(f"{path} holds a {type(config).__name__}; expected a YAML mapping")
    return config


def _official_sampler(config: dict, path: Path) -> SamplerOptions:
    args = config.get("sampler_args")
    _check_no_interpolation(args, "sampler_args", path)
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise PackageFormatError(f"{path}: sampler_args is {args!r}; expected a mapping or null")
    unknown = sorted(set(map(str, args)) - set(_SAMPLER_KEYS))
    if unknown:
        # earth2studio passes extra keys along and never uses them; do the same, loudly.
        warnings.warn(
            f"{path}: ignoring sampler_args {unknown}; the sampler uses only {list(_SAMPLER_KEYS)}",
            stacklevel=3,
        )
    values: dict[str, Any] = {}
    for k, v in args.items():
        if k not in _SAMPLER_KEYS:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise PackageFormatError(f"{path}: sampler_args.{k} is {v!r}; expected a number")
        try:
            values[k] = int(v) if k == "num_steps" else float(v)
        except ValueError as err:
            raise PackageFormatError(f"{path}: sampler_args.{k} is {v!r}; expected a number") from err
    try:
        return SamplerOptions.from_dict(values)
    except ValueError as err:
        raise PackageFormatError(f"{path}: sampler_args are invalid: {err}") from err


def _official_invariant_names(config: dict, available: list[str], path: Path) -> list[str]:
    data = config.get("data")
    names = data.get("invariants") if isinstance(data, dict) else None
    _check_no_interpolation(names, "data.invariants", path)
    if names is None:
        return list(available)
    if isinstance(names, str) or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PackageFormatError(f"{path}: data.invariants is {names!r}; expected a list of invariant names")
    missing = [n for n in names if n not in available]
    if missing:
        raise PackageFormatError(
            f"{path}: data.invariants names {missing}, which metadata.zarr.zip lacks (it has {available})"
        )
    return list(names)


def _load_official(folder: Path, label: str) -> StormCastPackage:
    ypath = folder / "model.yaml"
    config = _read_model_yaml(ypath)
    sampler = _official_sampler(config, ypath)
    regression = load_mdlus(folder / REGRESSION_FILE, expected="StormCastUNet")
    diffusion = load_mdlus(folder / DIFFUSION_FILE, expected="EDMPrecond")
    meta = _read_metadata_zip(folder / "metadata.zarr.zip")
    names = _official_invariant_names(config, meta["invariant"], ypath)
    idx = [meta["invariant"].index(n) for n in names]
    invariants = meta["invariants"][idx]
    mpath = folder / "metadata.zarr.zip"
    if meta["grid"] is not None:
        grid = _grid_from_parts(meta["grid"], meta["grid_arrays"], str(mpath))
    else:
        from stormcast_plugin.utils.grid import ModelGrid

        grid = ModelGrid.hrrr()
        if tuple(invariants.shape[1:]) != tuple(grid.shape):
            raise PackageFormatError(
                f"{mpath}: invariants cover a {tuple(invariants.shape[1:])} grid and the file does not "
                f"describe its grid; the official StormCast grid is {tuple(grid.shape)}. Export custom "
                "grids with write_official_layout, which records the grid"
            )
    info = {
        "name": DEFAULT_REPO.split("/")[1],
        "description": "StormCast v1: kilometre-scale HRRR emulator (regression + EDM diffusion) "
        "conditioned on ERA5",
        "license": f"see the model card at https://huggingface.co/{DEFAULT_REPO}",
    }
    extra = config.get("package_info")
    if isinstance(extra, dict):
        info.update({k: str(v) for k, v in extra.items() if k in ("name", "description", "license")})
    info.update(source=label, layout="official")
    return StormCastPackage(
        regression=regression,
        diffusion=diffusion,
        state_variables=meta["variable"],
        conditioning_variables=meta["conditioning_variable"],
        invariant_names=names,
        state_mean=meta["means"],
        state_std=meta["stds"],
        conditioning_mean=meta["conditioning_means"],
        conditioning_std=meta["conditioning_stds"],
        invariants=invariants,
        grid=grid,
        sampler=sampler,
        info=info,
    )


def _read_metadata_zip(path: Path) -> dict[str, Any]:
    import xarray as xr
    import zarr

    try:
        store = zarr.storage.ZipStore(str(path), mode="r")
    except (zipfile.BadZipFile, OSError) as err:
        raise PackageFormatError(f"{path} is not a readable zip ({err}); download it again") from err
    try:
        try:
            ds = xr.open_zarr(store, zarr_format=2, chunks=None)
        except Exception as err:  # zarr/xarray raise many kinds for a bad store
            raise PackageFormatError(f"{path} is not a zarr (format 2) store ({type(err).__name__}: {err})") from err
        with ds:
            needed = ("variable", "conditioning_variable", "means", "stds", "conditioning_means",
                      "conditioning_stds", "invariants")
            missing = [n for n in needed if n not in ds.variables]
            if missing:
                raise PackageFormatError(
                    f"{path} lacks the arrays {missing} (has {sorted(map(str, ds.variables))})"
                )
            inv = ds["invariants"]
            if inv.ndim != 3:
                raise PackageFormatError(f"{path}: invariants has dims {inv.dims}; expected (invariant, y, x)")
            inv_dim = inv.dims[0]
            if inv_dim in ds.variables:
                inv_names = [str(v) for v in ds[inv_dim].values]
            else:
                inv_names = [f"invariant{i}" for i in range(inv.shape[0])]
            out: dict[str, Any] = {
                "variable": [str(v) for v in ds["variable"].values],
                "conditioning_variable": [str(v) for v in ds["conditioning_variable"].values],
                "invariant": inv_names,
                "invariants": np.asarray(inv.values, dtype=np.float32),
            }
            for k in ("means", "stds", "conditioning_means", "conditioning_stds"):
                out[k] = np.asarray(ds[k].values, dtype=np.float32).reshape(-1)
            grid_json = ds.attrs.get(_GRID_ATTR)
            out["grid"] = json.loads(grid_json) if grid_json else None
            out["grid_arrays"] = {
                f"grid.{k}": np.asarray(ds[k].values) for k in ("lat", "lon", "y", "x") if k in ds.variables
            }
    finally:
        store.close()
    return out


# --------------------------------------------------------------------------- grid (de)serialisation
def _grid_to_parts(grid: Any) -> tuple[dict, dict[str, np.ndarray]]:
    """Split ``grid.to_dict()`` into JSON-able metadata and numpy arrays."""
    meta: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for k, v in grid.to_dict().items():
        if k in ("y", "x", "lat", "lon") and isinstance(v, (np.ndarray, list, tuple)):
            arrays[f"grid.{k}"] = np.asarray(v)
            meta[k] = {"array": f"grid.{k}"}
        else:
            meta[k] = v
    return meta, arrays


def _grid_from_parts(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], where: str) -> Any:
    from stormcast_plugin.utils.grid import ModelGrid

    d: dict[str, Any] = {}
    for k, v in meta.items():
        if isinstance(v, Mapping) and set(v) == {"array"}:
            if v["array"] not in arrays:
                raise PackageFormatError(f"{where}: grid field {k!r} refers to the missing array {v['array']!r}")
            d[k] = np.asarray(arrays[v["array"]])
        else:
            d[k] = v
    try:
        return ModelGrid.from_dict(d)
    except (TypeError, ValueError, KeyError) as err:
        raise PackageFormatError(f"{where}: the grid description is invalid ({err})") from err


# --------------------------------------------------------------------------- saving
def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan": float() reads them back
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _state_tensors(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}


class _AtomicDir:
    """Build a folder next to ``out_dir`` and move it in place when complete."""

    def __init__(self, out_dir: str | os.PathLike, overwrite: bool) -> None:
        self.out_dir = Path(out_dir).expanduser().absolute()
        if self.out_dir.exists() and not overwrite:
            raise FileExistsError(
                f"{self.out_dir} already exists; pass overwrite=True to replace it or choose another folder"
            )
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise FileExistsError(f"{self.out_dir} exists and is not a folder; remove it or choose another path")
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.tmp-", dir=self.out_dir.parent))

    def commit(self) -> Path:
        backup = None
        if self.out_dir.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.old-", dir=self.out_dir.parent))
            backup.rmdir()
            os.replace(self.out_dir, backup)
        try:
            os.replace(self.tmp, self.out_dir)
        except BaseException:
            if backup is not None:
                os.replace(backup, self.out_dir)
            raise
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        return self.out_dir

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


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

    pkg.validate()
    target = _AtomicDir(out_dir, overwrite)
    try:
        tmp = target.tmp
        save_file(_state_tensors(pkg.regression), str(tmp / _OWN_REGRESSION), metadata={"format": "pt"})
        diffusion_entry = None
        if pkg.diffusion is not None:
            save_file(_state_tensors(pkg.diffusion), str(tmp / _OWN_DIFFUSION), metadata={"format": "pt"})
            diffusion_entry = {
                "file": _OWN_DIFFUSION,
                "config": pkg.diffusion.config.to_dict(),
                "sigma_data": float(pkg.diffusion.sigma_data),
            }
        grid_meta, grid_arrays = _grid_to_parts(pkg.grid)
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
            str(tmp / _OWN_DATA),
            metadata={"format": "pt"},
        )
        (tmp / _OWN_README).write_text(_model_card(pkg), encoding="utf-8")
        files = {
            name: _sha256(tmp / name)
            for name in (_OWN_REGRESSION, _OWN_DIFFUSION, _OWN_DATA, _OWN_README)
            if (tmp / name).is_file()
        }
        from stormcast_plugin import __version__

        info = {k: str(pkg.info.get(k, "")) for k in _INFO_KEYS}
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
            "regression": {"file": _OWN_REGRESSION, "config": pkg.regression.config.to_dict(),
                           "residual": bool(getattr(pkg.regression, "residual", False))},
            "diffusion": diffusion_entry,
            "data": {"file": _OWN_DATA},
            "grid": grid_meta,
            "files": files,
        }
        text = json.dumps(_json_safe(manifest), indent=2, allow_nan=False)
        (tmp / MANIFEST_NAME).write_text(text + "\n", encoding="utf-8")
        return target.commit()
    except BaseException:
        target.abort()
        raise


def _model_card(pkg: StormCastPackage) -> str:
    info = pkg.info
    grid = pkg.grid
    h, w = (int(s) for s in grid.shape)
    lat, lon = np.asarray(grid.lat), np.asarray(grid.lon)
    rc = pkg.regression.config
    s = pkg.sampler

    def names(seq: Sequence[str]) -> str:
        return ", ".join(f"`{v}`" for v in seq) if seq else "(none)"

    diffusion = (
        f"EDM-preconditioned SongUNet, model_channels={pkg.diffusion.config.model_channels}, "
        f"channel_mult={list(pkg.diffusion.config.channel_mult)}, "
        f"additive_pos_embed={pkg.diffusion.config.additive_pos_embed}, "
        f"sigma_data={float(pkg.diffusion.sigma_data):g}"
        + (", residual scale per channel (the sampled residual is multiplied by it): "
           + ", ".join(f"{v} {float(r):.3g}" for v, r in zip(pkg.state_variables, pkg.diffusion.residual_scale))
           if pkg.diffusion.has_residual_scale else "")
        if pkg.diffusion is not None
        else "none (regression-only package)"
    )
    regression_form = ""
    if getattr(pkg.regression, "residual", False):
        regression_form = "; predicts the hourly change, x(t) + s * F(...)"
        if bool(torch.any(pkg.regression.tendency_scale != 1)):
            regression_form += ", with s per channel: " + ", ".join(
                f"{v} {float(r):.3g}" for v, r in zip(pkg.state_variables, pkg.regression.tendency_scale))
    memory = (f"\nEach member's initial noise is correlated from hour to hour (AR(1), e-folding time "
              f"{s.noise_memory_h:g} h)." if s.noise_memory_h > 0 else "")
    local_time = ("\n- Local time (2): `cos_local_time`, `sin_local_time` of the input time, after the invariants"
                  if pkg.local_time else "")
    return f"""# {info.get('name', 'stormcast')}

{info.get('description', '') or 'A StormCast model package.'}

StormCast emulates the 3 km NOAA HRRR model one hour at a time: a regression
U-Net predicts the mean next state from the current state, the ERA5-like
conditioning and the invariants; an EDM diffusion U-Net samples the residual.
This folder is a `stormcast_plugin` export (format {FORMAT_NAME} v{FORMAT_VERSION}).

## Variables

- State ({len(pkg.state_variables)}): {names(pkg.state_variables)}
- Conditioning ({len(pkg.conditioning_variables)}): {names(pkg.conditioning_variables)}
- Invariants ({len(pkg.invariant_names)}): {names(pkg.invariant_names)}{local_time}

## Grid

`{getattr(grid, 'name', 'grid')}`: {h} x {w} points, latitude
{float(lat.min()):.2f} to {float(lat.max()):.2f}, longitude {float(lon.min()):.2f} to {float(lon.max()):.2f}.

## Networks

- Regression: SongUNet, model_channels={rc.model_channels}, channel_mult={list(rc.channel_mult)},
  num_blocks={rc.num_blocks}, {rc.in_channels} -> {rc.out_channels} channels{regression_form}
- Diffusion: {diffusion}

## Sampler

EDM stochastic Heun: num_steps={s.num_steps}, sigma_min={s.sigma_min:g}, sigma_max={s.sigma_max:g},
rho={s.rho:g}, S_churn={s.S_churn:g}, S_min={s.S_min:g}, S_max={s.S_max:g}, S_noise={s.S_noise:g}.{memory}

## Usage

```python
from stormcast_plugin import StormCast

model = StormCast.load_model("path/to/this/folder")
```

or `stormcast_plugin.load_package("path/to/this/folder")` for the raw parts.
Every file's SHA-256 is listed in `{MANIFEST_NAME}` and checked on load, so edit
nothing here by hand.

## Source and license

- Source: {info.get('source', '') or 'unknown'}
- License: {info.get('license', '') or 'unknown'}
"""


def write_official_layout(
    pkg: StormCastPackage,
    out_dir: str | os.PathLike,
    *,
    mdlus_format: str = "zip",
    overwrite: bool = False,
) -> Path:
    """Write a package in the official (PhysicsNeMo / earth2studio) layout.

    The folder gets ``StormCastUNet.0.0.mdlus``, ``EDMPrecond.0.0.mdlus``,
    ``model.yaml`` (plain YAML, no interpolations), ``metadata.zarr.zip``
    (zarr format 2 in a zip, the official array names) and ``config.json``.
    The grid is recorded in ``metadata.zarr.zip`` (``lat``/``lon``/``y``/``x``
    and an attribute) so that custom grids load back exactly.

    Parameters
    ----------
    pkg : StormCastPackage
        The package; it needs a diffusion net.
    out_dir : path-like
        Destination folder (written atomically like :func:`save_package`).
    mdlus_format : str
        ``"zip"`` (PhysicsNeMo >= 2.2) or ``"tar"`` (older readers).
    overwrite : bool
        Replace an existing ``out_dir``.

    Returns
    -------
    Path
        ``out_dir``.
    """
    import yaml

    pkg.validate()
    if pkg.diffusion is None:
        raise ValueError(
            "the official layout needs a diffusion net (EDMPrecond.0.0.mdlus) but the package has none; "
            "use save_package for regression-only packages"
        )
    if pkg.local_time:
        raise ValueError(
            "the package's networks take local-time input channels, which the official layout cannot "
            "describe (its readers would feed them the wrong channels); use save_package"
        )
    if pkg.sampler.noise_memory_h > 0:
        raise ValueError(
            f"the package's sampler has noise_memory_h = {pkg.sampler.noise_memory_h:g} h, which the official "
            "layout cannot record; set it to 0 (sampler.noise_memory_h) or use save_package"
        )
    if mdlus_format not in ("zip", "tar"):
        raise ValueError(f"mdlus_format {mdlus_format!r} must be 'zip' or 'tar'")
    target = _AtomicDir(out_dir, overwrite)
    try:
        tmp = target.tmp
        write_mdlus(pkg.regression, tmp / REGRESSION_FILE, fmt=mdlus_format)
        write_mdlus(pkg.diffusion, tmp / DIFFUSION_FILE, fmt=mdlus_format)
        config = {
            "package_info": {k: str(pkg.info.get(k, "")) for k in ("name", "description", "license")},
            "data": {"invariants": list(pkg.invariant_names)},
            "sampler_args": {k: v for k, v in pkg.sampler.to_dict().items() if k in _SAMPLER_KEYS},
        }
        (tmp / "model.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        _write_metadata_zip(pkg, tmp / "metadata.zarr.zip", tmp)
        (tmp / "config.json").write_text("{}\n", encoding="utf-8")
        return target.commit()
    except BaseException:
        target.abort()
        raise


def _write_metadata_zip(pkg: StormCastPackage, path: Path, workdir: Path) -> None:
    import xarray as xr

    grid = pkg.grid
    grid_meta, _ = _grid_to_parts(grid)
    lat, lon = np.asarray(grid.lat, dtype=np.float64), np.asarray(grid.lon, dtype=np.float64)
    ds = xr.Dataset(
        {
            "means": ("variable", pkg.state_mean),
            "stds": ("variable", pkg.state_std),
            "conditioning_means": ("conditioning_variable", pkg.conditioning_mean),
            "conditioning_stds": ("conditioning_variable", pkg.conditioning_std),
            "invariants": (("invariant", "y", "x"), pkg.invariants),
        },
        coords={
            "variable": np.array(pkg.state_variables, dtype=str),
            "conditioning_variable": np.array(pkg.conditioning_variables, dtype=str),
            "invariant": np.array(pkg.invariant_names, dtype=str),
            "y": np.asarray(grid.y, dtype=np.float64),
            "x": np.asarray(grid.x, dtype=np.float64),
            "lat": (("y", "x"), lat),
            "lon": (("y", "x"), lon),
        },
    )
    # The grid fields that are arrays are stored as the lat/lon/y/x arrays.
    meta = {}
    for k, v in grid_meta.items():
        if isinstance(v, Mapping) and set(v) == {"array"}:
            if k not in ("lat", "lon", "y", "x"):
                raise ValueError(f"grid field {k!r} is an array that the official layout cannot store")
            v = {"array": f"grid.{k}"}
        meta[k] = v
    ds.attrs[_GRID_ATTR] = json.dumps(_json_safe(meta))
    # zarr's ZipStore writes metadata keys more than once (duplicate zip
    # entries); write a directory store and zip it instead.
    store_dir = workdir / ".metadata.zarr"
    ds.to_zarr(str(store_dir), mode="w", zarr_format=2, consolidated=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for root, dirs, files in os.walk(store_dir):
            dirs.sort()
            for name in sorted(files):
                full = Path(root) / name
                zf.write(full, full.relative_to(store_dir).as_posix())
    shutil.rmtree(store_dir)


# --------------------------------------------------------------------------- random packages
_G = 9.80665


def _std_atmosphere_height(p_hpa: float) -> float:
    """Standard-atmosphere height (m) of the pressure level ``p_hpa``."""
    return 44330.8 * (1.0 - (p_hpa / 1013.25) ** 0.190263)


def _hybrid_height(level: int) -> float:
    """Rough height (m) of HRRR hybrid level ``level`` (1 ~ 10 m, 30 ~ 7 km)."""
    return 10.0 * level ** 1.93


def _variable_stats(name: str) -> tuple[float, float]:
    """Rough physical mean and std of a variable, by earth2studio lexicon name."""
    fixed = {
        "u10m": (0.0, 6.0), "v10m": (0.0, 6.0), "t2m": (288.0, 10.0), "d2m": (280.0, 9.0),
        "msl": (101325.0, 1000.0), "sp": (97000.0, 3000.0), "tcwv": (25.0, 12.0),
        "refc": (0.0, 12.0), "q2m": (0.008, 0.005), "r2m": (65.0, 20.0), "tp": (0.0005, 0.002),
    }
    if name in fixed:
        return fixed[name]
    m = re.fullmatch(r"([A-Za-z]+)(\d+)(hl)?", name)
    if m is None:
        return 0.0, 1.0
    var, level, hybrid = m.group(1), int(m.group(2)), m.group(3) is not None
    height = _hybrid_height(level) if hybrid else _std_atmosphere_height(float(level))
    if var in ("u", "v"):
        return 0.0, 5.0 + 0.0015 * height
    if var == "t":
        return max(288.0 - 0.0065 * height, 217.0), 10.0
    if var == "q":
        mean = 0.009 * math.exp(-height / 2500.0)
        return mean, 0.6 * mean + 1e-6
    if var == "Z":
        return height, 40.0 + 0.01 * height
    if var == "z":
        return _G * height, _G * (40.0 + 0.01 * height)
    if var == "p":
        mean = 101325.0 * math.exp(-height / 8000.0)
        return mean, 0.03 * mean
    if var == "r":
        return 60.0, 25.0
    if var == "w":
        return 0.0, 0.5
    return 0.0, 1.0


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, waves: int = 4) -> np.ndarray:
    """A smooth random field with zero mean and unit amplitude."""
    h, w = shape
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    f = np.zeros(shape)
    for _ in range(waves):
        ky, kx = rng.uniform(0.5, 2.5, size=2)
        py, px = rng.uniform(0, 2 * np.pi, size=2)
        f += rng.normal() * np.sin(2 * np.pi * ky * yy + py) * np.cos(2 * np.pi * kx * xx + px)
    f -= f.mean()
    return f / (np.abs(f).max() + 1e-12)


def random_package(
    state_variables: Sequence[str],
    conditioning_variables: Sequence[str],
    invariant_names: Sequence[str],
    grid: Any,
    *,
    model_channels: int = 16,
    channel_mult: Sequence[int] = (1, 2, 2),
    num_blocks: int = 1,
    seed: int = 0,
    additive_pos_embed: bool = False,
    with_diffusion: bool = True,
    local_time: bool = False,
) -> StormCastPackage:
    """A small randomly initialised package (tests and demos; not a forecast model).

    Statistics are rough physical magnitudes chosen from the variable names
    (temperatures near 280 K, winds 0 +- 8 m/s, pressures, geopotential by
    level, ...); unknown names get mean 0 and std 1. The invariants are
    smooth fields: ``lsm`` is 0/1, ``orography`` is positive (in km), others
    have zero mean. Every network parameter is perturbed with seeded noise so
    that the zero-initialised output layers give non-trivial outputs.

    Parameters
    ----------
    state_variables, conditioning_variables, invariant_names : sequence of str
        Channel names.
    grid : ModelGrid
        The grid; its sides must be multiples of ``2 ** (len(channel_mult) - 1)``.
    model_channels, channel_mult, num_blocks, additive_pos_embed
        Network size (see :class:`~stormcast_plugin.models.nn.SongUNetConfig`).
    seed : int
        Seeds weights, statistics and invariants.
    with_diffusion : bool
        Include the diffusion net.
    local_time : bool
        Networks that also take the two local-time channels.

    Returns
    -------
    StormCastPackage
    """
    state_variables = tuple(str(v) for v in state_variables)
    conditioning_variables = tuple(str(v) for v in conditioning_variables)
    invariant_names = tuple(str(v) for v in invariant_names)
    c, ce, ci = len(state_variables), len(conditioning_variables), len(invariant_names)
    if c == 0:
        raise ValueError("state_variables is empty; give at least one state variable name")
    ct = ci + (len(LOCAL_TIME_CHANNELS) if local_time else 0)
    shape = tuple(int(s) for s in grid.shape)
    common = dict(
        img_resolution=shape,
        model_channels=int(model_channels),
        channel_mult=tuple(channel_mult),
        num_blocks=int(num_blocks),
        attn_resolutions=(),
    )
    reg_cfg = SongUNetConfig(in_channels=c + ce + ct, out_channels=c, embedding_type="zero", **common)
    diff_cfg = SongUNetConfig(
        in_channels=3 * c + ct, out_channels=c, embedding_type="positional",
        additive_pos_embed=bool(additive_pos_embed), **common,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        regression = RegressionNet(reg_cfg)
        diffusion = EDMPrecond(diff_cfg) if with_diffusion else None
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for net in (regression, diffusion):
            if net is None:
                continue
            for p in net.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))

    def stats(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        pairs = [_variable_stats(n) for n in names]
        mean = np.array([m for m, _ in pairs], dtype=np.float32)
        std = np.array([s for _, s in pairs], dtype=np.float32)
        return mean, std

    rng = np.random.default_rng(seed)
    invariants = np.zeros((ci, *shape), dtype=np.float32)
    for i, name in enumerate(invariant_names):
        f = _smooth_field(shape, rng)
        if name == "lsm":
            invariants[i] = (f > -0.2).astype(np.float32)
        elif name in ("orography", "orog", "z_sfc", "geopotential_surface"):
            invariants[i] = 1.5 * (f - f.min()) / (f.max() - f.min() + 1e-12) + 0.05
        else:
            invariants[i] = f
    state_mean, state_std = stats(state_variables)
    cond_mean, cond_std = stats(conditioning_variables)
    pkg = StormCastPackage(
        regression=regression.eval(),
        diffusion=None if diffusion is None else diffusion.eval(),
        state_variables=state_variables,
        conditioning_variables=conditioning_variables,
        invariant_names=invariant_names,
        state_mean=state_mean,
        state_std=state_std,
        conditioning_mean=cond_mean,
        conditioning_std=cond_std,
        invariants=invariants,
        grid=grid,
        sampler=SamplerOptions(),
        info={
            "name": "stormcast-random",
            "description": "Randomly initialised StormCast networks (for tests and demos); "
            "the output is not a weather forecast",
            "license": "Apache-2.0",
            "source": f"random_package(seed={seed})",
            "layout": "stormcast-plugin",
        },
        local_time=local_time,
    )
    return pkg.validate()
