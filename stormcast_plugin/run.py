"""Run a StormCast rollout and write it hour by hour.

:func:`run_forecast` is what ``stormcast forecast`` runs: it fetches the
initial state, steps the model with its ``create_iterator`` for every batch of
ensemble members, and writes each hour to an earth2studio IO backend as soon
as it exists, recording the hours completed in the store's attributes. A run
stopped midway therefore leaves a readable store whose
``completed_lead_hours`` attribute says how far it got.
"""

from __future__ import annotations

import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["fetch_state", "open_output", "run_forecast"]


def fetch_state(source: Any, times: Sequence[np.datetime64], variables: Sequence[str], grid: Any) -> tuple[torch.Tensor, OrderedDict]:
    """Fetch the initial state ``[time, 1, variable, y, x]`` from a DataSource.

    Variables are selected by name; the spatial size must match ``grid``.

    Raises
    ------
    ValueError
        Naming missing variables or times, a wrong grid, or NaN values.
    """
    times = np.asarray(times, dtype="datetime64[ns]")
    da = source(list(times.astype("datetime64[s]").tolist()), list(variables))
    have = [str(v) for v in da.coords["variable"].values]
    missing = [v for v in variables if v not in have]
    if missing:
        raise ValueError(f"the state source lacks variables {missing}; it provides {have[:10]}...")
    da = da.sel(variable=list(variables))
    got_times = np.asarray(da.coords["time"].values, dtype="datetime64[ns]")
    lost = [str(t) for t in times if t not in got_times]
    if lost:
        raise ValueError(f"the state source has no data for times {lost}")
    da = da.sel(time=times)
    spatial = tuple(da.shape[-2:])
    if spatial != tuple(grid.shape):
        raise ValueError(
            f"the state source returns a {spatial} grid; the model grid {grid.name!r} is {tuple(grid.shape)}. "
            "Crop the source to the model domain"
        )
    values = np.asarray(da.values, dtype=np.float32)
    if not np.isfinite(values).all():
        bad = [variables[i] for i in np.unique(np.nonzero(~np.isfinite(values))[1])]
        raise ValueError(f"the initial state has NaN or infinite values in {bad[:10]}")
    coords = OrderedDict(
        time=times,
        lead_time=np.array([np.timedelta64(0, "h")]),
        variable=np.array(variables),
        hrrr_y=np.asarray(grid.y),
        hrrr_x=np.asarray(grid.x),
    )
    return torch.from_numpy(values)[:, None], coords


def open_output(path: str | Path, *, fmt: str | None = None, overwrite: bool = False) -> Any:
    """Create an earth2studio IO backend for ``path`` (``.zarr`` or ``.nc``).

    Refuses to touch an existing path unless ``overwrite`` is set.
    """
    path = Path(path)
    fmt = fmt or ("netcdf" if path.suffix in (".nc", ".nc4") else "zarr")
    if path.exists():
        if not overwrite:
            raise FileExistsError(
                f"{path} already exists; choose another --out or pass --overwrite to replace it"
            )
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "zarr":
        from earth2studio.io import ZarrBackend

        return ZarrBackend(str(path), backend_kwargs={"overwrite": False})
    if fmt == "netcdf":
        from earth2studio.io import NetCDF4Backend

        return NetCDF4Backend(str(path), backend_kwargs={"mode": "w"})
    raise ValueError(f"output format {fmt!r} is not known; use 'zarr' or 'netcdf'")


def _set_attrs(io: Any, attrs: dict[str, Any]) -> None:
    root = getattr(io, "root", None)
    if root is None:
        return
    if hasattr(root, "attrs"):  # zarr group
        root.attrs.update(attrs)
    else:  # netCDF4 Dataset
        for k, v in attrs.items():
            root.setncattr(k, v if not isinstance(v, bool) else int(v))
        root.sync()


