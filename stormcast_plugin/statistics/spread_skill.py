"""The spread/skill ratio of an ensemble.

``scores`` has no spread/skill statistic, so it is computed here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from stormcast_plugin.statistics.utils import no_member_reduction, prepare, require_ensemble, safe_divide

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = ["spread_skill_ratio"]


def spread_skill_ratio(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any = None, *,
                       ensemble_dim: str | None = None,
                       components: bool = False) -> "xr.DataArray | xr.Dataset":
    """Ratio of ensemble spread to the RMSE of the ensemble mean.

    ``spread = sqrt((m + 1) / m * mean(var))`` with ``var`` the unbiased
    (``ddof=1``) member variance at each point, and
    ``skill = sqrt(mean((ensemble_mean - truth)**2))``, means over ``dims``.

    The ``(m + 1) / m`` factor (Fortin et al. 2014) makes the ratio 1 for a
    calibrated finite ensemble: when the truth and the m members are draws
    from one distribution of variance s^2, the ensemble mean errs with
    expected squared error ``s^2 (1 + 1/m)`` while the expected member
    variance is ``s^2``.

    Parameters
    ----------
    forecast, truth : xarray.DataArray
        Ensemble forecast (m >= 2 members) and verifying field.
    dims : str or sequence of str, optional
        Dimensions to average over; default the spatial dimensions.
    ensemble_dim : str, optional
        The member dimension (default: found by name).
    components : bool, optional
        Return a Dataset with ``spread``, ``skill`` and ``ratio`` instead.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The ratio (named ``spread_skill``): below 1 an under-dispersive
        ensemble, above 1 an over-dispersive one.

    Raises
    ------
    ValueError
        For fewer than two members.
    """
    import xarray as xr

    ens = require_ensemble(forecast, truth, ensemble_dim, "spread_skill_ratio")
    f, t, d = prepare(forecast, truth, dims)
    no_member_reduction(d, ens, "spread_skill_ratio")
    m = f.sizes[ens]
    if m < 2:
        raise ValueError(f"spread_skill_ratio needs at least 2 members along {ens!r}, got {m}")
    var = f.var(ens, ddof=1).where(t.notnull())
    spread = np.sqrt((m + 1.0) / m * var.mean(d))
    skill = np.sqrt(((f.mean(ens) - t) ** 2).mean(d))
    ratio = safe_divide(spread, skill)
    if components:
        return xr.Dataset({"spread": spread, "skill": skill, "ratio": ratio})
    return ratio.rename("spread_skill")
