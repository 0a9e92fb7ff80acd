"""Loading a package from any source, in either layout: the one boundary where a package is checked."""

from __future__ import annotations

import os
from typing import Any

import torch

from stormcast_plugin.package.native import load_native
from stormcast_plugin.package.official import load_official
from stormcast_plugin.package.resolve import resolve_package, source_label
from stormcast_plugin.package.spec import (
    MANIFEST_NAME,
    NEEDS,
    OFFICIAL_FILES,
    PackageFormatError,
    PackageNotFoundError,
    StormCastPackage,
)

__all__ = ["load_package"]


def load_package(
    source: Any = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> StormCastPackage:
    """Load a StormCast package from a folder, the Hub or an earth2studio Package.

    A folder with ``stormcast_package.json`` is an export of
    :func:`save_package` (checked against its SHA-256 list, see
    :mod:`stormcast_plugin.package.native`); otherwise it must hold the
    official layout (see :mod:`stormcast_plugin.package.official`). Either
    way the parts are checked to fit together
    (:meth:`StormCastPackage.validate`).

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
        When a file is corrupt, fails its checksum, is not covered by one, or
        does not match the rest (:class:`PackageFormatError` is one).
    """
    folder = resolve_package(source, revision=revision, cache_dir=cache_dir)
    label = source_label(source, folder)
    if (folder / MANIFEST_NAME).is_file():
        pkg = load_native(folder, label)
    else:
        missing = [f for f in OFFICIAL_FILES if not (folder / f).is_file()]
        if missing:
            present = sorted(p.name for p in folder.iterdir())[:10]
            raise PackageNotFoundError(
                f"{folder} is not a complete StormCast package: missing {missing} (found {present}); {NEEDS}"
            )
        pkg = load_official(folder, label)
    try:
        pkg.validate()
    except ValueError as err:
        raise PackageFormatError(f"package {label} is inconsistent: {err}") from err
    return pkg.to(device)
