"""File plumbing shared by both package layouts.

Atomic folder writes, SHA-256 of files, JSON-safe values and the
(de)serialisation of the model grid.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from stormcast_plugin.package.spec import PackageFormatError


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as strings and numpy scalars as Python ones."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan": float() reads them back
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


# --------------------------------------------------------------------------- grid (de)serialisation
GRID_ARRAYS = ("y", "x", "lat", "lon")


def grid_to_parts(grid: Any) -> tuple[dict, dict[str, np.ndarray]]:
    """Split ``grid.to_dict()`` into JSON-able metadata and numpy arrays (``grid.y`` ...)."""
    meta: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for k, v in grid.to_dict().items():
        if k in GRID_ARRAYS and isinstance(v, (np.ndarray, list, tuple)):
            arrays[f"grid.{k}"] = np.asarray(v)
            meta[k] = {"array": f"grid.{k}"}
        else:
            meta[k] = v
    return meta, arrays


def grid_from_parts(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], where: str) -> Any:
    """Inverse of :func:`grid_to_parts`; ``where`` names the file in errors."""
    from stormcast_plugin.utils.grid import ModelGrid

    if not isinstance(meta, Mapping):
        raise PackageFormatError(f"{where}: the grid description is a {type(meta).__name__}; expected a mapping")
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


# --------------------------------------------------------------------------- atomic folders
class AtomicDir:
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
        """Move the complete folder to ``out_dir``, replacing an old one only now."""
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
        """Remove the unfinished folder."""
        shutil.rmtree(self.tmp, ignore_errors=True)
