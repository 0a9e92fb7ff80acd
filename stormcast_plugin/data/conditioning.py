"""Conditioning fields (ERA5, say) fetched from an earth2studio source onto the model grid.

StormCast is conditioned every step on 26 coarse global fields interpolated
to the HRRR grid. earth2studio's wrapper re-derives the interpolation with
xarray at every step; :class:`ConditioningFetcher` builds the bilinear weights
once (:func:`stormcast_plugin.utils.interpolation.get_regridder`) and applies them on the
model's device, reading only the block of source points the domain needs.

Importing this module does not import earth2studio: any object with the
earth2studio source call signature works.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from stormcast_plugin.utils.coords import LAT_NAMES, LON_NAMES, PROJECTED_DIM_PAIRS
from stormcast_plugin.utils.grid import ModelGrid
from stormcast_plugin.utils.interpolation import get_regridder
from stormcast_plugin.utils.time import as_lead_times, as_times, format_lead_times, format_times

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch
    import xarray as xr

__all__ = ["ConditioningFetcher"]

_MAX_LISTED = 8


def _broadcast_leads(leads: np.ndarray, n: int) -> np.ndarray:
    """One lead time for every one of ``n`` init times, or one per init time."""
    if leads.size == 1:
        return np.repeat(leads, n)
    if leads.size != n:
        raise ValueError(
            f"lead_time has {leads.size} values for {n} init times; expected one lead time (applied to "
            "every init time) or one per init time"
        )
    return leads


def _positions(available: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each ``wanted`` value in ``available`` and a mask of those found."""
    lookup: dict[Any, int] = {}
    for i, v in enumerate(available.tolist()):
        lookup.setdefault(v, i)
    pos = np.array([lookup.get(v, -1) for v in wanted.tolist()], dtype=np.int64)
    return pos, pos >= 0