def run_forecast(
    model: Any,
    state_source: Any,
    start: Sequence[np.datetime64] | np.datetime64,
    hours: int,
    io: Any,
    *,
    members: int = 1,
    batch_size: int | None = None,
    progress: bool = True,
    attrs: dict[str, Any] | None = None,
) -> Any:
    """Forecast ``hours`` hours from ``start`` for ``members`` members.

    Parameters
    ----------
    model : StormCast
        The prognostic model (its seed fixes every member's noise).
    state_source : DataSource
        Provides the initial state on the model grid.
    start : datetime64 or sequence
        Initial time(s).
    hours : int
        Number of one-hour steps.
    io : earth2studio IO backend
        Receives arrays ``[ensemble, time, lead_time, hrrr_y, hrrr_x]`` per
        variable, plus 2-D ``lat``/``lon``.
    members : int
        Ensemble size (members differ only by their noise).
    batch_size : int, optional
        Members stepped together (default: all).
    progress : bool
        Show a progress bar over member-hours.
    attrs : dict, optional
        Extra global attributes for the store.

    Returns
    -------
    io
        The backend, complete.
    """
    from tqdm.auto import tqdm

    if hours < 1:
        raise ValueError(f"hours must be at least 1, got {hours}")
    if members < 1:
        raise ValueError(f"members must be at least 1, got {members}")
    times = np.atleast_1d(np.asarray(start, dtype="datetime64[ns]"))
    variables = [str(v) for v in model.variables]
    x0, coords0 = fetch_state(state_source, times, variables, model.grid)
    batch_size = min(batch_size or members, members)
    seed = model.forecast_seed()  # one base seed for every batch of members

    total = OrderedDict(ensemble=np.arange(members))
    total.update((k, v) for k, v in coords0.items() if k != "variable")
    total["lead_time"] = np.array([np.timedelta64(h, "h") for h in range(hours + 1)])
    # Unwritten hours must read as missing (NaN), not as zeros: zarr arrays get
    # a NaN fill value (dimension arrays first, as they cannot take one);
    # netCDF's default fill value already decodes to NaN.
    if hasattr(getattr(io, "root", None), "create_array"):
        io.add_array(total, [])
        io.add_array(total, variables, fill_value=float("nan"))
    else:
        io.add_array(total, variables)
    spatial = OrderedDict(hrrr_y=coords0["hrrr_y"], hrrr_x=coords0["hrrr_x"])
    io.add_array(spatial, "lat", data=torch.as_tensor(np.asarray(model.lat, dtype=np.float32)))
    io.add_array(spatial, "lon", data=torch.as_tensor(np.asarray(model.lon, dtype=np.float32)))
    base_attrs = {
        "model": str(model.package_info.get("name", "stormcast")),
        "model_description": str(model.package_info.get("description", "")),
        "seed": int(seed),
        "members": int(members),
        "hours": int(hours),
        "sampler_steps": int(model.sampler.num_steps),
        "regression_only": bool(model.regression_only),
        "completed_lead_hours": -1,
    }
    base_attrs.update(attrs or {})
    _set_attrs(io, base_attrs)

    device = model.device
    bar = tqdm(total=members * hours, unit="member-h", disable=not progress, desc="forecast")
    done_hours = np.full(members, -1)
    for first in range(0, members, batch_size):
        ens = np.arange(first, min(first + batch_size, members))
        x = x0.to(device).unsqueeze(0).expand(len(ens), *x0.shape)
        coords = OrderedDict(ensemble=ens)
        coords.update(coords0)
        for step, (xs, cs) in enumerate(model.create_iterator(x, coords, seed=seed)):
            out = OrderedDict((k, v) for k, v in cs.items() if k != "variable")
            io.write([xs[..., i, :, :].cpu() for i in range(len(variables))], out, variables)
            done_hours[ens] = step
            _set_attrs(io, {"completed_lead_hours": int(done_hours.min())})
            if step > 0:
                bar.update(len(ens))
            if step == hours:
                break
    bar.close()
    _set_attrs(io, {"completed_lead_hours": int(hours)})
    close = getattr(io, "close", None)
    if callable(close):
        close()
    return io
