"""How variables are drawn: colour maps, units, colour ranges.

:func:`style_for` is the one table of plot styles; maps, forecast figures,
score plots and training panels all read it. Importing this module is cheap:
matplotlib is imported by :func:`style_for` when first called.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

__all__ = [
    "REFC_COLORS",
    "REFC_LEVELS",
    "REFC_OVER",
    "VARIABLE_STYLES",
    "color_limits",
    "colorbar_extend",
    "style_for",
]

REFC_LEVELS: tuple[float, ...] = tuple(float(v) for v in range(5, 80, 5))
"""Reflectivity class boundaries, 5 to 75 dBZ in 5 dBZ steps."""

REFC_COLORS: tuple[str, ...] = (
    "#04e9e7",  # 5-10 dBZ
    "#019ff4",  # 10-15
    "#0300f4",  # 15-20
    "#02fd02",  # 20-25
    "#01c501",  # 25-30
    "#008e00",  # 30-35
    "#fdf802",  # 35-40
    "#e5bc00",  # 40-45
    "#fd9500",  # 45-50
    "#fd0000",  # 50-55
    "#d40000",  # 55-60
    "#bc0000",  # 60-65
    "#f800fd",  # 65-70
    "#9854c6",  # 70-75
)
"""The NWS radar palette, one colour per 5 dBZ class from 5 to 75 dBZ."""

REFC_OVER = "#3a3a3a"
"""Colour for 75 dBZ and above (the NWS palette's white would vanish on a
white map, so a dark grey stands in for it)."""

_TRANSPARENT = (0.0, 0.0, 0.0, 0.0)

VARIABLE_STYLES: dict[str, dict[str, Any]] = {
    # Exact names.
    "refc": dict(long_name="composite reflectivity", units="dBZ", cmap="nws_reflectivity",
                 vmin=REFC_LEVELS[0], vmax=REFC_LEVELS[-1], fixed=True),
    "t2m": dict(long_name="2 m temperature", units="K", cmap="inferno"),
    "d2m": dict(long_name="2 m dewpoint temperature", units="K", cmap="YlGnBu"),
    "msl": dict(long_name="mean sea-level pressure", units="hPa", source_units="Pa",
                scale=0.01, cmap="viridis"),
    "sp": dict(long_name="surface pressure", units="hPa", source_units="Pa",
               scale=0.01, cmap="viridis"),
    "tcwv": dict(long_name="total column water vapour", units="kg/m2", cmap="YlGnBu"),
    "lsm": dict(long_name="land-sea mask", units="1", cmap="BrBG_r", vmin=0.0, vmax=1.0,
                fixed=True),
    "orography": dict(long_name="surface height", units="m", cmap="terrain"),
    # Families: one letter followed by a level, e.g. ``u10m``, ``t850``,
    # ``q5hl``, ``Z20hl``; the level is appended to the long name.
    "t": dict(long_name="temperature", units="K", cmap="inferno"),
    "u": dict(long_name="eastward wind", units="m/s", cmap="RdBu_r", diverging=True),
    "v": dict(long_name="northward wind", units="m/s", cmap="RdBu_r", diverging=True),
    "q": dict(long_name="specific humidity", units="kg/kg", cmap="YlGnBu"),
    "r": dict(long_name="relative humidity", units="%", cmap="YlGnBu"),
    "p": dict(long_name="pressure", units="Pa", cmap="viridis"),
    "Z": dict(long_name="geopotential height", units="m", cmap="viridis"),
    "z": dict(long_name="geopotential", units="m2/s2", cmap="viridis"),
}
"""Plot styles by variable name, then by family letter (``t``, ``u``, ``v``,
``q``, ``r``, ``p``, ``Z``, ``z``).

