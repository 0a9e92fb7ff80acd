"""Training checkpoints: atomic writes, rotation, resume with fall-back.

A checkpoint is a ``torch.save`` of plain tensors, numbers, strings, lists
and dicts (no objects), so it loads with ``weights_only=True``. It is written
to a temporary file in the same folder, flushed to disk, then renamed over
its final name: a crash leaves either the old or the new file, never half of
one. The newest ``keep`` files are kept; temporary files left by a killed
writer are removed when the next run starts (:func:`remove_temporaries`).
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

__all__ = ["latest_checkpoint", "list_checkpoints", "load_checkpoint", "nonfinite_tensors", "remove_temporaries",
           "save_checkpoint"]

_NAME = re.compile(r"^step-(\d{8})\.pt$")
_TMP_PREFIX, _TMP_SUFFIX = ".tmp-", ".pt"


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
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX)
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


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete the half-written ``.tmp-*.pt`` files of a killed writer; returns their paths.

    Call it before a run writes into ``folder`` (one writer per folder).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}") if p.is_file())
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def nonfinite_tensors(tensors: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``tensors`` (a state dict) holding NaN or infinity."""
    items = [(k, v) for k, v in tensors.items() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    if not items:
        return []
    finite = torch.stack([torch.isfinite(v.detach()).all() for _, v in items]).tolist()  # one device sync
    return [k for (k, _), ok in zip(items, finite) if not ok]


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
