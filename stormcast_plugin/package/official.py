"""NVIDIA's official package layout (Hugging Face ``nvidia/stormcast-v1-era5-hrrr``).

The layout is ``StormCastUNet.0.0.mdlus`` and ``EDMPrecond.0.0.mdlus``
(PhysicsNeMo archives), ``model.yaml`` and ``metadata.zarr.zip`` (zarr
format 2 in a zip: names, statistics, invariants). ``model.yaml`` is an
OmegaConf file; it is parsed with ``yaml.safe_load`` and only the keys
``data.invariants`` and ``sampler_args`` are read. Interpolations such as
``${eval:...}`` are never evaluated: where they appear in a key that is
read, loading stops with an error.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from stormcast_plugin.models.nn.mdlus import load_mdlus, write_mdlus
from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions
from stormcast_plugin.package.spec import (
    DEFAULT_REPO,
    DIFFUSION_FILE,
    METADATA_FILE,
    MODEL_YAML,
    REGRESSION_FILE,
    PackageFormatError,
    StormCastPackage,
)
from stormcast_plugin.package.storage import AtomicDir, grid_from_parts, grid_to_parts, json_safe

__all__ = ["load_official", "write_official_layout"]

_SAMPLER_KEYS = ("num_steps", "sigma_min", "sigma_max", "rho", "S_churn", "S_min", "S_max", "S_noise")
_GRID_ATTR = "stormcast_plugin_grid"


# --------------------------------------------------------------------------- model.yaml
def _check_no_interpolation(value: Any, where: str, path: Path) -> None:
    if isinstance(value, str) and "${" in value:
        raise PackageFormatError(
            f"{path}: {where} is the OmegaConf interpolation {value!r}, which is not supported "
            "(it is never evaluated); replace it with a literal value"
        )
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_no_interpolation(v, f"{where}.{k}", path)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_no_interpolation(v, f"{where}[{i}]", path)


def _read_model_yaml(path: Path) -> dict:
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise PackageFormatError(f"{path} is not valid YAML ({err})") from err
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise PackageFormatError(f"{path} holds a {type(config).__name__}; expected a YAML mapping")
    return config


def _official_sampler(config: dict, path: Path) -> SamplerOptions:
    args = config.get("sampler_args")
    _check_no_interpolation(args, "sampler_args", path)
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise PackageFormatError(f"{path}: sampler_args is {args!r}; expected a mapping or null")
    unknown = sorted(set(map(str, args)) - set(_SAMPLER_KEYS))
    if unknown:
        # earth2studio passes extra keys along and never uses them; do the same, loudly.
        warnings.warn(
            f"{path}: ignoring sampler_args {unknown}; the sampler uses only {list(_SAMPLER_KEYS)}",
            stacklevel=3,
        )
    values: dict[str, Any] = {}
    for k, v in args.items():
        if k not in _SAMPLER_KEYS:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise PackageFormatError(f"{path}: sampler_args.{k} is {v!r}; expected a number")
        try:
            values[k] = int(v) if k == "num_steps" else float(v)
        except ValueError as err:
            raise PackageFormatError(f"{path}: sampler_args.{k} is {v!r}; expected a number") from err
    try:
        return SamplerOptions.from_dict(values)
    except ValueError as err:
        raise PackageFormatError(f"{path}: sampler_args are invalid: {err}") from err


def _official_invariant_names(config: dict, available: list[str], path: Path) -> list[str]:
    data = config.get("data")
    names = data.get("invariants") if isinstance(data, dict) else None
    _check_no_interpolation(names, "data.invariants", path)
    if names is None:
        return list(available)
    if isinstance(names, str) or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PackageFormatError(f"{path}: data.invariants is {names!r}; expected a list of invariant names")
    missing = [n for n in names if n not in available]
    if missing:
        raise PackageFormatError(
            f"{path}: data.invariants names {missing}, which metadata.zarr.zip lacks (it has {available})"
        )
    return list(names)


# --------------------------------------------------------------------------- metadata.zarr.zip
def _read_metadata_zip(path: Path) -> dict[str, Any]:
    import xarray as xr
    import zarr

    try:
        store = zarr.storage.ZipStore(str(path), mode="r")
    except (zipfile.BadZipFile, OSError) as err:
        raise PackageFormatError(f"{path} is not a readable zip ({err}); download it again") from err
    try:
        try:
            ds = xr.open_zarr(store, zarr_format=2, chunks=None)
        except Exception as err:  # zarr/xarray raise many kinds for a bad store
            raise PackageFormatError(f"{path} is not a zarr (format 2) store ({type(err).__name__}: {err})") from err
        with ds:
            needed = ("variable", "conditioning_variable", "means", "stds", "conditioning_means",
                      "conditioning_stds", "invariants")
            missing = [n for n in needed if n not in ds.variables]
            if missing:
                raise PackageFormatError(
                    f"{path} lacks the arrays {missing} (has {sorted(map(str, ds.variables))})"
                )
            inv = ds["invariants"]
            if inv.ndim != 3:
                raise PackageFormatError(f"{path}: invariants has dims {inv.dims}; expected (invariant, y, x)")
            inv_dim = inv.dims[0]
            if inv_dim in ds.variables:
                inv_names = [str(v) for v in ds[inv_dim].values]
            else:
                inv_names = [f"invariant{i}" for i in range(inv.shape[0])]
            out: dict[str, Any] = {
                "variable": [str(v) for v in ds["variable"].values],
                "conditioning_variable": [str(v) for v in ds["conditioning_variable"].values],
                "invariant": inv_names,
                "invariants": np.asarray(inv.values, dtype=np.float32),
            }
            for k in ("means", "stds", "conditioning_means", "conditioning_stds"):
                out[k] = np.asarray(ds[k].values, dtype=np.float32).reshape(-1)
            grid_json = ds.attrs.get(_GRID_ATTR)
            out["grid"] = json.loads(grid_json) if grid_json else None
            out["grid_arrays"] = {
                f"grid.{k}": np.asarray(ds[k].values) for k in ("lat", "lon", "y", "x") if k in ds.variables
            }
    finally:
        store.close()
    return out


# --------------------------------------------------------------------------- loading
def load_official(folder: Path, label: str) -> StormCastPackage:
    """Read the official layout in ``folder``; ``label`` becomes ``info['source']``."""
    ypath = folder / MODEL_YAML
    config = _read_model_yaml(ypath)
    sampler = _official_sampler(config, ypath)
    regression = load_mdlus(folder / REGRESSION_FILE, expected="StormCastUNet")
    diffusion = load_mdlus(folder / DIFFUSION_FILE, expected="EDMPrecond")
    mpath = folder / METADATA_FILE
    meta = _read_metadata_zip(mpath)
    names = _official_invariant_names(config, meta["invariant"], ypath)
    idx = [meta["invariant"].index(n) for n in names]
    invariants = meta["invariants"][idx]
    if meta["grid"] is not None:
        grid = grid_from_parts(meta["grid"], meta["grid_arrays"], str(mpath))
    else:
        from stormcast_plugin.utils.grid import ModelGrid

        grid = ModelGrid.hrrr()
        if tuple(invariants.shape[1:]) != tuple(grid.shape):
            raise PackageFormatError(
                f"{mpath}: invariants cover a {tuple(invariants.shape[1:])} grid and the file does not "
                f"describe its grid; the official StormCast grid is {tuple(grid.shape)}. Export custom "
                "grids with write_official_layout, which records the grid"
            )
    info = {
        "name": DEFAULT_REPO.split("/")[1],
        "description": "StormCast v1: kilometre-scale HRRR emulator (regression + EDM diffusion) "
        "conditioned on ERA5",
        "license": f"see the model card at https://huggingface.co/{DEFAULT_REPO}",
    }
    extra = config.get("package_info")
    if isinstance(extra, dict):
        info.update({k: str(v) for k, v in extra.items() if k in ("name", "description", "license")})
    info.update(source=label, layout="official")
    return StormCastPackage(
        regression=regression,
        diffusion=diffusion,
        state_variables=meta["variable"],
        conditioning_variables=meta["conditioning_variable"],
        invariant_names=names,
        state_mean=meta["means"],
        state_std=meta["stds"],
        conditioning_mean=meta["conditioning_means"],
        conditioning_std=meta["conditioning_stds"],
        invariants=invariants,
        grid=grid,
        sampler=sampler,
        info=info,
    )


# --------------------------------------------------------------------------- writing
def write_official_layout(
    pkg: StormCastPackage,
    out_dir: str | os.PathLike,
    *,
    mdlus_format: str = "zip",
    overwrite: bool = False,
) -> Path:
    """Write a package in the official (PhysicsNeMo / earth2studio) layout.

    The folder gets ``StormCastUNet.0.0.mdlus``, ``EDMPrecond.0.0.mdlus``,
    ``model.yaml`` (plain YAML, no interpolations), ``metadata.zarr.zip``
    (zarr format 2 in a zip, the official array names) and ``config.json``.
    The grid is recorded in ``metadata.zarr.zip`` (``lat``/``lon``/``y``/``x``
    and an attribute) so that custom grids load back exactly.

    Parameters
    ----------
    pkg : StormCastPackage
        The package; it needs a diffusion net.
    out_dir : path-like
        Destination folder (written atomically like :func:`save_package`).
    mdlus_format : str
        ``"zip"`` (PhysicsNeMo >= 2.2) or ``"tar"`` (older readers).
    overwrite : bool
        Replace an existing ``out_dir``.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    ValueError
        When the package is inconsistent or has parts the official layout
        cannot describe.
    """
    import yaml

    pkg.validate()
    if pkg.diffusion is None:
        raise ValueError(
            "the official layout needs a diffusion net (EDMPrecond.0.0.mdlus) but the package has none; "
            "use save_package for regression-only packages"
        )
    if pkg.local_time:
        raise ValueError(
            "the package's networks take local-time input channels, which the official layout cannot "
            "describe (its readers would feed them the wrong channels); use save_package"
        )
    if pkg.sampler.noise_memory_h > 0:
        raise ValueError(
            f"the package's sampler has noise_memory_h = {pkg.sampler.noise_memory_h:g} h, which the official "
            "layout cannot record; set it to 0 (sampler.noise_memory_h) or use save_package"
        )
    if mdlus_format not in ("zip", "tar"):
        raise ValueError(f"mdlus_format {mdlus_format!r} must be 'zip' or 'tar'")
    target = AtomicDir(out_dir, overwrite)
    try:
        tmp = target.tmp
        write_mdlus(pkg.regression, tmp / REGRESSION_FILE, fmt=mdlus_format)
        write_mdlus(pkg.diffusion, tmp / DIFFUSION_FILE, fmt=mdlus_format)
        config = {
            "package_info": {k: str(pkg.info.get(k, "")) for k in ("name", "description", "license")},
            "data": {"invariants": list(pkg.invariant_names)},
            "sampler_args": {k: v for k, v in pkg.sampler.to_dict().items() if k in _SAMPLER_KEYS},
        }
        (tmp / MODEL_YAML).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        _write_metadata_zip(pkg, tmp / METADATA_FILE, tmp)
        (tmp / "config.json").write_text("{}\n", encoding="utf-8")
        return target.commit()
    except BaseException:
        target.abort()
        raise


def _write_metadata_zip(pkg: StormCastPackage, path: Path, workdir: Path) -> None:
    import xarray as xr

    grid = pkg.grid
    lat, lon = np.asarray(grid.lat, dtype=np.float64), np.asarray(grid.lon, dtype=np.float64)
    ds = xr.Dataset(
        {
            "means": ("variable", pkg.state_mean),
            "stds": ("variable", pkg.state_std),
            "conditioning_means": ("conditioning_variable", pkg.conditioning_mean),
            "conditioning_stds": ("conditioning_variable", pkg.conditioning_std),
            "invariants": (("invariant", "y", "x"), pkg.invariants),
        },
        coords={
            "variable": np.array(pkg.state_variables, dtype=str),
            "conditioning_variable": np.array(pkg.conditioning_variables, dtype=str),
            "invariant": np.array(pkg.invariant_names, dtype=str),
            "y": np.asarray(grid.y, dtype=np.float64),
            "x": np.asarray(grid.x, dtype=np.float64),
            "lat": (("y", "x"), lat),
            "lon": (("y", "x"), lon),
        },
    )
    # The grid's array fields are the lat/lon/y/x arrays stored beside the data.
    ds.attrs[_GRID_ATTR] = json.dumps(json_safe(grid_to_parts(grid)[0]))
    # zarr's ZipStore writes metadata keys more than once (duplicate zip
    # entries); write a directory store and zip it instead.
    store_dir = workdir / ".metadata.zarr"
    ds.to_zarr(str(store_dir), mode="w", zarr_format=2, consolidated=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for root, dirs, files in os.walk(store_dir):
            dirs.sort()
            for name in sorted(files):
                full = Path(root) / name
                zf.write(full, full.relative_to(store_dir).as_posix())
    shutil.rmtree(store_dir)
