"""Local solar time as two input channels.

A model trained with ``data.local_time: true`` sees, after its invariants,
:math:`\\cos(2\\pi\\,\\mathrm{LST}/24)` and :math:`\\sin(2\\pi\\,\\mathrm{LST}/24)`
of the *input* time at every grid point, with the local solar time
:math:`\\mathrm{LST} = t_\\mathrm{UTC} + \\lambda / 15` (hours, :math:`\\lambda`
the longitude in degrees east). It tells the network where in the diurnal
cycle a state is, which a few surface fields over a small domain cannot
(warming and cooling look alike at equal temperatures). StormCast's official
networks do not take these channels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stormcast_plugin.utils.time import as_times, epoch_hours

__all__ = ["LOCAL_TIME_CHANNELS", "local_time_channels"]

LOCAL_TIME_CHANNELS = ("cos_local_time", "sin_local_time")
"""Names of the two channels, in network order."""

def local_time_channels(times: Any, lon: Any) -> np.ndarray:
    """The local-time channels of ``times`` at longitudes ``lon``.

    Parameters
    ----------
    times : datetime-like or 1-D array of them
        UTC times (anything :func:`~stormcast_plugin.utils.time.as_times` reads).
    lon : array_like
        Finite longitudes in degrees east (any range), shape ``S`` (for
        example the 2-D ``[H, W]`` longitudes of a model grid).

    Returns
    -------
    numpy.ndarray
        float32 ``[T, 2, *S]``: cos and sin of :math:`2\\pi\\,\\mathrm{LST}/24`.
    """
    t = as_times(times, "times")
    lon = np.asarray(lon, dtype=np.float64)
    utc_h = epoch_hours(t) % 24.0
    angle = 2.0 * np.pi * (utc_h.reshape((-1,) + (1,) * lon.ndim) + lon / 15.0) / 24.0
    return np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)
