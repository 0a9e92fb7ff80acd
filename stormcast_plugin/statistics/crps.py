"""The continuous ranked probability score of an ensemble.

Computed by ``scores.probability.crps_for_ensemble`` (the sorted-member
O(m log m) form of the pair sum), which has both the fair and the ordinary
(empirical distribution) estimator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stormcast_plugin.statistics.utils import no_member_reduction, prepare, require_ensemble, scores_module

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = ["crps_ensemble"]


def crps_ensemble(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any = None, *,
                  ensemble_dim: str | None = None, fair: bool = True) -> "xr.DataArray":
    """Continuous ranked probability score of an ensemble, averaged over ``dims``.

    The fair (unbiased) estimator of Ferro (2014) is used by default::

        CRPS = 1/m sum_i |X_i - y| - 1/(2 m (m - 1)) sum_{i,j} |X_i - X_j|

    Its expectation over ensembles drawn from a distribution F equals the
    CRPS of F itself for any ensemble size m, so scores of ensembles of
    different sizes compare fairly. ``fair=False`` gives the CRPS of the
    ensemble's empirical distribution, with ``1/(2 m^2)``. A one-member
    "ensemble" has no spread term: its CRPS is the absolute error.

    Parameters
    ----------
    forecast : xarray.DataArray
        Ensemble forecast with an ensemble dimension.
    truth : xarray.DataArray
        Verifying field without the ensemble dimension.
    dims : str or sequence of str, optional
        Dimensions to average over; default the spatial dimensions. Pass
        ``()`` for the pointwise score.
    ensemble_dim : str, optional
        The member dimension (default: found by name, see
        ``stormcast_plugin.utils.coords.ENSEMBLE_DIMS``).
    fair : bool, optional
        False gives the standard (biased) estimator.

    Returns
    -------
    xarray.DataArray
        Named ``crps``, in the units of the variable. NaN points are left out
        of the average; a NaN member is left out of its point's ensemble.
    """
    ens = require_ensemble(forecast, truth, ensemble_dim, "crps_ensemble")
    f, t, d = prepare(forecast, truth, dims)
    no_member_reduction(d, ens, "crps_ensemble")
    # One member: the fair estimator's spread term is 0/0; the ordinary one is 0, as it should be.
    method = "fair" if fair and f.sizes[ens] > 1 else "ecdf"
    out = scores_module("probability").crps_for_ensemble(f, t, ens, method=method, reduce_dims=list(d))
    return out.rename("crps")
