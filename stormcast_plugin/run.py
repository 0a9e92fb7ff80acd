"""Run StormCast forecasts and hindcast campaigns, in one process or across ranks.

:func:`run_forecast` is what ``stormcast forecast`` and ``stormcast
hindcast`` run. The work is cut into units, one per initial time and block
of ``batch_size`` members, dealt over the ranks of a ``torchrun`` job by
their member-hours still to compute (the same deal on every rank). A unit
fetches its initial state, steps the model's ``create_iterator`` and writes
each hour as soon as it exists, then flags it in the store's ``written``
array (:mod:`stormcast_plugin.io.forecast_store`). Members are seeded by
their id, so a member's forecast does not depend on the rank that runs it:
a run over N processes writes the same store as one process, bit for bit on
the CPU.

Under torchrun rank 0 creates the store (arrays, coordinates, attributes),
then every rank writes only its own units' chunks. A run stopped at any
moment (Ctrl-C, a killed rank) leaves a store whose flags say exactly what
is in it; ``resume=True`` computes the member-hours without a flag and
nothing else, starting each member from its last stored hour.

Each rank writes its hours in a background thread (:class:`_Writer`), so the
device steps on while the previous hour is compressed and stored; the thread
writes the fields before their flags, and a run that stops still writes
what it had queued before it returns.

A unit that runs out of device memory is split in two and goes on from its
last hour (and later units step at most that many members), with a warning.
"""

from __future__ import annotations

import queue
import threading
import time as _clock
import warnings
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from stormcast_plugin.distributed import Ranks
from stormcast_plugin.io.forecast_store import (
    add_forecast_arrays,
    close_output,
    completed_from_written,
    open_existing,
    open_output,
    read_state,
    read_written,
    set_attributes,
    write_hour,
)
from stormcast_plugin.io.replace import FORECAST_MARKER

# open_output lives in io.forecast_store; it is named here too, beside the runner that fills its stores.
__all__ = ["RESUME_KEYS", "fetch_state", "open_output", "run_forecast"]

_HOUR = np.timedelta64(1, "h")
_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
_POLL_S = 2.0  # how often rank 0 reads the other ranks' flags for the progress bar

RESUME_KEYS = ("model", "seed", "members", "hours", "sampler_steps", "regression_only", "precision", "noise_device",
               "state_source", "conditioning_source")
"""Store attributes a resumed run must match (when the store and the run both have them)."""


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


@dataclass
class _Task:
    """Members of one initial time to write from lead hour ``start`` on; ``state``
    is their state at ``start - 1`` when already in memory."""

    time_index: int
    members: np.ndarray
    start: int
    state: torch.Tensor | None = None


def _units(n_times: int, members: int, block: int) -> list[tuple[int, np.ndarray]]:
    """Every ``(time index, members)`` unit: initial times outer, blocks of members inner."""
    return [(t, np.arange(m, min(m + block, members))) for t in range(n_times) for m in range(0, members, block)]


def _deal(loads: Sequence[int], world: int) -> list[list[int]]:
    """Unit indices per rank: the largest unit first, each to the rank with the
    least work so far (ties: the lower rank); each rank's units in order.
    Every rank computes the same deal from the same loads."""
    work, out = [0] * world, [[] for _ in range(world)]
    for i in sorted(range(len(loads)), key=lambda i: (-loads[i], i)):
        if loads[i]:
            r = min(range(world), key=lambda r: (work[r], r))
            out[r].append(i)
            work[r] += loads[i]
    return [sorted(o) for o in out]


def _tasks(time_index: int, members: np.ndarray, written: np.ndarray, batch: int) -> list[_Task]:
    """What is left of a unit: its members grouped by their first unwritten
    hour (normally one group), at most ``batch`` at a time."""
    missing = ~written[members, time_index]
    first = np.where(missing.any(axis=1), missing.argmax(axis=1), written.shape[-1])
    tasks = []
    for start in np.unique(first[first < written.shape[-1]]):
        group = members[first == start]
        tasks += [_Task(time_index, group[i:i + batch], int(start)) for i in range(0, len(group), batch)]
    return tasks


