"""Categorical scores of threshold events (reflectivity ``value >= threshold``).

The counts and the scores come from ``scores.categorical``'s
``BinaryContingencyManager``; the events are formed here (``>=``, NaN kept
as missing), since ``scores``' own threshold operator replaces a threshold
of 0 by its default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from stormcast_plugin.statistics.utils import DEFAULT_THRESHOLDS, prepare, scores_module, threshold_coord

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = ["categorical_scores", "contingency_table", "csi", "far", "pod"]

_COUNTS = {"hits": "tp_count", "misses": "fn_count", "false_alarms": "fp_count", "correct_negatives": "tn_count"}


def _managers(forecast: "xr.DataArray", truth: "xr.DataArray", thresholds: Any, dims: Any) -> list[tuple[float, Any]]:
    """``(threshold, BasicContingencyManager reduced over dims)`` per threshold."""
    f, t, d = prepare(forecast, truth, dims)
    manager = scores_module("categorical").BinaryContingencyManager
    out = []
    for value in threshold_coord(thresholds):
        fe = (f >= value).where(f.notnull())
        te = (t >= value).where(t.notnull())
        out.append((float(value), manager(fe, te).transform(reduce_dims=list(d))))
    return out


def _stack(parts: list[tuple[float, "xr.Dataset"]]) -> "xr.Dataset":
    import xarray as xr

    thr = np.array([p[0] for p in parts])
    return xr.concat([p[1] for p in parts], dim=xr.DataArray(thr, dims="threshold", name="threshold"))


def contingency_table(forecast: "xr.DataArray", truth: "xr.DataArray",
                      thresholds: Any = DEFAULT_THRESHOLDS, dims: Any = None) -> "xr.Dataset":
    """Counts of hits, misses, false alarms and correct negatives.

    An event is ``value >= threshold``. Points where either side is NaN are
    not counted.

    Parameters
    ----------
    forecast, truth : xarray.DataArray
        Fields (reflectivity in dBZ for the default thresholds).
    thresholds : float or sequence of float, optional
        Event thresholds; default 20, 30 and 40 dBZ.
    dims : str or sequence of str, optional
        Dimensions to count over; default the spatial dimensions (add the
        ensemble dimension to pool the members).

    Returns
    -------
    xarray.Dataset
        ``hits``, ``misses``, ``false_alarms``, ``correct_negatives`` (int64)
        over a ``threshold`` dimension and the dimensions left.
    """
    import xarray as xr

    parts = [(v, xr.Dataset({k: m.counts[c] for k, c in _COUNTS.items()}))
             for v, m in _managers(forecast, truth, thresholds, dims)]
    return _stack(parts).astype(np.int64)


def categorical_scores(forecast: "xr.DataArray", truth: "xr.DataArray",
                       thresholds: Any = DEFAULT_THRESHOLDS, dims: Any = None) -> "xr.Dataset":
    """CSI, POD, FAR and the observed base rate, with their contingency counts.

    ``csi = hits / (hits + misses + false_alarms)`` (the threat score),
    ``pod = hits / (hits + misses)``, ``far = false_alarms / (hits + false_alarms)``
    and ``base_rate = (hits + misses) / valid points``. A score whose
    denominator is 0 (no events to find, or none forecast for FAR) is NaN:
    it is undefined rather than perfect or useless.

    Parameters
    ----------
    forecast, truth, thresholds, dims
        As for :func:`contingency_table`.

    Returns
    -------
    xarray.Dataset
        ``csi``, ``pod``, ``far``, ``base_rate`` and the four counts.
    """
    import xarray as xr

    parts = []
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 is the documented NaN
        for v, m in _managers(forecast, truth, thresholds, dims):
            ds = xr.Dataset({k: m.counts[c] for k, c in _COUNTS.items()})
            ds["csi"] = m.threat_score()
            ds["pod"] = m.probability_of_detection()
            ds["far"] = m.false_alarm_ratio()
            ds["base_rate"] = m.base_rate()
            parts.append((v, ds))
    out = _stack(parts)
    for k in _COUNTS:
        out[k] = out[k].astype(np.int64)
    for k in ("csi", "pod", "far", "base_rate"):
        out[k] = out[k].astype(np.float64)
    return out


def csi(forecast: "xr.DataArray", truth: "xr.DataArray", thresholds: Any = DEFAULT_THRESHOLDS,
        dims: Any = None) -> "xr.DataArray":
    """Critical success index (threat score) per threshold; NaN without events.

    See :func:`categorical_scores`.
    """
    return categorical_scores(forecast, truth, thresholds, dims)["csi"].rename("csi")


def pod(forecast: "xr.DataArray", truth: "xr.DataArray", thresholds: Any = DEFAULT_THRESHOLDS,
        dims: Any = None) -> "xr.DataArray":
    """Probability of detection per threshold; NaN without observed events.

    See :func:`categorical_scores`.
    """
    return categorical_scores(forecast, truth, thresholds, dims)["pod"].rename("pod")


def far(forecast: "xr.DataArray", truth: "xr.DataArray", thresholds: Any = DEFAULT_THRESHOLDS,
        dims: Any = None) -> "xr.DataArray":
    """False alarm ratio per threshold; NaN without forecast events.

    See :func:`categorical_scores`.
    """
    return categorical_scores(forecast, truth, thresholds, dims)["far"].rename("far")
