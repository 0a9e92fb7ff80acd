"""Writing outputs without losing what was there.

Every command that writes a forecast store, a dataset store or a model
package goes through :func:`replacing`:

* an existing output is replaced only when ``overwrite`` is set **and** it is
  something this package wrote, recognised by its marker (a forecast store's
  ``stormcast_forecast`` attribute, a dataset store's ``format`` attribute, a
  package's ``stormcast_package.json``, the official layout's files). The
  current folder, any of its parents, the user's home, a folder holding
  anything else and the inputs being read are never replaced;
* the new output is written beside the old one (``.NAME.partial-PID``) and
  swapped in only when it is complete, so a failed or killed run leaves the
  old output untouched;
* a lock file beside the output (``.NAME.lock``, held with ``flock``) makes a
  second writer of the same path fail at once with "another run is writing".

Only :func:`replacing`, :func:`check_replaceable` and :class:`OutputError`
are public.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

__all__ = ["FORECAST", "DATASET", "PACKAGE", "OutputError", "check_replaceable", "output_kind", "replacing"]

FORECAST = "forecast store"
DATASET = "dataset store"
PACKAGE = "model package"

FORECAST_MARKER = "stormcast_forecast"
"""Attribute set on every forecast store this package writes."""

_OFFICIAL_FILES = {"StormCastUNet.0.0.mdlus", "EDMPrecond.0.0.mdlus", "model.yaml", "metadata.zarr.zip",
                   "config.json", "README.md"}


class OutputError(FileExistsError):
    """An output path that may not be written or replaced."""


def _zarr_attrs(path: Path) -> dict:
    """Root attributes of a zarr store (format 2 or 3) read as JSON, or {}."""
    for name, key in (("zarr.json", "attributes"), (".zattrs", None)):
        f = path / name
        if f.is_file():
            try:
                meta = json.loads(f.read_text())
            except (OSError, ValueError):
                return {}
            attrs = meta.get(key, {}) if key else meta
            return attrs if isinstance(attrs, dict) else {}
    return {}


def _netcdf_attrs(path: Path) -> dict:
    try:
        import netCDF4

        with netCDF4.Dataset(path, "r") as ds:
            return {k: ds.getncattr(k) for k in ds.ncattrs()}
    except Exception:  # noqa: BLE001 - anything unreadable is simply not ours
        return {}


def _is_forecast(attrs: dict) -> bool:
    # stores written before the marker carry the run's bookkeeping attributes
    return bool(attrs.get(FORECAST_MARKER)) or {"completed_lead_hours", "members", "model"} <= set(attrs)


def output_kind(path: str | os.PathLike) -> str | None:
    """What this package wrote at ``path`` (:data:`FORECAST`, :data:`DATASET`
    or :data:`PACKAGE`), or None when it is not recognisably ours."""
    path = Path(path)
    if path.is_file():
        return FORECAST if path.suffix in (".nc", ".nc4") and _is_forecast(_netcdf_attrs(path)) else None
    if not path.is_dir():
        return None
    if (path / "stormcast_package.json").is_file():
        return PACKAGE
    names = {p.name for p in path.iterdir()}
    if names and names <= _OFFICIAL_FILES and "model.yaml" in names:
        return PACKAGE
    attrs = _zarr_attrs(path)
    if attrs.get("format") == "stormcast-dataset":
        return DATASET
    if _is_forecast(attrs):
        return FORECAST
    return None


def _protected(path: Path) -> str | None:
    """Why ``path`` may never be replaced, or None."""
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        return "it is the current folder or one of its parents"
    if path == Path.home().resolve() or path == Path(path.anchor):
        return "it is your home folder or a file-system root"
    return None


def check_replaceable(path: str | os.PathLike, kinds: Iterable[str], *, overwrite: bool,
                      reading: Iterable[str | os.PathLike] = ()) -> Path:
    """Check, before any work, that ``path`` may be written.

    Parameters
    ----------
    path
        The output to write.
    kinds
        What the output is allowed to replace (for example ``[FORECAST]``).
    overwrite
        The user's ``--overwrite``.
    reading
        Inputs of the same run (a package, a store): the output may be
        neither one of them, nor inside one, nor contain one.

    Returns
    -------
    pathlib.Path
        The resolved output path.

    Raises
    ------
    OutputError
        Naming the path, why it may not be written and what to do.
    """
    kinds = tuple(kinds)
    out = Path(path).expanduser().resolve()
    why = _protected(out)
    if why is not None:
        raise OutputError(f"refusing to write {out}: {why}; name a new file or folder for --out")
    for src in reading:
        if src is None or "://" in str(src):
            continue
        src = Path(src).expanduser().resolve()
        if out == src or src in out.parents or out in src.parents:
            raise OutputError(f"--out {path} is (or holds, or lies inside) the input {src} this run reads; "
                              "write to another path")
    if not out.exists() and not out.is_symlink():
        return out
    if not overwrite:
        raise OutputError(f"{out} already exists; choose another --out or pass --overwrite (overwrite=True in "
                          "Python) to replace it")
    kind = output_kind(out)
    if kind not in kinds:
        what = f"a {kind}" if kind else "not something stormcast wrote (no forecast, dataset or package marker)"
        raise OutputError(f"--overwrite refuses to replace {out}: it is {what}, and this run writes a "
                          f"{' or '.join(kinds)}. Move it away yourself or choose another --out")
    return out


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale(out: Path) -> None:
    """Remove partial outputs beside ``out`` left by killed runs."""
    prefix = f".{out.name}.partial-"
    for p in out.parent.glob(prefix + "*"):
        pid = p.name[len(prefix):].split(".")[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            _remove(p)


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    import fcntl

    lock_path = out.parent / f".{out.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(f"another run is writing {out}; wait for it to finish or choose another "
                                  "--out") from None
            raise
        yield
    finally:
        os.close(fd)  # closing releases the lock; the (empty) lock file stays, harmlessly


@contextlib.contextmanager
def replacing(path: str | os.PathLike, kinds: Iterable[str], *, overwrite: bool,
              reading: Iterable[str | os.PathLike] = (),
              keep_partial: bool | Callable[[Path], bool] = False,
              in_place_when_new: bool = False) -> Iterator[Path]:
    """Write an output beside ``path`` and swap it in when complete.

    Checks ``path`` with :func:`check_replaceable`, takes the output's lock,
    and yields a fresh sibling path to write to. On success the new output
    replaces the old one (which is deleted only then). On an exception the
    old output is left untouched; the new one is deleted, except that with
    ``keep_partial`` (True, or a function of the new output's path that
    says whether it holds anything worth keeping) and no old output it is
    moved into place: a forecast interrupted after some hours keeps them,
    marked as partial by the writer.

    With ``in_place_when_new`` and no old output, the new one is written at
    ``path`` itself: there is nothing to protect, and a run killed outright
    (SIGKILL, the out-of-memory killer, a scheduler) then leaves its hours
    where ``--resume`` finds them instead of in a hidden sibling. On an
    exception it is kept or deleted as ``keep_partial`` says.

    Yields
    ------
    pathlib.Path
        Where to write (it does not exist yet).
    """
    out = check_replaceable(path, kinds, overwrite=overwrite, reading=reading)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the folder of --out {path}: {err.strerror}") from None
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {out.parent} (permission denied); choose another --out")
    with _lock(out):
        out = check_replaceable(path, kinds, overwrite=overwrite, reading=reading)  # again, under the lock
        _sweep_stale(out)
        if in_place_when_new and not out.exists():
            try:
                yield out
            except BaseException:
                keep = keep_partial(out) if callable(keep_partial) and out.exists() else keep_partial
                if not keep:
                    _remove(out)
                raise
            return
        tmp = out.parent / f".{out.name}.partial-{os.getpid()}{out.suffix}"
        _remove(tmp)
        try:
            yield tmp
        except BaseException:
            keep = keep_partial(tmp) if callable(keep_partial) and tmp.exists() else keep_partial
            if keep and not out.exists() and tmp.exists():
                os.replace(tmp, out)
            else:
                _remove(tmp)
            raise
        if not tmp.exists():
            return
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            _remove(old)
            os.replace(out, old)
            os.replace(tmp, out)
            _remove(old)
        else:
            os.replace(tmp, out)
