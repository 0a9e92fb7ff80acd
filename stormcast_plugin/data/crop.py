"""Cropping a field on a larger projected grid to a model grid, by coordinate value.

:func:`grid_window` finds the model grid's rows and columns among a source's
``hrrr_y``/``hrrr_x`` (or ``y``/``x``) coordinates with
:func:`~stormcast_plugin.utils.coords.match_values`; :class:`CropToGrid` wraps
a DataSource (such as earth2studio's full-CONUS ``HRRR``) with it, and dataset
preparation crops the state and invariants with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from stormcast_plugin.utils.coords import PROJECTED_DIM_PAIRS, match_values
from stormcast_plugin.utils.grid import ModelGrid

if TYPE_CHECKING:  # pragma: no cover - typing only
    import xarray as xr

__all__ = ["CropToGrid", "grid_window"]


def grid_window(da: "xr.DataArray", grid: ModelGrid, tolerance: float = 1.0,
                source: str = "the source") -> dict[str, np.ndarray]:
    """Where the model grid's rows and columns lie in a field on the same projection.

    Parameters
    ----------
    da : xr.DataArray
        A field with projected dims ``hrrr_y``/``hrrr_x`` (or ``y``/``x``). A
        dim without a coordinate must already have the grid's size.
    grid : ModelGrid
        The model grid.
    tolerance : float
        Largest accepted coordinate mismatch, in the projection's units (m).
    source : str
        How to name the field's origin in error messages.

    Returns
    -------
    dict[str, np.ndarray]
        ``{y_dim: rows, x_dim: columns}``, integer indices for ``da.isel``
        (y dim first).

    Raises
    ------
    ValueError
        If ``da`` has no projected dims, or its coordinates do not hold every
        row and column of the grid within ``tolerance``.
    """
    pair = next((p for p in PROJECTED_DIM_PAIRS if all(d in da.dims for d in p)), None)
    if pair is None:
        raise ValueError(
            f"{source} returned spatial dims {[d for d in da.dims if d not in ('time', 'variable')]}; expected "
            f"one of {[list(p) for p in PROJECTED_DIM_PAIRS]} on the model grid's projection"
        )
    window: dict[str, np.ndarray] = {}
    for dim, want in zip(pair, (grid.y, grid.x)):
        if dim not in da.coords:
            if da.sizes[dim] != want.size:
                raise ValueError(
                    f"{source} returned {da.sizes[dim]} {dim} points without coordinates; the model grid "
                    f"{grid.name!r} has {want.size}: give the source coordinates to crop by"
                )
            window[dim] = np.arange(want.size)
            continue
        have = np.asarray(da[dim].values, np.float64)
        index = match_values(have, want, tolerance)
        if index is None:
            span = f"{have.min():.0f}..{have.max():.0f} m, {have.size} points" if have.size else "none"
            raise ValueError(
                f"{source}: its {dim} coordinates ({span}) do not contain the model grid {grid.name!r} "
                f"({want.min():.0f}..{want.max():.0f} m) within {tolerance:g} m; is the source on the "
                "model grid's projection and does it cover the domain?"
            )
        window[dim] = index
    return window


class CropToGrid:
    """A DataSource on a larger projected grid, cropped to a model grid.

    Rows and columns are matched by coordinate value (:func:`grid_window`),
    so the source may be earth2studio's full-CONUS ``HRRR`` or any source
    whose grid holds the model grid's points.

    Parameters
    ----------
    source : DataSource
        Returns ``[time, variable, hrrr_y, hrrr_x]`` arrays.
    grid : ModelGrid
        The target grid.
    tolerance : float
        Allowed coordinate mismatch in metres.

    Raises
    ------
    ValueError
        If ``source`` is not callable, ``grid`` not a ModelGrid or
        ``tolerance`` not a positive number.
    """

    def __init__(self, source: Any, grid: ModelGrid, tolerance: float = 1.0) -> None:
        if not callable(source):
            raise ValueError(f"source must be a callable earth2studio DataSource, got {type(source).__name__}")
        if not isinstance(grid, ModelGrid):
            raise ValueError(f"grid must be a ModelGrid, got {type(grid).__name__}; build one with ModelGrid.hrrr()")
        try:
            tol = float(tolerance)
        except (TypeError, ValueError):
            tol = float("nan")
        if not tol > 0:
            raise ValueError(f"tolerance = {tolerance!r}; expected a positive distance in metres")
        self.source = source
        self.grid = grid
        self.tolerance = tol

    def __call__(self, time: Any, variable: Any) -> "xr.DataArray":
        """The source's ``[time, variable, hrrr_y, hrrr_x]`` field on the model grid.

        Raises
        ------
        ValueError
            If the source's grid does not hold the model grid (see :func:`grid_window`).
        """
        da = self.source(time, variable)
        return da.isel(grid_window(da, self.grid, self.tolerance, f"source {type(self.source).__name__}"))

    async def fetch(self, time: Any, variable: Any) -> "xr.DataArray":
        """Async variant of ``__call__`` (earth2studio's async DataSource protocol)."""
        return self(time, variable)
