"""File plumbing shared by both package layouts.

Atomic folder writes with the usual permissions, SHA-256 of files, the
file-name rule that keeps a package inside its folder, JSON-safe values and
the (de)serialisation of the model grid.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from stormcast_plugin.io.replace import PACKAGE, check_replaceable
from stormcast_plugin.package.spec import PackageFormatError, PackageNotFoundError

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


def is_plain_name(name: Any) -> bool:
    """True when ``name`` is a bare file name: no folder part, not absolute, not hidden, no ``..``."""
    return isinstance(name, str) and len(name) <= 255 and bool(_PLAIN_NAME.match(name)) and ".." not in name


def read_limited(path: Path, limit: int) -> bytes:
    """The bytes of a small package file, refused when it holds more than ``limit`` bytes."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as err:
        raise PackageNotFoundError(f"{path} cannot be read ({err})") from err
    if len(data) > limit:
        raise PackageFormatError(f"{path} is larger than {limit} bytes, too large for a package's {path.name}; "
                                 "the package is damaged: download or export it again")
    return data


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
def _umask() -> int:
    # /proc tells the umask without changing it (os.umask would, for every thread).
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class AtomicDir:
    """Build a folder next to ``out_dir`` and move it in place when complete.

    The finished folder gets the permissions of a folder made by ``mkdir``
    and files made by ``open`` (``0o777`` / ``0o666`` less the umask), whatever
    the writers inside used, so that other users can read an export.
    """

    def __init__(self, out_dir: str | os.PathLike, overwrite: bool) -> None:
        self.out_dir = Path(out_dir).expanduser().absolute()
        # only a package this package wrote is ever replaced; never the current folder or its parents
        check_replaceable(self.out_dir, [PACKAGE], overwrite=overwrite)
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self._fresh("tmp")
        self.tmp.mkdir(mode=0o700)

    def _fresh(self, kind: str) -> Path:
        # Unpredictable sibling name, so that two writers never share a folder.
        while True:
            path = self.out_dir.parent / f".{self.out_dir.name}.{kind}-{secrets.token_hex(6)}"
            if not os.path.lexists(path):
                return path

    def _publish_modes(self) -> None:
        mask = _umask()
        for root, dirs, files in os.walk(self.tmp):
            for name in files:
                path = os.path.join(root, name)
                if stat.S_ISREG(os.lstat(path).st_mode):
                    os.chmod(path, 0o666 & ~mask)
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o777 & ~mask)
        os.chmod(self.tmp, 0o777 & ~mask)

    def commit(self) -> Path:
        """Move the complete folder to ``out_dir``, replacing an old one only now."""
        self._publish_modes()
        backup = None
        if self.out_dir.exists():
            backup = self._fresh("old")
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