class ConditioningFetcher:
    """Fetch conditioning variables and put them on the model grid.

    Parameters
    ----------
    source : DataSource or ForecastSource
        An earth2studio source: ``source(time, variable)`` returning
        ``[time, variable, lat, lon]`` (DataSource) or
        ``source(time, lead_time, variable)`` returning
        ``[time, lead_time, variable, lat, lon]`` (ForecastSource). The spatial
        dims may be ``lat``/``lon`` (or ``latitude``/``longitude``) 1-D
        coordinates of a regular grid, which is regridded bilinearly, or
        ``hrrr_y``/``hrrr_x`` (or ``y``/``x``) with the model grid's sizes,
        which is used as is.
    variables : Sequence[str]
        Variable names, in the channel order of the result.
    grid : ModelGrid
        The model grid.
    device : torch.device or str, optional
        Where the result (and the regridding weights) live; CPU by default.
    forecast : bool, optional
        Whether ``source`` is a ForecastSource. By default it is one when its
        call signature has a ``lead_time`` parameter.
    regrid_method : {"grid_sample", "gather"}, optional
        How the cached bilinear weights are applied (see
        :class:`stormcast_plugin.utils.interpolation.BilinearRegridder`).

    Raises
    ------
    ValueError
        If ``source`` is not callable, ``variables`` is empty or has duplicates
        or non-strings, ``grid`` is not a ModelGrid, ``regrid_method`` is
        unknown, or the kind of source cannot be told from its signature.
    """

    def __init__(
        self,
        source: Any,
        variables: Sequence[str],
        grid: ModelGrid,
        *,
        device: "torch.device | str | None" = None,
        forecast: bool | None = None,
        regrid_method: str = "grid_sample",
    ) -> None:
        import torch

        if not callable(source):
            raise ValueError(
                f"source must be a callable earth2studio data source, got {type(source).__name__}"
            )
        if isinstance(variables, str):
            raise ValueError(
                f"variables must be a sequence of names, got the string {variables!r}; pass [{variables!r}]"
            )
        names = list(np.asarray(list(variables), dtype=object).tolist())
        if not names:
            raise ValueError(
                "variables is empty; pass the conditioning variable names (e.g. CONDITIONING_VARIABLES)"
            )
        bad = [v for v in names if not isinstance(v, str)]
        if bad:
            raise ValueError(f"variables {bad} are not strings; pass variable names such as 'u10m'")
        dups = sorted({v for v in names if names.count(v) > 1})
        if dups:
            raise ValueError(f"variables {dups} are listed more than once; pass each name once")
        if not isinstance(grid, ModelGrid):
            raise ValueError(
                f"grid must be a ModelGrid, got {type(grid).__name__}; build one with ModelGrid.hrrr()"
            )
        if regrid_method not in ("grid_sample", "gather"):
            raise ValueError(
                f"regrid_method {regrid_method!r} is unknown; expected 'grid_sample' or 'gather'"
            )
        if forecast is None:
            try:
                params = inspect.signature(source).parameters
            except (TypeError, ValueError):
                raise ValueError(
                    f"cannot read the call signature of source {type(source).__name__}; pass "
                    "forecast=True for a ForecastSource or forecast=False for a DataSource"
                ) from None
            forecast = "lead_time" in params
        self.source = source
        self.variables: tuple[str, ...] = tuple(str(v) for v in names)
        self.grid = grid
        self.device = torch.device("cpu" if device is None else device)
        self.forecast = bool(forecast)
        self.regrid_method = regrid_method

    def __repr__(self) -> str:
        kind = "ForecastSource" if self.forecast else "DataSource"
        return (f"ConditioningFetcher({type(self.source).__name__} [{kind}], "
                f"{len(self.variables)} variables, "
                f"grid={self.grid.name!r} {self.grid.shape}, device={self.device})")

    # ------------------------------------------------------------------

    def __call__(self, init_time: Any, lead_time: Any) -> "torch.Tensor":
        """Conditioning at ``init_time + lead_time`` on the model grid.

        Parameters
        ----------
        init_time : np.datetime64, datetime or array of them
            ``T`` initialisation times (UTC).
        lead_time : np.timedelta64, timedelta or array of them
            One lead time for all init times, or one per init time.

        Returns
        -------
        torch.Tensor
            ``[T, C, H, W]`` float32 in physical units on ``device``; channels in
            ``variables`` order.

        Raises
        ------
        ValueError
            If times are malformed, the source fails or lacks some of the
            requested times or variables, its grid does not fit the model grid,
            or the result contains NaN.
        """
        import torch

        times = as_times(init_time, "init_time")
        leads = _broadcast_leads(as_lead_times(lead_time, "lead_time"), times.size)
        h, w = self.grid.shape
        if not self.forecast:
            valid = times + leads
            request = np.unique(valid)
            block = self._fetch(request, None)
            pos = np.searchsorted(request, valid)
            if not np.array_equal(pos, np.arange(request.size)):
                block = block[torch.from_numpy(pos).to(block.device)]
            return block.contiguous()

        out = None
        groups = np.unique(leads)
        for lead in groups:
            rows = np.flatnonzero(leads == lead)
            request = np.unique(times[rows])
            block = self._fetch(request, lead)
            pos = np.searchsorted(request, times[rows])
            if groups.size == 1 and np.array_equal(pos, np.arange(request.size)):
                out = block
                break
            if out is None:
                out = torch.empty((times.size, len(self.variables), h, w), dtype=torch.float32,
                                  device=self.device)
            out[torch.from_numpy(rows).to(self.device)] = block[torch.from_numpy(pos).to(self.device)]
        return out.contiguous()

    # ------------------------------------------------------------------

    def _call_source(self, times: np.ndarray, lead: np.timedelta64 | None) -> "xr.DataArray":
        import xarray as xr

        variables = list(self.variables)
        try:
            if lead is None:
                da = self.source(times, variables)
            else:
                da = self.source(times, np.array([lead], dtype="timedelta64[ns]"), variables)
        except Exception as err:  # the source's own error is chained below
            what = f"times {format_times(times)}"
            if lead is not None:
                what += f" at lead time {format_lead_times([lead])}"
            raise ValueError(
                f"source {type(self.source).__name__} failed to return {what} for variables "
                f"{variables[:_MAX_LISTED]}{' ...' if len(variables) > _MAX_LISTED else ''}: "
                f"{type(err).__name__}: {err}; check that the source holds these times and variables"
            ) from err
        if not isinstance(da, xr.DataArray):
            raise ValueError(
                f"source {type(self.source).__name__} returned {type(da).__name__}; expected an "
                "xarray.DataArray "
                "with dims [time, (lead_time,) variable, lat, lon]"
            )
        return da

    def _fetch(self, times: np.ndarray, lead: np.timedelta64 | None) -> "torch.Tensor":
        """``[len(times), C, H, W]`` float32 on ``device`` for unique ``times``."""
        import torch

        da = self._call_source(times, lead)
        src = type(self.source).__name__
        need = ["time", "variable"] + ([] if lead is None else ["lead_time"])
        absent = [d for d in need if d not in da.dims]
        if absent:
            raise ValueError(
                f"source {src} returned dims {list(da.dims)} without {absent}; expected "
                f"[{', '.join(need)}, lat, lon]"
            )
        # Variables by name, in our order.
        names = np.asarray(da["variable"].values).astype(str)
        vpos, found = _positions(names, np.array(self.variables, dtype=object).astype(str))
        if not found.all():
            missing = [v for v, ok in zip(self.variables, found) if not ok]
            raise ValueError(
                f"source {src} returned no data for variables {missing}; it returned {names.tolist()[:20]}. "
                "Use variable names of the source's lexicon or a source that provides them"
            )
        # Times (and the lead time).
        got_times = np.asarray(da["time"].values).astype("datetime64[ns]").ravel()
        tpos, found = _positions(got_times, times)
        if not found.all():
            what = "valid times" if lead is None else "init times"
            raise ValueError(
                f"source {src} returned no data for {what} {format_times(times[~found])}; it returned "
                f"{format_times(got_times)}. Use times the source holds"
            )
        if lead is not None:
            got_leads = np.asarray(da["lead_time"].values).astype("timedelta64[ns]").ravel()
            lpos, found = _positions(got_leads, np.array([lead], dtype="timedelta64[ns]"))
            if not found.all():
                raise ValueError(
                    f"source {src} returned no data for lead time {format_lead_times([lead])} (init times "
                    f"{format_times(times)}); it returned lead times {format_lead_times(got_leads)}"
                )
            da = da.isel(lead_time=int(lpos[0]))
        elif "lead_time" in da.dims:
            if da.sizes["lead_time"] != 1:
                raise ValueError(
                    f"source {src} is used as a DataSource but returned {da.sizes['lead_time']} lead times; "
                    "pass forecast=True if it is a ForecastSource"
                )
            da = da.isel(lead_time=0)
        # Spatial dims.
        other = [d for d in da.dims if d not in ("time", "variable", "lead_time")]
        lat_dim = next((d for d in LAT_NAMES if d in other), None)
        lon_dim = next((d for d in LON_NAMES if d in other), None)
        if lat_dim is not None and lon_dim is not None:
            spatial = (lat_dim, lon_dim)
        else:
            spatial = next((pair for pair in PROJECTED_DIM_PAIRS if all(d in other for d in pair)), None)
            if spatial is None:
                raise ValueError(
                    f"source {src} returned spatial dims {other}; expected 1-D lat/lon (or "
                    "latitude/longitude) coordinates of a regular grid, or hrrr_y/hrrr_x (y/x) dims "
                    "on the model grid"
                )
        extra = [d for d in other if d not in spatial]
        if any(da.sizes[d] != 1 for d in extra):
            raise ValueError(
                f"source {src} returned extra dims {[(d, da.sizes[d]) for d in extra]}; expected only "
                f"time, variable and {list(spatial)} (size-1 extra dims are dropped)"
            )
        if extra:
            da = da.isel({d: 0 for d in extra})
        da = da.transpose("time", "variable", *spatial)
        values = da.values
        identity = (np.array_equal(tpos, np.arange(got_times.size))
                    and np.array_equal(vpos, np.arange(names.size)))

        if spatial[0] in LAT_NAMES:
            try:
                lat = np.asarray(da[spatial[0]].values, dtype=np.float64)
                lon = np.asarray(da[spatial[1]].values, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"source {src} returned non-numeric {list(spatial)} coordinates") from None
            if lat.ndim != 1 or lon.ndim != 1:
                raise ValueError(
                    f"source {src} returned {lat.ndim}-D latitudes; expected 1-D lat/lon axes of a "
                    "regular grid"
                )
            regridder = get_regridder(lat, lon, self.grid, self.device, method=self.regrid_method)
            block = regridder.compact(values)  # [Tsrc, Csrc, *block_shape], small
            if not identity:
                dev = block.device
                block = block[torch.from_numpy(tpos).to(dev)][:, torch.from_numpy(vpos).to(dev)]
            # Checking the source values read is as good as checking the result, and cheaper.
            self._check_finite(regridder.block_finite(block), times, lead)
            return regridder.apply_compact(block.float())

        if tuple(values.shape[-2:]) != self.grid.shape:
            raise ValueError(
                f"source {src} returned a {values.shape[-2]} x {values.shape[-1]} {list(spatial)} grid; "
                f"expected the model grid {self.grid.name!r} of shape {self.grid.shape} (crop the source "
                "to the model grid or return lat/lon data to be regridded)"
            )
        if not identity:
            values = values[np.ix_(tpos, vpos)]
        out = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(self.device)
        if not bool(torch.isfinite(out.flatten(2).sum(-1)).all()):  # cheap test first
            self._check_finite(torch.isfinite(out).flatten(2).all(-1), times, lead)
        return out

    def _check_finite(self, finite: "torch.Tensor", times: np.ndarray, lead: np.timedelta64 | None) -> None:
        """Raise naming the variables and times where ``finite [T, C]`` is False."""
        bad = ~finite.cpu().numpy()
        if not bad.any():
            return
        variables = [v for v, b in zip(self.variables, bad.any(0)) if b]
        rows = np.flatnonzero(bad.any(1))
        if lead is None:
            where = f"valid times {format_times(times[rows])}"
        else:
            where = f"init times {format_times(times[rows])} (lead time {format_lead_times([lead])})"
        raise ValueError(
            f"conditioning contains NaN or infinite values in variables {variables} at {where}; the source "
            "has gaps there: fill them or use a complete source"
        )
