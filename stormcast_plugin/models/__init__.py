"""Models: the earth2studio prognostic adaptor (:mod:`.px`) and the
networks behind it (:mod:`.nn`)."""

from __future__ import annotations

from typing import Any

__all__ = ["StormCast"]


def __getattr__(name: str) -> Any:
    if name == "StormCast":
        from stormcast_plugin.models.px.stormcast import StormCast

        return StormCast
    raise AttributeError(f"module 'stormcast_plugin.models' has no attribute {name!r}")
