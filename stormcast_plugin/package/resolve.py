"""Finding a package folder: local folders, ``hf://org/repo@rev`` and earth2studio ``Package`` objects.

Hugging Face sources are downloaded with ``huggingface_hub.snapshot_download``
(which honours ``HF_HOME``, ``HF_HUB_OFFLINE`` and the hub cache). An
earth2studio ``Package`` on another file system (``ngc://``, ``s3://``, ...)
fetches each file through the package itself; the files are then gathered
under their own names in a private staging folder of the current user.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from stormcast_plugin.package.native import read_manifest
from stormcast_plugin.package.spec import (
    CHECKSUM_NAME,
    DEFAULT_REPO,
    DEFAULT_REVISION,
    DEFAULT_SOURCE,
    HF_FILES,
    MANIFEST_NAME,
    NEEDS,
    OFFICIAL_FILES,
    PackageNotFoundError,
)

__all__ = ["resolve_package", "source_label", "staging_root"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


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
        ``$HF_HOME/hub``). Packages on other file systems are staged in its
        ``stormcast_plugin-staged`` folder (default: ``stormcast_plugin-<uid>``
        in the system temporary folder), which must belong to the current
        user and be closed to others.

    Returns
    -------
    Path
        The folder holding the package files.

    Raises
    ------
    PackageNotFoundError
        When the folder does not exist or the download is impossible (offline
        with nothing cached, unknown repository or revision).
    PermissionError
        When the staging folder belongs to another user or is open to others.
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
    elif _SCHEME.match(source):
        raise ValueError(
            f"package source {source!r} uses an unsupported scheme; use a local folder, "
            "'hf://org/repo[@revision]', or wrap the URL in an earth2studio Package"
        )
    return _local_dir(Path(source).expanduser())


def source_label(source: Any, folder: Path) -> str:
    """How a package's ``info['source']`` names where it came from."""
    if source is None:
        return DEFAULT_SOURCE
    if hasattr(source, "root") and not isinstance(source, (str, os.PathLike)):
        return str(source.root)
    if isinstance(source, str) and source.startswith("hf://"):
        return source
    return str(folder)


def _local_dir(path: Path) -> Path:
    if path.is_file() and (path.name in OFFICIAL_FILES or path.name in (MANIFEST_NAME, CHECKSUM_NAME)):
        path = path.parent
    if not path.exists():
        raise PackageNotFoundError(
            f"package folder {str(path)!r} does not exist; pass an existing folder, "
            f"'hf://org/repo[@revision]' or an earth2studio Package ({NEEDS})"
        )
    if not path.is_dir():
        raise PackageNotFoundError(f"package source {str(path)!r} is a file, not a folder; {NEEDS}")
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

    def error_types(*names: str) -> tuple[type, ...]:
        return tuple(t for t in (getattr(hf_errors, n, None) for n in names) if isinstance(t, type))

    missing_types = error_types("LocalEntryNotFoundError", "OfflineModeIsEnabled", "IncompleteSnapshotError")
    not_found_types = error_types("RepositoryNotFoundError", "RevisionNotFoundError")
    where = f"hf://{repo_id}" + (f"@{revision}" if revision else "")
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
            allow_patterns=HF_FILES,
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
    if not _SCHEME.match(root):
        return _local_dir(Path(root).expanduser())
    # Any other file system (ngc://, s3://, ...): fetch through the package
    # itself and gather the files under their own names.
    return _stage_remote(package, cache_dir)


# --------------------------------------------------------------------------- private staging
def _private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) or check that the existing one is the current user's and closed to others."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    fix = "remove it (or pass cache_dir= to stage elsewhere)"
    if not stat.S_ISDIR(st.st_mode):
        raise PermissionError(f"the staging folder {path} is not a folder (a link or a file); {fix}")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise PermissionError(
            f"the staging folder {path} belongs to user id {st.st_uid}, not to you (user id {os.getuid()}); "
            f"another user could swap the package files in it: {fix}"
        )
    if os.name == "posix" and stat.S_IMODE(st.st_mode) & 0o077:
        raise PermissionError(
            f"the staging folder {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must be private (0700) "
            f"so that no other user can swap the package files in it: chmod 700 it or {fix}"
        )
    return path


def staging_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The current user's private folder for staging remote packages.

    ``<cache_dir>/stormcast_plugin-staged`` when ``cache_dir`` is given,
    otherwise ``stormcast_plugin-<uid>`` in the system temporary folder;
    created with mode 0700.

    Raises
    ------
    PermissionError
        When the folder exists but is a link, belongs to another user or is
        open to others.
    """
    if cache_dir is not None:
        base = Path(cache_dir).expanduser()
        base.mkdir(parents=True, exist_ok=True)
        return _private_dir(base / "stormcast_plugin-staged")
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return _private_dir(Path(tempfile.gettempdir()) / f"stormcast_plugin-{user}")


def _stage_remote(package: Any, cache_dir: Any) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(package.root)).strip("_.") or "package"
    stage = _private_dir(staging_root(cache_dir) / safe[:200])
    for old in stage.iterdir():  # files of an earlier staging of this root
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()

    def fetch(name: str) -> bool:
        try:
            local = Path(package.resolve(name))
        except FileNotFoundError:
            return False
        target = stage / name
        try:
            target.symlink_to(local.resolve())
        except OSError:
            shutil.copy2(local, target)
        return True

    if fetch(MANIFEST_NAME):
        names = list(read_manifest(stage)["files"])  # bare names only: they become paths in the stage
        fetch(CHECKSUM_NAME)
    else:
        names = list(OFFICIAL_FILES)
    missing = [n for n in names if not fetch(n)]
    if missing:
        raise PackageNotFoundError(f"{package.root} lacks {missing}; {NEEDS}")
    return stage
