"""Training checkpoints: atomic writes, rotation, resume with fall-back.

A checkpoint is a ``torch.save`` of plain tensors, numbers, strings, lists
and dicts (no objects), so it loads with ``weights_only=True``. It is written
to a temporary file in the same folder, flushed to disk, then renamed over
its final name: a crash leaves either the old or the new file, never half of
one. The newest ``keep`` files are kept.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

__all__ = ["latest_checkpoint", "list_checkpoints", "load_checkpoint", "save_checkpoint"]

_NAME = re.compile(r"^step-(\d{8})\.pt$")


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def save_checkpoint(folder: str | Path, step: int, payload: dict[str, Any], keep: int = 3) -> Path:
    """Write ``payload`` as ``step-XXXXXXXX.pt`` atomically; keep the newest ``keep``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:08d}.pt"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    for _, old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load one checkpoint (weights_only: no code from the file runs)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def latest_checkpoint(folder: str | Path) -> tuple[dict[str, Any], Path] | None:
    """The newest readable checkpoint, falling back past corrupt ones with a warning."""
    for step, path in reversed(list_checkpoints(folder)):
        try:
            payload = load_checkpoint(path)
        except Exception as err:  # a torn or corrupt file: use the previous one
            warnings.warn(f"checkpoint {path} is unreadable ({type(err).__name__}: {err}); "
                          "falling back to the previous one", RuntimeWarning, stacklevel=2)
            continue
        if payload.get("step") != step:
            warnings.warn(f"checkpoint {path} holds step {payload.get('step')}, not {step}; skipping it",
                          RuntimeWarning, stacklevel=2)
            continue
        return payload, path
    return None
