"""Deterministic errors: RMSE, MAE and bias (mean error).

The arithmetic is that of the ``scores`` package (``scores.continuous``);
these wrappers add the exact alignment and the default spatial reduction of
:mod:`stormcast_plugin.statistics.utils`. NaN (missing) points are left out of
the means.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stormcast_plugin.statistics.utils import prepare, scores_module

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = ["bias", "mae", "rmse"]


def rmse(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any = None) -> "xr.DataArray":
    """Root-mean-square error ``sqrt(mean((forecast - truth)**2))``.

    Parameters
    ----------
    forecast, truth : xarray.DataArray
        Fields with named dimensions; dimensions of one missing from the other
        broadcast (an ensemble forecast gets one RMSE per member; pass the
        ensemble mean for the usual ensemble-mean RMSE).
    dims : str or sequence of str, optional
        Dimensions to average over; default the spatial dimensions.

    Returns
    -------
    xarray.DataArray
        Named ``rmse``, over the dimensions not reduced.
    """
    f, t, d = prepare(forecast, truth, dims)
    return scores_module("continuous").rmse(f, t, reduce_dims=list(d)).rename("rmse")


def mae(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any = None) -> "xr.DataArray":
    """Mean absolute error ``mean(|forecast - truth|)`` (see :func:`rmse`)."""
    f, t, d = prepare(forecast, truth, dims)
    return scores_module("continuous").mae(f, t, reduce_dims=list(d)).rename("mae")


def bias(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any = None) -> "xr.DataArray":
    """Mean error ``mean(forecast - truth)``: positive when the forecast is too high."""
    f, t, d = prepare(forecast, truth, dims)
    return scores_module("continuous").additive_bias(f, t, reduce_dims=list(d)).rename("bias")
