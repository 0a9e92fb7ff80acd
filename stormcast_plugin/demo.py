"""The embedded offline default model.

Nothing here needs the network. The default model is the package bundled in
``stormcast_plugin/assets/demo``: a tiny StormCast (6 state variables, 6
conditioning variables, a 64 x 64 crop of the HRRR grid in the central US)
**trained on the synthetic atmosphere** of :mod:`stormcast_plugin.datagen.synth`
(see the README for the command that reproduces it). It demonstrates the
pipeline end to end; it has never seen real weather. Its default case, the
synthetic atmosphere with weather it was not trained on over the orography it
was trained on, is made by :func:`stormcast_plugin.datagen.demo_case.demo_sources`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from stormcast_plugin.utils.grid import ModelGrid, hrrr_crop

if TYPE_CHECKING:  # pragma: no cover - typing only
    from stormcast_plugin.package import StormCastPackage

__all__ = ["DEMO_PACKAGE_DIR", "DEMO_TERRAIN_SEED", "demo_grid", "demo_package"]

DEMO_PACKAGE_DIR = Path(__file__).resolve().parent / "assets" / "demo"
"""Folder of the bundled demonstration package."""
DEMO_TERRAIN_SEED = 0
"""Terrain seed of the demo model's training data: its domain's orography and land."""


def demo_grid() -> ModelGrid:
    """The demo model's grid: the 64 x 64 HRRR crop centred on the StormCast v1
    domain (the grid of ``stormcast data synth --grid 64x64``)."""
    return hrrr_crop((64, 64))


def demo_package() -> "StormCastPackage":
    """The embedded demonstration package (trained on synthetic data).

    Falls back to :func:`stormcast_plugin.testing.random_demo_package` (with a
    RuntimeWarning) if the bundled files are absent (a source checkout before
    the demo model was trained).
    """
    if (DEMO_PACKAGE_DIR / "stormcast_package.json").is_file():
        from stormcast_plugin.package import load_package

        return load_package(DEMO_PACKAGE_DIR)
    import warnings

    from stormcast_plugin.testing import random_demo_package

    warnings.warn("the bundled demo model is missing; using a randomly initialised one", RuntimeWarning,
                  stacklevel=2)
    return random_demo_package()
