"""Small DataSource adaptors."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CropToGrid"]


class CropToGrid:
    """Crop a DataSource on a larger projected grid (such as earth2studio's
    full-CONUS ``HRRR``) to a model grid, matching the ``hrrr_y``/``hrrr_x``
    coordinates by value.

    Parameters
    ----------
    source : DataSource
        Returns ``[time, variable, hrrr_y, hrrr_x]`` arrays.
    grid : ModelGrid
        The target grid; its y/x must be a contiguous block of the source's.
    tolerance : float
        Allowed coordinate mismatch in metres.
    """

    def __init__(self, source: Any, grid: Any, tolerance: float = 1.0) -> None:
        self.source = source
        self.grid = grid
        self.tolerance = tolerance

    def _index(self, have: np.ndarray, want: np.ndarray, dim: str) -> slice:
        start = int(np.argmin(np.abs(have - want[0])))
        stop = start + len(want)
        if stop > len(have) or np.abs(have[start:stop] - want).max() > self.tolerance:
            raise ValueError(
                f"the source's {dim} coordinates do not contain the model grid {self.grid.name!r} "
                f"({want[0]:.0f}..{want[-1]:.0f} m); is the source on the same projection?"
            )
        return slice(start, stop)

    def __call__(self, time: Any, variable: Any) -> Any:
        da = self.source(time, variable)
        rows = self._index(np.asarray(da["hrrr_y"].values), np.asarray(self.grid.y), "hrrr_y")
        cols = self._index(np.asarray(da["hrrr_x"].values), np.asarray(self.grid.x), "hrrr_x")
        return da.isel(hrrr_y=rows, hrrr_x=cols)

    async def fetch(self, time: Any, variable: Any) -> Any:
        return self(time, variable)
