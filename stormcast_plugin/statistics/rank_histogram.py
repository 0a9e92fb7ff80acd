"""Rank histograms (Talagrand diagrams) of an ensemble.

``scores.probability.rank_histogram`` shares ties equally among the ranks
and returns relative frequencies; this one breaks ties at random
(reproducibly, by seed) and returns counts, which the score report needs to
say how many points a histogram holds. Without ties the two agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from stormcast_plugin.statistics.utils import no_member_reduction, prepare, require_ensemble

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = ["rank_histogram"]


def rank_histogram(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any = None, *,
                   ensemble_dim: str | None = None, seed: int = 0) -> "xr.DataArray":
    """Counts of the truth's rank among the ensemble members.

    The rank of ``y`` among m members is the number of members below it,
    0..m (m + 1 bins). Ties (members equal to ``y``) are broken at random:
    with ``b`` members below and ``e`` equal, the rank is uniform on
    ``b .. b + e``, drawn from ``numpy.random.default_rng(seed)`` so that the
    histogram is reproducible. Points where the truth or a member is NaN are
    not counted. A calibrated ensemble gives a flat histogram, an
    under-dispersive one a U shape, a biased one a slope.

    Parameters
    ----------
    forecast, truth : xarray.DataArray
        Ensemble forecast and verifying field.
    dims : str or sequence of str, optional
        Dimensions to count over; default the spatial dimensions.
    ensemble_dim : str, optional
        The member dimension (default: found by name).
    seed : int, optional
        Seed of the tie-breaking draws.

    Returns
    -------
    xarray.DataArray
        Named ``rank_histogram``, int64 counts with a new ``rank`` dimension
        (0..m) after the dimensions not reduced.
    """
    import xarray as xr

    ens = require_ensemble(forecast, truth, ensemble_dim, "rank_histogram")
    f, t, d = prepare(forecast, truth, dims)
    no_member_reduction(d, ens, "rank_histogram")
    m = f.sizes[ens]
    f, t = xr.broadcast(f.compute(), t.compute(), exclude=[ens])
    rest = [dim for dim in t.dims]
    x = np.asarray(f.transpose(*rest, ens).values, dtype=np.float64)
    y = np.asarray(t.transpose(*rest).values, dtype=np.float64)
    below = (x < y[..., None]).sum(axis=-1)
    ties = (x == y[..., None]).sum(axis=-1)
    rng = np.random.default_rng(seed)
    ranks = below + np.floor(rng.random(y.shape) * (ties + 1)).astype(np.int64)
    valid = np.isfinite(y) & np.isfinite(x).all(axis=-1)
    ranks = np.where(valid, ranks, -1)
    keep = [dim for dim in rest if dim not in d]
    r = xr.DataArray(ranks, dims=rest).transpose(*keep, *[dim for dim in rest if dim in d])
    flat = r.values.reshape(int(np.prod([r.sizes[k] for k in keep], dtype=np.int64)), -1)
    counts = np.stack([np.bincount(row[row >= 0], minlength=m + 1) for row in flat]) \
        if flat.shape[0] else np.zeros((0, m + 1), np.int64)
    coords = {k: t.coords[k] for k in keep if k in t.coords}
    out = xr.DataArray(counts.reshape([r.sizes[k] for k in keep] + [m + 1]).astype(np.int64),
                       dims=keep + ["rank"], coords={**coords, "rank": np.arange(m + 1)},
                       name="rank_histogram")
    out.attrs["members"] = int(m)
    return out