Each entry may hold ``long_name``, ``units`` (as displayed), ``cmap`` (a
matplotlib colormap name, or ``"nws_reflectivity"``), ``vmin``/``vmax`` with
``fixed=True`` for a fixed colour range, ``diverging`` (colour range
symmetric about 0), and ``scale`` with ``source_units`` when the displayed
units differ from the stored ones (``msl`` is stored in Pa, shown in hPa).
Edit or extend it to change how variables are drawn."""

_DEFAULT_STYLE: dict[str, Any] = dict(
    long_name=None, units="", cmap="viridis", vmin=None, vmax=None, fixed=False,
    diverging=False, scale=1.0, source_units=None,
)

_DIFFERENCE_CMAP = "RdBu_r"

_FAMILY_RE = re.compile(r"^(?P<family>[A-Za-z])(?P<level>\d+)(?P<kind>hl|m)?$")
_DIFF_SUFFIX_RE = re.compile(
    r"^(?P<base>.+?)[_-](?P<tag>anom|anomaly|diff|difference|delta|bias|error|err|residual|increment)$"
)
_DIFF_PREFIX_RE = re.compile(r"^(?P<tag>anom|diff|delta|bias|error|err)[_-](?P<base>.+)$")


def _level_text(level: str, kind: str | None) -> str:
    if kind == "hl":
        return f"hybrid level {int(level)}"
    if kind == "m":
        return f"{int(level)} m"
    return f"{int(level)} hPa"


def _lookup(name: str) -> dict[str, Any]:
    """The style entry for a base variable name (no anomaly tag)."""
    if name in VARIABLE_STYLES:
        spec = dict(VARIABLE_STYLES[name])
        spec.setdefault("long_name", name)
        return spec
    m = _FAMILY_RE.match(name)
    if m and m["family"] in VARIABLE_STYLES:
        spec = dict(VARIABLE_STYLES[m["family"]])
        base = spec.get("long_name", m["family"])
        if m["kind"] == "m":
            spec["long_name"] = f"{_level_text(m['level'], m['kind'])} {base}"
        else:
            spec["long_name"] = f"{base} at {_level_text(m['level'], m['kind'])}"
        return spec
    return {"long_name": name}


def _reflectivity_cmap():
    from matplotlib.colors import BoundaryNorm, ListedColormap

    cmap = ListedColormap(list(REFC_COLORS), name="nws_reflectivity").with_extremes(
        under=_TRANSPARENT, bad=_TRANSPARENT, over=REFC_OVER
    )
    norm = BoundaryNorm(list(REFC_LEVELS), ncolors=cmap.N, clip=False)
    return cmap, norm


def style_for(name: str, *, difference: bool = False) -> dict[str, Any]:
    """How to draw variable ``name``.

    Parameters
    ----------
    name : str
        An earth2studio variable name (``"refc"``, ``"t2m"``, ``"u5hl"``,
        ``"Z20hl"``, ...). Names tagged as anomalies or differences
        (``"t2m_diff"``, ``"msl_anom"``, ``"diff_u10m"``, ...) get the base
        variable's units with a diverging colormap.
    difference : bool, optional
        Style the field as a difference or anomaly whatever its name.

    Returns
    -------
    dict
        A new dict with keys ``name``, ``long_name``, ``units`` (displayed),
        ``cmap`` (a :class:`matplotlib.colors.Colormap`), ``norm`` (a
        :class:`matplotlib.colors.Normalize` for fixed discrete palettes,
        otherwise None), ``vmin``/``vmax`` (floats for fixed ranges, else
        None: the caller picks them from the data, see :func:`color_limits`),
        ``fixed``, ``diverging`` (limits symmetric about 0), ``scale``
        (multiply the stored values by it to get displayed units) and
        ``extend`` (the colour bar's default ``extend``). Unknown names get
        ``viridis``, no units and their own name as long name.
    """
    import matplotlib

    name = str(name)
    base = name
    m = _DIFF_SUFFIX_RE.match(name) or _DIFF_PREFIX_RE.match(name)
    if m and (m["base"] in VARIABLE_STYLES or _FAMILY_RE.match(m["base"])):
        base, difference = m["base"], True
    elif m and not (name in VARIABLE_STYLES or _FAMILY_RE.match(name)):
        base, difference = m["base"], True

    spec = dict(_DEFAULT_STYLE)
    spec.update(_lookup(base))
    if not spec.get("long_name"):
        spec["long_name"] = base
    if difference:
        spec.update(cmap=_DIFFERENCE_CMAP, vmin=None, vmax=None, fixed=False, diverging=True,
                    long_name=f"{spec['long_name']} difference")

    norm = None
    extend = "neither"
    if spec["cmap"] == "nws_reflectivity":
        cmap, norm = _reflectivity_cmap()
        extend = "max"
    else:
        cmap = matplotlib.colormaps[spec["cmap"]].with_extremes(bad=_TRANSPARENT)

    return dict(
        name=name,
        long_name=str(spec["long_name"]),
        units=str(spec["units"]),
        cmap=cmap,
        norm=norm,
        vmin=None if spec["vmin"] is None else float(spec["vmin"]),
        vmax=None if spec["vmax"] is None else float(spec["vmax"]),
        fixed=bool(spec["fixed"]),
        diverging=bool(spec["diverging"]),
        scale=float(spec["scale"]),
        source_units=spec["source_units"] or str(spec["units"]),
        extend=extend,
    )


def color_limits(
    values: Any, style: dict[str, Any], percentiles: tuple[float, float] = (1.0, 99.0)
) -> tuple[float, float]:
    """Colour range for ``values`` (already in displayed units).

    Parameters
    ----------
    values : array_like
        Data of any shape; NaNs and infinities are ignored.
    style : dict
        A :func:`style_for` result.
    percentiles : tuple of float, optional
        Robust range for styles without a fixed one.

    Returns
    -------
    (float, float)
        The style's fixed range if it has one; otherwise the given
        percentiles of the data, made symmetric about 0 for diverging styles.
        A constant field gets a small range around its value.
    """
    if style.get("fixed") and style.get("vmin") is not None and style.get("vmax") is not None:
        return float(style["vmin"]), float(style["vmax"])
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size > 4_000_000:  # a regular subsample is plenty for percentiles
        a = a[:: a.size // 2_000_000]
    a = a[np.isfinite(a)]
    if a.size == 0:
        return (-1.0, 1.0) if style.get("diverging") else (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(a, percentiles))
    if style.get("diverging"):
        m = max(abs(lo), abs(hi))
        if m == 0.0:
            m = 1.0
        return -m, m
    if hi <= lo:
        pad = max(abs(lo) * 0.01, 1e-6)
        lo, hi = lo - pad, hi + pad
    return lo, hi


def colorbar_extend(values: np.ndarray, vmin: float, vmax: float) -> str:
    """The colour bar ``extend`` that shows values outside ``[vmin, vmax]``."""
    a = np.asarray(values, dtype=np.float64)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return "neither"
    below, above = finite.min() < vmin, finite.max() > vmax
    return {(False, False): "neither", (True, False): "min",
            (False, True): "max", (True, True): "both"}[(bool(below), bool(above))]
