"""Training samples from a StormCast dataset store.

:class:`StormCastDataset` is a :class:`torch.utils.data.Dataset` of
one-hour pairs ``(state at t, state at t + 1 h)`` with the conditioning at
``t`` already on the model grid and everything normalised, ready for the
StormCast regression and diffusion losses.

Reading is cheap and worker friendly:

* the object keeps only the store's path and small metadata, so it pickles
  for DataLoader workers; each worker process opens the zarr store on first
  use (and reopens it after a fork);
* a sample reads exactly one zarr chunk per array and hour (the state chunks
  at ``t`` and ``t + 1`` and the conditioning chunk at ``t``);
* the conditioning is regridded with a :class:`~stormcast_plugin.utils.grid.BilinearRegridder`
  whose weights are computed once per process
  (:func:`~stormcast_plugin.utils.grid.get_regridder`), not re-derived per sample.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from stormcast_plugin.utils.local_time import LOCAL_TIME_CHANNELS, local_time_channels
from stormcast_plugin.utils.time import as_time
from stormcast_plugin.io.dataset_store import DatasetStore, StoreError

__all__ = ["MultiStoreDataset", "StormCastDataset", "normalize_invariants", "pooled_statistics"]

_EPOCH = np.datetime64("1970-01-01T00", "ns")
_HOUR = np.timedelta64(1, "h")
_STAT_KEYS = ("state_mean", "state_std", "conditioning_mean", "conditioning_std")


def normalize_invariants(invariants: np.ndarray) -> np.ndarray:
    """Z-score each invariant channel over the grid (``[Ci, H, W]``, float32).

    Raw invariants (orography in metres) would reach the first convolution
    hundreds of times larger than the normalised state and drown it; the
    networks see each channel with zero mean and unit standard deviation over
    the model grid instead. A constant channel (an all-land mask) becomes zero.
    """
    inv = np.asarray(invariants, dtype=np.float64)
    if inv.shape[0] == 0:  # no invariant channels
        return inv.astype(np.float32)
    flat = inv.reshape(inv.shape[0], -1)
    mean = flat.mean(axis=1)
    std = flat.std(axis=1)
    std = np.where(std > 0, std, 1.0)
    return ((inv - mean[:, None, None]) / std[:, None, None]).astype(np.float32)


def _names_arg(value: Sequence[str] | None, default: Sequence[str], what: str) -> tuple[str, ...]:
    """Validate a list of channel names (``None`` gives ``default``)."""
    if value is None:
        return tuple(default)
    if isinstance(value, str):
        raise ValueError(f"{what} must be a sequence of names, got the string {value!r}; pass [{value!r}]")
    names = [str(v) for v in value]
    dup = sorted({v for v in names if names.count(v) > 1})
    if dup:
        raise ValueError(f"{what} lists {dup} more than once; pass each name once")
    return tuple(names)


def _bound(value: Any, what: str) -> np.datetime64 | None:
    return None if value is None else as_time(value, what, whole_hours=True)


class StormCastDataset(torch.utils.data.Dataset):
    """One-hour training pairs from a StormCast dataset store.

    Parameters
    ----------
    store : DatasetStore or path-like
        The dataset. Only its path is kept: each process (DataLoader worker)
        opens the zarr store read-only on first use.
    state_variables : sequence of str, optional
        State channels, in order; all the store's by default.
    conditioning_variables : sequence of str, optional
        Conditioning channels, in order; all the store's by default.
    invariant_names : sequence of str, optional
        Invariant channels, in order; all the store's by default (may be empty).
    start, end : datetime-like, optional
        Use only pairs whose two hours both lie in ``[start, end)`` (so a
        training period ending where a validation period starts never reads
        a validation hour).
    statistics : mapping, optional
        ``state_mean``, ``state_std``, ``conditioning_mean``,
        ``conditioning_std`` (arrays or tensors, one value per selected
        variable in the order above, e.g. another dataset's :attr:`stats`).
        By default the store's own statistics.
    crop : tuple[int, int], optional
        ``(h, w)`` of a random crop taken from every sample (the same window
        for all fields of a sample). The window is drawn from
        ``numpy.random.default_rng([seed, epoch, index])``: reproducible, and
        different from epoch to epoch (see :meth:`set_epoch`).
    seed : int
        Non-negative seed of the crops.
    normalize_invariants : bool
        Return the invariants z-scored per channel over the whole grid
        (:func:`normalize_invariants`) instead of as stored.
    local_time : bool
        Give every sample the two local-time channels of hour ``t``
        (:func:`~stormcast_plugin.utils.local_time.local_time_channels`), which
        the networks see right after the invariants.

    Attributes
    ----------
    path : pathlib.Path
        The store.
    state_variables, conditioning_variables, invariant_names : tuple of str
        Channels of the samples.
    stats : dict of str to torch.Tensor
        The normalisation statistics used, float32 ``[C]`` / ``[Ce]`` tensors.
    grid : ModelGrid
        The store's model grid (the full grid, also when cropping).
    crop : tuple[int, int] or None
        The crop size.

    Raises
    ------
    StoreError
        If the store is invalid, lacks a variable or an invariant, has no
        (valid) statistics and none are given, has unwritten invariants, its
        conditioning grid does not cover the model grid, or no valid pair
        lies in ``[start, end)``.
    ValueError
        If an argument is malformed (crop larger than the grid, start after
        end, statistics of the wrong length or with zero std ...).

    Notes
    -----
    A sample ``i`` is the pair of store hours ``(t, t + 1 h)`` where both are
    written and not recorded missing and ``t + 1 h`` is the next hour of the
    store; pairs touching a missing or unwritten hour are skipped. Items are
    dicts of tensors:

    ``state`` ``[C, H, W]`` float32
        Normalised state at ``t``: ``(x - mean) / std``.
    ``next_state`` ``[C, H, W]`` float32
        Normalised state at ``t + 1 h``.
    ``conditioning`` ``[Ce, H, W]`` float32
        Conditioning at ``t``, regridded bilinearly to the model grid, then
        normalised.
    ``invariants`` ``[Ci, H, W]`` float32
        As stored (StormCast feeds them to the networks unnormalised), or
        z-scored with ``normalize_invariants``.
    ``local_time`` ``[2, H, W]`` float32, only with ``local_time``
        The cos and sin of the local solar time at ``t``: the networks' input
        channels after the invariants (:attr:`input_invariant_names`), the
        ``extra`` of :class:`~stormcast_plugin.models.nn.stormcast_nets.StormCastNets`.
    ``time`` int64 scalar
        ``t`` in hours since 1970-01-01.
    ``offset`` int64 ``[2]``
        Row and column of the crop's first point in the full grid (zeros
        without crop), for position-dependent networks.

    With ``crop``, ``H, W`` are the crop size. Call :meth:`set_epoch` before
    each epoch; with ``persistent_workers=True`` the workers keep the epoch
    they were started with, so use non-persistent workers (the default) for
    crops that change every epoch.
    """

    def __init__(
        self,
        store: "DatasetStore | str | os.PathLike[str]",
        *,
        state_variables: Sequence[str] | None = None,
        conditioning_variables: Sequence[str] | None = None,
        invariant_names: Sequence[str] | None = None,
        start: Any = None,
        end: Any = None,
        statistics: Mapping[str, Any] | None = None,
        crop: tuple[int, int] | None = None,
        seed: int = 0,
        normalize_invariants: bool = False,
        local_time: bool = False,
    ) -> None:
        from stormcast_plugin.utils.interpolation import get_regridder

        if isinstance(store, DatasetStore):
            opened = store
        elif isinstance(store, (str, os.PathLike)):
            opened = DatasetStore.open(Path(store), mode="r", validate=False)
        else:
            raise ValueError(
                f"store must be a DatasetStore or the path of a dataset store, got {type(store).__name__}"
            )
        self.path = Path(opened.path)
        self.state_variables = _names_arg(state_variables, opened.state_variables, "state_variables")
        self.conditioning_variables = _names_arg(conditioning_variables, opened.conditioning_variables,
                                                 "conditioning_variables")
        self.invariant_names = _names_arg(invariant_names, opened.invariant_names, "invariant_names")
        if not self.state_variables:
            raise ValueError("state_variables is empty; pass at least one state variable (or None for all)")
        opened.validate(state_variables=self.state_variables, conditioning_variables=self.conditioning_variables,
                        require_statistics=statistics is None)
        unknown = [n for n in self.invariant_names if n not in opened.invariant_names]
        if unknown:
            raise StoreError(f"dataset {self.path} has no invariants {unknown}; it has "
                             f"{list(opened.invariant_names)}")
        self._state_ch = opened.variable_index(self.state_variables, "state")
        self._cond_ch = opened.variable_index(self.conditioning_variables, "conditioning")
        self._inv_ch = [opened.invariant_names.index(n) for n in self.invariant_names]
        if self.invariant_names:
            inv = opened.read_invariants(self.invariant_names)
            bad = [n for n, ok in zip(self.invariant_names, np.isfinite(inv).reshape(len(inv), -1).all(1))
                   if not ok]
            if bad:
                raise StoreError(f"dataset {self.path}: invariants {bad} are not written (NaN); write them "
                                 "with DatasetStore.write_invariants (`stormcast data prepare` does)")

        # Statistics.
        if statistics is None:
            full = opened.statistics()
            stats = {"state_mean": full["state_mean"][self._state_ch],
                     "state_std": full["state_std"][self._state_ch],
                     "conditioning_mean": full["conditioning_mean"][self._cond_ch],
                     "conditioning_std": full["conditioning_std"][self._cond_ch]}
        else:
            stats = self._check_statistics(statistics)
        self.stats: dict[str, torch.Tensor] = {
            k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in stats.items()
        }
        self._norm = {k: np.asarray(v, dtype=np.float32).reshape(-1, 1, 1) for k, v in stats.items()}

        # Grid, crop and the conditioning regridder (built here to fail early; cached per process).
        self.grid = opened.grid
        self._cond_lat = np.asarray(opened.cond_lat, dtype=np.float64)
        self._cond_lon = np.asarray(opened.cond_lon, dtype=np.float64)
        try:
            get_regridder(self._cond_lat, self._cond_lon, self.grid)
        except ValueError as err:
            raise StoreError(f"dataset {self.path}: the conditioning grid does not cover the model grid "
                             f"({err})") from err
        self.crop = self._check_crop(crop)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.normalize_invariants = bool(normalize_invariants)
        self.local_time = bool(local_time)
        self.epoch = 0

        # Valid pairs.
        self.start = _bound(start, "start")
        self.end = _bound(end, "end")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"start {self.start} is not before end {self.end}; pass start < end")
        times = opened.times
        ok = opened.written & ~opened.missing
        pair = ok[:-1] & ok[1:] & (np.diff(times) == _HOUR)
        if self.start is not None:
            pair &= times[:-1] >= self.start
        if self.end is not None:
            pair &= times[1:] < self.end
        self._index = np.flatnonzero(pair).astype(np.int64)
        if self._index.size == 0:
            lo = times[0] if self.start is None else self.start
            hi = times[-1] if self.end is None else self.end
            span = "the whole store" if self.start is None and self.end is None else f"[{lo}, {hi})"
            raise StoreError(
                f"dataset {self.path} has no valid pair of consecutive hours in {span} (it covers "
                f"{times[0]} .. {times[-1]}: {int(opened.written.sum())} of {len(times)} hours written, "
                f"{int(opened.missing.sum())} recorded missing); prepare more hours or widen start/end"
            )
        self._times = times[self._index]

        # Per-process state, rebuilt lazily (never pickled).
        self._pid: int | None = None
        self._store: DatasetStore | None = None
        self._arrays: dict[str, Any] = {}
        self._regridder: Any = None
        self._invariants: torch.Tensor | None = None

    # ----------------------------------------------------------- validation
    def _check_statistics(self, statistics: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if not isinstance(statistics, Mapping):
            raise ValueError(f"statistics must be a mapping with keys {list(_STAT_KEYS)}, got "
                             f"{type(statistics).__name__}")
        absent = [k for k in _STAT_KEYS if k not in statistics]
        if absent:
            raise ValueError(f"statistics lacks {absent}; pass all of {list(_STAT_KEYS)}")
        out = {}
        for key in _STAT_KEYS:
            value = statistics[key]
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().numpy()
            arr = np.asarray(value, dtype=np.float64).ravel()
            names = self.state_variables if key.startswith("state") else self.conditioning_variables
            if arr.size != len(names):
                raise ValueError(f"statistics[{key!r}] has {arr.size} values; expected one per selected "
                                 f"variable ({len(names)}: {list(names)[:10]})")
            bad = ~np.isfinite(arr) | ((arr <= 0) if key.endswith("std") else False)
            if bad.any():
                what = "NaN/infinite or non-positive" if key.endswith("std") else "NaN/infinite"
                raise ValueError(f"statistics[{key!r}] is {what} for {[n for n, b in zip(names, bad) if b][:10]}; "
                                 "pass finite means and positive standard deviations")
            out[key] = arr
        return out

    def _check_crop(self, crop: Any) -> tuple[int, int] | None:
        if crop is None:
            return None
        h, w = self.grid.shape
        try:
            ch, cw = (int(v) for v in crop)
            if any(isinstance(v, bool) or int(v) != v for v in crop):
                raise TypeError
        except (TypeError, ValueError):
            raise ValueError(f"crop must be a pair of integers (h, w), got {crop!r}") from None
        if not (1 <= ch <= h and 1 <= cw <= w):
            raise ValueError(f"crop {(ch, cw)} does not fit the {h} x {w} grid of dataset {self.path}; "
                             f"pass 1 <= h <= {h} and 1 <= w <= {w}")
        return (ch, cw)

    # -------------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_pid=None, _store=None, _arrays={}, _regridder=None, _invariants=None)
        return state

    def _open(self) -> None:
        """Open the store in this process (again after a fork)."""
        from stormcast_plugin.utils.interpolation import get_regridder

        pid = os.getpid()
        if self._pid == pid and self._store is not None:
            return
        store = DatasetStore.open(self.path, mode="r", validate=False)
        self._arrays = {name: store.group[name] for name in ("state", "conditioning")}
        self._regridder = get_regridder(self._cond_lat, self._cond_lon, self.grid)
        inv = store.read_invariants(self.invariant_names) if self.invariant_names else \
            np.zeros((0,) + tuple(self.grid.shape), dtype=np.float32)
        if self.normalize_invariants:
            inv = normalize_invariants(inv)
        self._invariants = torch.from_numpy(np.ascontiguousarray(inv, dtype=np.float32))
        self._store = store
        self._pid = pid

    # --------------------------------------------------------------- access
    def __len__(self) -> int:
        return int(self._index.size)

    @property
    def input_invariant_names(self) -> tuple[str, ...]:
        """Names of the networks' input channels after the conditioning: the
        invariants, then the local-time channels."""
        return self.invariant_names + (LOCAL_TIME_CHANNELS if self.local_time else ())

    @property
    def times(self) -> np.ndarray:
        """The first hour ``t`` of every sample, ``datetime64[ns]``."""
        return self._times.copy()

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the random crops (call before each epoch).

        Parameters
        ----------
        epoch : int
            Non-negative epoch number.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    def crop_offset(self, index: int) -> tuple[int, int]:
        """Row and column of the crop window of sample ``index`` at the current epoch."""
        if self.crop is None:
            return (0, 0)
        h, w = self.grid.shape
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        r0 = int(rng.integers(0, h - self.crop[0] + 1))
        c0 = int(rng.integers(0, w - self.crop[1] + 1))
        return (r0, c0)

    def _read(self, name: str, k: slice | int, channels: list[int]) -> np.ndarray:
        """Hour(s) ``k`` of array ``name``: one chunk per hour (all channels), then ``channels``."""
        a = self._arrays[name]
        block = np.asarray(a[k])  # a slice of hours is fetched concurrently by zarr
        axis = 1 if isinstance(k, slice) else 0
        if channels == list(range(block.shape[axis])):
            return np.array(block, dtype=np.float32, copy=None)
        return block[:, channels] if axis else block[channels]

    def _check_finite(self, what: str, data: np.ndarray, names: Sequence[str], k: int) -> None:
        if np.isfinite(data.sum(dtype=np.float64)):
            return
        bad = [n for n, ok in zip(names, np.isfinite(data).reshape(len(data), -1).all(1)) if not ok]
        raise StoreError(f"dataset {self.path}: {what} at {self._store.times[k]} has NaN or infinite values in "
                         f"{bad[:10]}; check the store (DatasetStore.validate(check_values=True))")

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """Sample ``index`` (see the class notes for the fields)."""
        n = len(self)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} is out of range for a dataset of {n} samples")
        self._open()
        k = int(self._index[i])
        norm = self._norm
        pair = self._read("state", slice(k, k + 2), self._state_ch)  # [2, C, H, W]: hours t and t + 1
        cond = self._read("conditioning", k, self._cond_ch)
        self._check_finite("state", pair[0], self.state_variables, k)
        self._check_finite("state", pair[1], self.state_variables, k + 1)
        if not pair.flags.writeable:
            pair = pair.copy()
        pair -= norm["state_mean"]  # in place: no temporaries
        pair /= norm["state_std"]
        s0, s1 = pair[0], pair[1]
        block = self._regridder.compact(cond)  # only the source points the grid needs
        finite = self._regridder.block_finite(block)
        if not bool(finite.all()):
            bad = [v for v, ok in zip(self.conditioning_variables, finite.tolist()) if not ok]
            raise StoreError(f"dataset {self.path}: conditioning at {self._store.times[k]} has NaN or infinite "
                             f"values in {bad[:10]} over the model grid; check the store")
        c = self._regridder.apply_compact(block)
        c = (c - torch.from_numpy(norm["conditioning_mean"])) / torch.from_numpy(norm["conditioning_std"])
        state = torch.from_numpy(np.ascontiguousarray(s0, dtype=np.float32))
        nxt = torch.from_numpy(np.ascontiguousarray(s1, dtype=np.float32))
        inv = self._invariants
        r0, c0 = self.crop_offset(i)
        if self.crop is not None:
            rows, cols = slice(r0, r0 + self.crop[0]), slice(c0, c0 + self.crop[1])
            state = state[:, rows, cols].contiguous()
            nxt = nxt[:, rows, cols].contiguous()
            c = c[:, rows, cols]
            inv = inv[:, rows, cols]
        hours = int((self._store.times[k] - _EPOCH) // _HOUR)
        item = {
            "state": state,
            "next_state": nxt,
            "conditioning": c.contiguous(),
            "invariants": inv.clone(),
            "time": torch.tensor(hours, dtype=torch.int64),
            "offset": torch.tensor([r0, c0], dtype=torch.int64),
        }
        if self.local_time:
            lon = np.asarray(self.grid.lon, dtype=np.float64)
            if self.crop is not None:
                lon = lon[rows, cols]
            item["local_time"] = torch.from_numpy(local_time_channels(self._store.times[k], lon)[0])
        return item

    # -------------------------------------------------------------- helpers
    def denormalize(self, x: "torch.Tensor | np.ndarray", kind: str = "state") -> "torch.Tensor | np.ndarray":
        """Undo the normalisation: ``x * std + mean`` along the channel axis.

        Parameters
        ----------
        x : torch.Tensor or np.ndarray
            ``[..., C, H, W]`` normalised fields (channel axis third from last).
        kind : {"state", "conditioning"}
            Which statistics to use.

        Returns
        -------
        torch.Tensor or np.ndarray
            Physical values, same type (tensors keep their device; dtype
            float32 or wider).

        Raises
        ------
        ValueError
            If ``kind`` is unknown or ``x`` has the wrong number of channels.
        """
        if kind not in ("state", "conditioning"):
            raise ValueError(f"kind {kind!r} is unknown; expected 'state' or 'conditioning'")
        mean, std = self.stats[f"{kind}_mean"], self.stats[f"{kind}_std"]
        c = mean.numel()
        if x.ndim < 3 or x.shape[-3] != c:
            raise ValueError(f"x has shape {tuple(x.shape)}; expected [..., {c}, H, W] ({kind} channels "
                             f"{list(self.state_variables if kind == 'state' else self.conditioning_variables)[:10]})")
        if isinstance(x, torch.Tensor):
            dt = torch.promote_types(x.dtype, torch.float32)
            return x.to(dt) * std.to(x.device, dt)[:, None, None] + mean.to(x.device, dt)[:, None, None]
        m = mean.numpy()[:, None, None]
        s = std.numpy()[:, None, None]
        return np.asarray(x, dtype=np.result_type(x.dtype, np.float32)) * s + m

    def __repr__(self) -> str:
        crop = f", crop={self.crop}" if self.crop else ""
        return (f"StormCastDataset({str(self.path)!r}, {len(self)} samples "
                f"{self._times[0]} .. {self._times[-1]}, {len(self.state_variables)} state / "
                f"{len(self.conditioning_variables)} conditioning / {len(self.invariant_names)} invariant "
                f"channels, grid {self.grid.shape}{crop})")


def pooled_statistics(parts: Sequence[tuple[Mapping[str, Any], int]]) -> dict[str, np.ndarray]:
    """Mean and standard deviation of several datasets taken together.

    ``parts`` holds ``(statistics, hours)`` per dataset, the statistics with
    the keys ``state_mean``, ``state_std``, ``conditioning_mean`` and
    ``conditioning_std`` over the same channels. Each dataset weighs by its
    hours: ``mean = sum(n_i m_i) / N`` and
    ``std = sqrt(sum(n_i (s_i^2 + m_i^2)) / N - mean^2)``, the moments of
    all the hours pooled (in float64).
    """
    if not parts:
        raise ValueError("pooled_statistics needs at least one (statistics, hours) pair")
    total = float(sum(int(n) for _, n in parts))
    if total <= 0 or any(int(n) < 0 for _, n in parts):
        raise ValueError(f"hours {[n for _, n in parts]} must be non-negative and not all zero")
    out = {}
    for kind in ("state", "conditioning"):
        mean = sum(int(n) * np.asarray(st[f"{kind}_mean"], np.float64) for st, n in parts) / total
        second = sum(int(n) * (np.asarray(st[f"{kind}_std"], np.float64) ** 2
                               + np.asarray(st[f"{kind}_mean"], np.float64) ** 2) for st, n in parts) / total
        out[f"{kind}_mean"] = mean
        out[f"{kind}_std"] = np.sqrt(np.maximum(second - mean ** 2, 0.0))
    return out


class MultiStoreDataset(torch.utils.data.ConcatDataset):
    """Several :class:`StormCastDataset` of one domain read as one training set.

    The parts must share the variables, the normalisation statistics, the
    grid and the invariants (a model has one domain); samples ``0 ..
    len(parts[0]) - 1`` come from the first part, and so on. Training reads
    its channels' names, statistics and grid from here as from a single
    dataset.
    """

    def __init__(self, parts: Sequence[StormCastDataset]) -> None:
        parts = list(parts)
        if not parts:
            raise ValueError("MultiStoreDataset needs at least one dataset")
        first = parts[0]
        for other in parts[1:]:
            for attr in ("state_variables", "conditioning_variables", "input_invariant_names"):
                if getattr(other, attr) != getattr(first, attr):
                    raise ValueError(f"datasets {first.path} and {other.path} differ in {attr}: "
                                     f"{list(getattr(first, attr))} vs {list(getattr(other, attr))}")
            if any(not torch.equal(first.stats[k], other.stats[k]) for k in first.stats):
                raise ValueError(f"datasets {first.path} and {other.path} are normalised with different statistics; "
                                 "pass the same statistics= to every part (see pooled_statistics)")
        super().__init__(parts)
        self.parts = parts

    def __getattr__(self, name: str) -> Any:
        # Names, statistics, grid, crop, denormalize ... are those of the first part.
        if name in ("parts", "datasets", "cumulative_sizes") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.parts[0], name)

    @property
    def times(self) -> np.ndarray:
        """The first hour of every sample, part after part."""
        return np.concatenate([p.times for p in self.parts])

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of every part (it seeds the random crops)."""
        for p in self.parts:
            p.set_epoch(epoch)

    def __repr__(self) -> str:
        return f"MultiStoreDataset({len(self)} samples from {len(self.parts)} stores: {', '.join(repr(p) for p in self.parts)})"
