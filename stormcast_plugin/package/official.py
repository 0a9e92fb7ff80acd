"""NVIDIA's official package layout (Hugging Face ``nvidia/stormcast-v1-era5-hrrr``).

The layout is ``StormCastUNet.0.0.mdlus`` and ``EDMPrecond.0.0.mdlus``
(PhysicsNeMo archives), ``model.yaml`` and ``metadata.zarr.zip`` (zarr
format 2 in a zip: names, statistics, invariants). ``model.yaml`` is an
OmegaConf file; it is parsed with ``yaml.safe_load`` and only the keys
``data.invariants`` and ``sampler_args`` are read. Interpolations such as
``${eval:...}`` are never evaluated: where they appear in a key that is
read, loading stops with an error. ``metadata.zarr.zip`` is read with
:class:`~stormcast_plugin.package.zarr_zip.ZarrZip`, each array's size
checked against what the networks need before it is read.
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
from stormcast_plugin.package.storage import (
    GRID_ARRAYS,
    AtomicDir,
    grid_from_parts,
    grid_to_parts,
    json_safe,
    read_limited,
)
from stormcast_plugin.package.zarr_zip import ZarrZip

__all__ = ["load_official", "write_official_layout"]

_SAMPLER_KEYS = ("num_steps", "sigma_min", "sigma_max", "rho", "S_churn", "S_min", "S_max", "S_noise")
_GRID_ATTR = "stormcast_plugin_grid"
_MAX_YAML_BYTES = 1 << 22
MAX_GRID_POINTS = 1 << 24
"""Largest grid (4096 x 4096 points) a custom grid in ``metadata.zarr.zip`` may describe."""


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
        config = yaml.safe_load(read_limited(path, _MAX_YAML_BYTES).decode("utf-8"))
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
def _read_metadata(path: Path, n_state: int, n_other: int) -> dict[str, Any]:
    """Names, statistics, invariants and grid of ``metadata.zarr.zip``.

    ``n_state`` is the number of state channels the networks predict and
    ``n_other`` the number of further input channels (conditioning and
    invariants); every declared size is checked against them (or the grid)
    before the array is read.
    """
    with ZarrZip(path) as z:
        n_var, n_cond = z.shape("variable"), z.shape("conditioning_variable")
        if n_var != (n_state,):
            raise z.error(f"array 'variable' declares shape {n_var}; the networks predict {n_state} state channels")
        if len(n_cond) != 1 or n_cond[0] > n_other:
            raise z.error(f"array 'conditioning_variable' declares shape {n_cond}; the networks take at most "
                          f"{n_other} channels besides the state")
        out: dict[str, Any] = {}
        for names, values, n in (("variable", ("means", "stds"), n_state),
                                 ("conditioning_variable", ("conditioning_means", "conditioning_stds"), n_cond[0])):
            out[names] = [str(v) for v in z.read(names, (n,))]
            for key in values:
                out[key] = np.asarray(z.read(key, (n,)), dtype=np.float32)

        inv_shape = z.shape("invariants")
        if len(inv_shape) != 3:
            raise z.error(f"invariants has shape {inv_shape}; expected (invariant, y, x)")
        if inv_shape[0] > n_other:
            raise z.error(f"invariants declares {inv_shape[0]} fields; the networks take at most {n_other} "
                          "channels besides the state")
        inv_dim = z.dims("invariants")[0]
        if z.has(inv_dim):
            out["invariant"] = [str(v) for v in z.read(inv_dim, (inv_shape[0],))]
        else:
            out["invariant"] = [f"invariant{i}" for i in range(inv_shape[0])]

        grid_json = z.attrs().get(_GRID_ATTR)
        if grid_json:
            grid = _metadata_grid(z, grid_json)
        else:
            from stormcast_plugin.utils.grid import ModelGrid

            grid = ModelGrid.hrrr()
            if tuple(inv_shape[1:]) != tuple(grid.shape):
                raise z.error(
                    f"invariants cover a {tuple(inv_shape[1:])} grid and the file does not describe its grid; "
                    f"the official StormCast grid is {tuple(grid.shape)}. Export custom grids with "
                    "write_official_layout, which records the grid"
                )
        out["grid"] = grid
        out["invariants"] = np.asarray(z.read("invariants", (inv_shape[0], *grid.shape)), dtype=np.float32)
    return out


def _metadata_grid(z: ZarrZip, grid_json: Any) -> Any:
    """The grid recorded by :func:`write_official_layout`, its arrays read at their checked sizes."""
    try:
        meta = json.loads(grid_json) if isinstance(grid_json, str) else None
    except json.JSONDecodeError as err:
        raise z.error(f"the attribute {_GRID_ATTR} is not valid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise z.error(f"the attribute {_GRID_ATTR} is {str(grid_json)[:80]!r}; expected a JSON grid description")
    refs = {k: v["array"] for k, v in meta.items() if isinstance(v, Mapping) and set(v) == {"array"}}
    arrays: dict[str, np.ndarray] = {}
    if refs:
        if set(refs) != set(GRID_ARRAYS) or any(refs[k] != f"grid.{k}" for k in refs):
            raise z.error(f"the attribute {_GRID_ATTR} refers to arrays {refs}; expected y, x, lat and lon")
        ny, nx = z.shape("y"), z.shape("x")
        if len(ny) != 1 or len(nx) != 1 or ny[0] * nx[0] > MAX_GRID_POINTS or 0 in ny + nx:
            raise z.error(f"the grid declares y {ny} and x {nx}; expected 1-D axes of at most "
                          f"{MAX_GRID_POINTS} points together")
        shapes = {"y": ny, "x": nx, "lat": ny + nx, "lon": ny + nx}
        arrays = {f"grid.{k}": z.read(k, shapes[k]) for k in GRID_ARRAYS}
    return grid_from_parts(meta, arrays, str(z.path))


# --------------------------------------------------------------------------- loading
def load_official(folder: Path, label: str) -> StormCastPackage:
    """Read the official layout in ``folder``; ``label`` becomes ``info['source']``."""
    ypath = folder / MODEL_YAML
    config = _read_model_yaml(ypath)
    sampler = _official_sampler(config, ypath)
    regression = load_mdlus(folder / REGRESSION_FILE, expected="StormCastUNet")
    diffusion = load_mdlus(folder / DIFFUSION_FILE, expected="EDMPrecond")
    rc = regression.config
    meta = _read_metadata(folder / METADATA_FILE, rc.out_channels, rc.in_channels - rc.out_channels)
    names = _official_invariant_names(config, meta["invariant"], ypath)
    idx = [meta["invariant"].index(n) for n in names]
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
        invariants=meta["invariants"][idx],
        grid=meta["grid"],
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
        When the package is inconsistent, has NaN or infinite weights, or has
        parts the official layout cannot describe.
    """
    import yaml

    pkg.validate().check_finite_weights()
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
    if pkg.sampler.solver != "heun":
        raise ValueError(
            f"the package's sampler uses the {pkg.sampler.solver!r} solver, which the official layout cannot "
            "record (its readers always run the EDM Heun sampler); set sampler.solver to 'heun' or use save_package"
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
