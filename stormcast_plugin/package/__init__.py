"""StormCast model packages: find, load, validate, export.

Two on-disk layouts are read: NVIDIA's ``official`` one (Hugging Face
``nvidia/stormcast-v1-era5-hrrr``: ``.mdlus`` networks, ``model.yaml``,
``metadata.zarr.zip``; :mod:`~stormcast_plugin.package.official`) and this
project's ``stormcast-plugin`` export (safetensors, a JSON manifest and
SHA-256 checksums; :mod:`~stormcast_plugin.package.native`). Sources are
local folders, ``hf://org/repo[@revision]`` or earth2studio ``Package``
objects (:mod:`~stormcast_plugin.package.resolve`). Random packages for
tests live in :mod:`stormcast_plugin.testing`.
"""

from stormcast_plugin.package.load import load_package
from stormcast_plugin.package.native import save_package
from stormcast_plugin.package.official import write_official_layout
from stormcast_plugin.package.resolve import resolve_package
from stormcast_plugin.package.spec import (
    CHECKSUM_NAME,
    DEFAULT_REPO,
    DEFAULT_REVISION,
    DEFAULT_SOURCE,
    FORMAT_VERSION,
    MANIFEST_NAME,
    OFFICIAL_FILES,
    CheckpointError,
    PackageFormatError,
    PackageNotFoundError,
    StormCastPackage,
)

__all__ = [
    "CHECKSUM_NAME",
    "DEFAULT_REPO",
    "DEFAULT_REVISION",
    "DEFAULT_SOURCE",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "OFFICIAL_FILES",
    "CheckpointError",
    "PackageFormatError",
    "PackageNotFoundError",
    "StormCastPackage",
    "load_package",
    "resolve_package",
    "save_package",
    "write_official_layout",
]