class _Writer:
    """Writes in a background thread, in order, at most ``depth`` items waiting.

    An error in the thread is raised by the next :meth:`put` or by :meth:`close`.
    """

    def __init__(self, write: Any, depth: int = 2) -> None:
        self._write, self.error = write, None
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._loop, name="stormcast-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            if self.error is None:
                try:
                    self._write(*item)
                except BaseException as err:  # noqa: BLE001 - handed to the stepping thread
                    self.error = err

    def put(self, *item: Any) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put(item)

    def close(self, *, raise_error: bool = True) -> None:
        """Write what is queued, stop the thread, and raise its error (if asked)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if raise_error and self.error is not None:
            raise self.error


def _default_ranks(model: Any) -> Ranks:
    import os

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return Ranks(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                     int(os.environ.get("LOCAL_RANK", "0")), model.device)
    return Ranks(device=model.device)


def _precision(model: Any) -> str:
    dtype = getattr(model, "autocast_dtype", None)
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


class _Runner:
    """One rank's share of a run: its tasks, the store writes and, on rank 0, the progress."""

    def __init__(self, model: Any, source: Any, io: Any, times: np.ndarray, hours: int, seed: int,
                 written: np.ndarray, batch: int, ranks: Ranks, bar: Any) -> None:
        self.model, self.source, self.io, self.times, self.hours, self.seed = model, source, io, times, hours, seed
        self.variables = [str(v) for v in model.variables]
        self.written, self.batch, self.ranks, self.bar = written, batch, ranks, bar
        self.completed = completed_from_written(written)
        self.finite = self.wrote = False
        self.writer = _Writer(self._store)
        self._cached: tuple[int, torch.Tensor] | None = None
        self._polled = _clock.monotonic()

    # ------------------------------------------------------------- inputs
    def _coords(self, members: np.ndarray, time_index: int, lead: int) -> OrderedDict:
        return OrderedDict(ensemble=members, time=self.times[time_index:time_index + 1],
                           lead_time=np.array([lead * _HOUR]), variable=np.array(self.variables),
                           hrrr_y=np.asarray(self.model.grid.y), hrrr_x=np.asarray(self.model.grid.x))

    def keep_initial_state(self, time_index: int, x0: torch.Tensor) -> None:
        """Use ``x0`` (fetched already) as the initial state at ``time_index``."""
        self._cached = (time_index, x0)

    def initial_state(self, time_index: int) -> torch.Tensor:
        """``[1, 1, C, H, W]`` at an initial time (the last one fetched is kept)."""
        if self._cached is None or self._cached[0] != time_index:
            x0, _ = fetch_state(self.source, self.times[time_index:time_index + 1], self.variables, self.model.grid)
            self._cached = (time_index, x0)
        return self._cached[1]

    def _input(self, task: _Task) -> tuple[torch.Tensor, OrderedDict]:
        device = self.model.device
        if task.state is not None:
            x = task.state
        elif task.start == 0:
            x0 = self.initial_state(task.time_index).to(device)
            x = x0.unsqueeze(0).expand(len(task.members), *x0.shape)
        else:  # resumed: the members' last stored hour
            state = read_state(self.io, self.variables, task.members, task.time_index, task.start - 1)
            x = torch.from_numpy(state).to(device)[:, None, None]
        return x, self._coords(task.members, task.time_index, max(task.start - 1, 0))

    # ------------------------------------------------------------- stepping
    def run(self, tasks: list[_Task]) -> None:
        queue = deque(tasks)
        while queue:
            task = queue.popleft()
            if len(task.members) > self.batch:  # a batch halved earlier applies to later tasks too
                queue.extendleft(reversed(self._split(task, self.batch)))
                continue
            queue.extendleft(reversed(self._run_task(task)))

    def _split(self, task: _Task, size: int) -> list[_Task]:
        return [_Task(task.time_index, task.members[i:i + size], task.start,
                      None if task.state is None else task.state[i:i + size])
                for i in range(0, len(task.members), size)]

    def _run_task(self, task: _Task) -> list[_Task]:
        """Run a task to its last hour; after an out-of-memory error, what is left of it, halved."""
        last: tuple[torch.Tensor, int] | None = None
        try:
            x, coords = self._input(task)
            lead = int(coords["lead_time"][0] / _HOUR)
            for step, (xs, cs) in enumerate(self.model.create_iterator(x, coords, seed=self.seed)):
                lead = int(cs["lead_time"][0] / _HOUR)
                if lead >= task.start:
                    self._write(xs, cs, task.time_index, task.members, lead)
                last = (xs, lead)
                if lead >= self.hours:
                    break
        except _OOM:
            if len(task.members) == 1:
                raise RuntimeError(f"out of memory with a single member on {self.model.device}; try "
                                   "--precision bf16 or a device with more memory") from None
            self.batch = max(1, len(task.members) // 2)
            warnings.warn(f"rank {self.ranks.rank}: out of memory with {len(task.members)} members stepped "
                          f"together on {self.model.device}; going on with batches of {self.batch} members",
                          RuntimeWarning, stacklevel=2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            # go on from the last hour in hand (the members' state after it is not written yet)
            rest = task if last is None else _Task(task.time_index, task.members, last[1] + 1, last[0])
            return self._split(rest, self.batch) if rest.start <= self.hours else []
        if lead < self.hours:
            raise RuntimeError(f"the model's iterator stopped after lead hour {lead} of {self.hours}; the store "
                               f"keeps hours 0 to {lead} (completed_lead_hours = {min(self.completed, lead)})")
        return []

    def _write(self, xs: torch.Tensor, cs: OrderedDict, time_index: int, members: np.ndarray, lead: int) -> None:
        if lead > 0:
            self.wrote = True
            self.finite = self.finite or bool(torch.isfinite(xs).any())
        out = OrderedDict((k, v) for k, v in cs.items() if k != "variable")
        self.writer.put(xs.cpu(), out, time_index, members, lead)

    def _store(self, fields: torch.Tensor, coords: OrderedDict, time_index: int, members: np.ndarray,
               lead: int) -> None:
        """In the writer thread: the fields, their flags, the progress."""
        write_hour(self.io, fields, coords, self.variables)
        self.written[members, time_index, lead] = True
        if lead > 0:
            self.progress(len(members))

    # ------------------------------------------------------------- progress (rank 0)
    def progress(self, new: int = 0, *, final: bool = False) -> None:
        """Count ``new`` member-hours of this rank; rank 0 also counts the others'
        (from the store's flags) and keeps ``completed_lead_hours`` current."""
        if not self.ranks.main:
            return
        if self.ranks.world == 1:
            self.bar.update(new)
            self._set_completed(self.written)
            return
        self.bar.update(new)
        if final or _clock.monotonic() - self._polled >= _POLL_S:
            self._polled = _clock.monotonic()
            flags = read_written(self.io)
            self.bar.update(max(0, int(flags[..., 1:].sum()) - self.bar.n))
            self._set_completed(flags)

    def _set_completed(self, flags: np.ndarray) -> None:
        done = completed_from_written(flags)
        if done != self.completed:
            self.completed = done
            set_attributes(self.io, {"completed_lead_hours": done})


def _check_resumable(io: Any, expected: dict[str, Any], times: np.ndarray, variables: Sequence[str],
                     path: Any) -> dict[str, Any]:
    """The stored attributes of a store to resume, checked against the run's."""
    attrs = dict(io.root.attrs)
    have_times = np.asarray(io.coords["time"], dtype="datetime64[ns]")
    if len(have_times) != len(times) or (have_times != times).any():
        raise ValueError(f"--resume: {path} holds initial times {have_times.astype('datetime64[h]').tolist()}; this "
                         f"run asks for {times.astype('datetime64[h]').tolist()}. Give the store's own times")
    for key in RESUME_KEYS:
        want, have = expected.get(key), attrs.get(key)
        if key == "seed" and want is None:
            continue  # a seedless model takes the store's seed
        if want is not None and have is not None and str(want) != str(have):
            raise ValueError(f"--resume: {path} was written with {key} = {have!r}; this run has {key} = {want!r}. "
                             f"Resume with the store's settings ({key} {have}) or write a new store")
    missing = [v for v in variables if v not in io.root]
    if missing:
        raise ValueError(f"--resume: {path} lacks the model's variables {missing}; resume with the model that "
                         "wrote it")
    return attrs


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
    resume: bool = False,
    ranks: Ranks | None = None,
) -> Any:
    """Forecast ``hours`` hours from each initial time for ``members`` members.

    Parameters
    ----------
    model : StormCast
        The prognostic model (its seed fixes every member's noise; a
        seedless model's base seed is drawn once, on rank 0).
    state_source : DataSource
        Provides the initial states on the model grid.
    start : datetime64 or sequence
        Initial time(s): several make a hindcast campaign in one store.
    hours : int
        Number of one-hour steps.
    io : earth2studio IO backend, str or Path
        A backend receives arrays ``[ensemble, time, lead_time, hrrr_y,
        hrrr_x]`` per variable, 2-D ``lat``/``lon`` and the ``written``
        flags. A path names a zarr store: rank 0 creates it, or with
        ``resume`` every rank opens it. Under torchrun (more than one rank)
        ``io`` must be a path.
    members : int
        Ensemble size (members differ only by their noise).
    batch_size : int, optional
        Members stepped together, at least 1 (default: all; more than
        ``members`` steps all of them). It also sets the units dealt to the
        ranks; a resumed store keeps the blocks it was written with.
    progress : bool
        Show a progress bar over member-hours (rank 0, counting every rank).
    attrs : dict, optional
        Extra global attributes for the store.
    resume : bool
        Write into the existing store at ``io``, computing only the
        member-hours it has not flagged as written.
    ranks : Ranks, optional
        This process among the run's (default: torch.distributed's group
        when initialised, else a single process).

    Returns
    -------
    io
        This rank's backend, complete and closed.

    Raises
    ------
    ValueError
        For hours, members or a batch size below 1, or a store that cannot be
        resumed with these settings, before anything is written.
    RuntimeError
        When the run ends without every lead hour written for every member,
        or when no lead hour after the initial state holds a finite value;
        the store keeps what was written, flagged.
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
    ranks = ranks or _default_ranks(model)
    is_path = isinstance(io, (str, Path))
    if (ranks.world > 1 or resume) and not is_path:
        raise ValueError("a run over several processes, or a resumed one, writes a zarr store every rank can open: "
                         f"pass its path as io (got a {type(io).__name__})")
    times = np.atleast_1d(np.asarray(start, dtype="datetime64[ns]"))
    variables = [str(v) for v in model.variables]
    run_attrs = {
        FORECAST_MARKER: 1,
        "model": str(model.package_info.get("name", "stormcast")),
        "model_description": str(model.package_info.get("description", "")),
        "seed": None if model.seed is None else int(model.seed),
        "members": int(members),
        "hours": int(hours),
        "sampler_steps": int(model.sampler.num_steps),
        "regression_only": bool(model.regression_only),
        "precision": _precision(model),
        "noise_device": model.noise_device.type,
        **(attrs or {}),
    }

    # Rank 0 creates (or checks) the store and tells the others where it stands.
    setup: dict[str, Any] = {}
    first: torch.Tensor | None = None
    if ranks.main:
        try:
            if resume:
                io = open_existing(io)
                stored = _check_resumable(io, run_attrs, times, variables, io.store.root)
                setup = {"seed": int(stored["seed"]), "block": int(io.root["written"].chunks[0])}
            else:
                setup = {"seed": model.forecast_seed(), "block": batch_size}
                first, _ = fetch_state(state_source, times[:1], variables, model.grid)  # fails before writing
                io = open_output(io) if is_path else io
                _create(io, model, times, members, hours, variables, {**run_attrs, "seed": setup["seed"]},
                        batch_size)
        except Exception as err:
            ranks.broadcast({"error": f"{type(err).__name__}: {err}"})
            raise
    setup = ranks.broadcast(setup)
    if "error" in setup:
        raise RuntimeError(f"rank 0 could not prepare the store: {setup['error']}")
    if not ranks.main:
        io = open_existing(io)

    block = setup["block"]
    written = read_written(io) if resume else np.zeros((members, len(times), hours + 1), dtype=bool)
    units = _units(len(times), members, block)
    loads = [int((~written[ens, t, 1:]).sum()) + int((~written[ens, t, 0]).any()) for t, ens in units]
    mine = [task for i in _deal(loads, ranks.world)[ranks.rank]
            for task in _tasks(*units[i], written, min(batch_size, block))]
    bar = tqdm(total=members * len(times) * hours, initial=int(written[..., 1:].sum()), unit="member-h",
               disable=not (progress and ranks.main), desc="hindcast" if len(times) > 1 else "forecast")
    runner = _Runner(model, state_source, io, times, hours, setup["seed"], written, min(batch_size, block), ranks,
                     bar)
    if first is not None:
        runner.keep_initial_state(0, first)
    try:
        runner.run(mine)
        runner.writer.close()
        handle = ranks.all_max([int(runner.wrote), int(runner.finite)], wait=False)
        while not handle.is_completed():  # rank 0 keeps counting the others' hours meanwhile
            runner.progress()
            _clock.sleep(0.2)
        wrote, finite = handle.result()
        runner.progress(final=True)
    finally:
        runner.writer.close(raise_error=False)  # what was queued is written (and flagged) even on failure
        bar.close()
        if ranks.main:
            _finish(runner)
        close_output(io)
    if ranks.main and runner.completed < hours:
        raise RuntimeError(f"the run ended with member-hours not written (completed_lead_hours = "
                           f"{runner.completed}); run it again with --resume to compute only those")
    if wrote and not finite:
        raise RuntimeError(f"the forecast holds no finite value after the initial state: every one of the {hours} "
                           "lead hours written is NaN or infinite. Check the model package, its normalisation "
                           "statistics and the conditioning data")
    return io


def _create(io: Any, model: Any, times: np.ndarray, members: int, hours: int, variables: list[str],
            attrs: dict[str, Any], block: int) -> None:
    """Arrays, coordinates, lat/lon and attributes of a new store (rank 0)."""
    total = OrderedDict(ensemble=np.arange(members), time=times,
                        lead_time=np.array([h * _HOUR for h in range(hours + 1)]),
                        hrrr_y=np.asarray(model.grid.y), hrrr_x=np.asarray(model.grid.x))
    add_forecast_arrays(io, total, variables, member_chunk=block)  # unwritten hours read as NaN
    spatial = OrderedDict(hrrr_y=total["hrrr_y"], hrrr_x=total["hrrr_x"])
    io.add_array(spatial, "lat", data=torch.as_tensor(np.asarray(model.lat, dtype=np.float32)))
    io.add_array(spatial, "lon", data=torch.as_tensor(np.asarray(model.lon, dtype=np.float32)))
    set_attributes(io, {**attrs, "completed_lead_hours": -1})


def _finish(runner: _Runner) -> None:
    """Rank 0's last word in the store: ``completed_lead_hours`` from every rank's flags."""
    try:
        flags = read_written(runner.io) if runner.ranks.world > 1 else runner.written
        if flags is not None:
            runner._set_completed(flags)
    except Exception as err:  # noqa: BLE001 - the run's own error matters more; the flags stay exact
        warnings.warn(f"could not update completed_lead_hours: {err}", RuntimeWarning, stacklevel=2)
