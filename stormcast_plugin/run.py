"""Run a StormCast rollout and write it hour by hour.

:func:`run_forecast` is what ``stormcast forecast`` runs: it fetches the
initial state, steps the model with its ``create_iterator`` for every batch of
ensemble members, and writes each hour to an earth2studio IO backend as soon
as it exists, recording the hours completed in the store's attributes. A run
stopped midway therefore leaves a readable store whose
``completed_lead_hours`` attribute says how far it got: the last lead hour
written for every member. Stores are written through
:mod:`stormcast_plugin.io.forecast_store`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch

from stormcast_plugin.io.forecast_store import add_forecast_arrays, close_output, open_output, set_attributes
from stormcast_plugin.io.replace import FORECAST_MARKER

# open_output lives in io.forecast_store; it is named here too, beside the runner that fills its stores.
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
        Members stepped together, at least 1 (default: all; more than
        ``members`` steps all of them).
    progress : bool
        Show a progress bar over member-hours.
    attrs : dict, optional
        Extra global attributes for the store.

    Returns
    -------
    io
        The backend, complete and closed.

    Raises
    ------
    ValueError
        For hours, members or a batch size below 1, before anything is written.
    RuntimeError
        When the run ends without every lead hour written for every member,
        or when no lead hour after the initial state holds a finite value;
        the store keeps what was written and its ``completed_lead_hours``.
    """
    from tqdm.auto import tqdm

    if hours < 1:
        raise ValueError(f"hours must be at least 1, got {hours}")
    if members < 1:
        raise ValueError(f"members must be at least 1, got {members}")
    if batch_size is None:
        batch_size = members
    elif isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive number of members stepped together, got {batch_size!r}; "
                         f"leave it out (--batch-size) to step all {members} members at once, or give 1 to "
                         f"{members}")
    batch_size = min(int(batch_size), members)
    times = np.atleast_1d(np.asarray(start, dtype="datetime64[ns]"))
    variables = [str(v) for v in model.variables]
    x0, coords0 = fetch_state(state_source, times, variables, model.grid)
    seed = model.forecast_seed()  # one base seed for every batch of members

    total = OrderedDict(ensemble=np.arange(members))
    total.update((k, v) for k, v in coords0.items() if k != "variable")
    total["lead_time"] = np.array([np.timedelta64(h, "h") for h in range(hours + 1)])
    add_forecast_arrays(io, total, variables)  # unwritten hours read as NaN
    spatial = OrderedDict(hrrr_y=coords0["hrrr_y"], hrrr_x=coords0["hrrr_x"])
    io.add_array(spatial, "lat", data=torch.as_tensor(np.asarray(model.lat, dtype=np.float32)))
    io.add_array(spatial, "lon", data=torch.as_tensor(np.asarray(model.lon, dtype=np.float32)))
    base_attrs = {
        FORECAST_MARKER: 1,
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
    set_attributes(io, base_attrs)

    device = model.device
    bar = tqdm(total=members * hours, unit="member-h", disable=not progress, desc="forecast")
    done_hours = np.full(members, -1)
    finite_hours: set[int] = set()  # lead hours with at least one finite value
    completed = -1
    try:
        for first in range(0, members, batch_size):
            ens = np.arange(first, min(first + batch_size, members))
            x = x0.to(device).unsqueeze(0).expand(len(ens), *x0.shape)
            coords = OrderedDict(ensemble=ens)
            coords.update(coords0)
            for step, (xs, cs) in enumerate(model.create_iterator(x, coords, seed=seed)):
                out = OrderedDict((k, v) for k, v in cs.items() if k != "variable")
                io.write([xs[..., i, :, :].cpu() for i in range(len(variables))], out, variables)
                if bool(torch.isfinite(xs).any()):
                    finite_hours.add(step)
                done_hours[ens] = step
                if int(done_hours.min()) != completed:
                    completed = int(done_hours.min())
                    set_attributes(io, {"completed_lead_hours": completed})
                if step > 0:
                    bar.update(len(ens))
                if step == hours:
                    break
    finally:
        bar.close()
        close_output(io)
    if completed < hours:
        raise RuntimeError(f"the model's iterator stopped after lead hour {completed} of {hours}; the store keeps "
                           f"hours 0 to {completed} (completed_lead_hours = {completed})")
    if not finite_hours & set(range(1, hours + 1)):
        raise RuntimeError(f"the forecast holds no finite value after the initial state: every one of the {hours} "
                           "lead hours written is NaN or infinite. Check the model package, its normalisation "
                           "statistics and the conditioning data")
    return io
