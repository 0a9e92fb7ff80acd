"""The score report: column order, markdown tables and ``scores.md``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from stormcast_plugin.scoring.figures import Collected

__all__ = ["SPECTRAL_PREFIX", "column_order", "markdown_report", "markdown_table", "number_text"]

SPECTRAL_PREFIX = "spectral_ratio_"
"""Columns ``spectral_ratio_<band>`` hold forecast over truth power in a wavelength band."""


def number_text(value: float) -> str:
    """``20`` for 20.0, ``2.5`` for 2.5 (column names and labels)."""
    return f"{value:g}"


def column_order(columns: Sequence[str]) -> list[str]:
    head = ["variable", "units", "lead_time_h", "n_points", "rmse", "mae", "bias", "crps", "spread",
            "spread_skill"]
    cols = [c for c in head if c in columns]
    cat = [c for c in columns if c.split("_")[0] in ("csi", "pod", "far") and c not in cols]
    fss_cols = [c for c in columns if c.startswith("fss_")]
    spec = [c for c in columns if c.startswith(SPECTRAL_PREFIX)]
    first = cols + cat + fss_cols + spec
    return first + [c for c in columns if c not in first]


def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "n/a" if not np.isfinite(value) else f"{value:.4g}"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value).replace("|", "\\|")


def markdown_table(table: "pd.DataFrame", columns: Sequence[str] | None = None,
                   headers: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured markdown table (no ``tabulate`` needed).

    Parameters
    ----------
    table : pandas.DataFrame
        The rows to show.
    columns : sequence of str, optional
        Columns to show, in order (default all).
    headers : sequence of str, optional
        Header texts (default the column names).

    Returns
    -------
    str
        The table; floats with 4 significant digits, NaN as ``n/a``.
    """
    columns = list(table.columns) if columns is None else list(columns)
    headers = list(columns) if headers is None else list(headers)
    if len(headers) != len(columns):
        raise ValueError(f"{len(headers)} headers for {len(columns)} columns; give one header per column")
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if c in ("variable", "units") else "---:" for c in columns) + "|"]
    for _, row in table[columns].iterrows():
        lines.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _band_text(column: str) -> str:
    """``< 15 km``, ``15-60 km`` or ``>= 60 km`` for a ``spectral_ratio_<band>`` column."""
    band = column[len(SPECTRAL_PREFIX):].removesuffix("km")
    if band.startswith("lt"):
        return f"< {band[2:]} km"
    if band.startswith("ge"):
        return f">= {band[2:]} km"
    return band.replace("_", "-") + " km"


def markdown_report(table: "pd.DataFrame", forecast: Any, truth: Any, collected: "Collected",
                     spacing: float) -> str:
    import pandas as pd

    src = lambda x: str(x) if isinstance(x, (str, Path)) else "(in memory)"  # noqa: E731
    members = f"{collected.members} members" if collected.members else "deterministic"
    parts = ["# StormCast scores", "",
             f"Forecast `{src(forecast)}` ({members}, {collected.times} initial time(s)) against truth "
             f"`{src(truth)}`. Errors in the units shown; RMSE, MAE and bias of the ensemble mean; CRPS is "
             "the fair CRPS; spread/skill uses the (m+1)/m-corrected spread.", "",
             "## Scores by variable and lead time", ""]
    labels = {"variable": "variable", "units": "units", "lead_time_h": "lead (h)", "n_points": "points",
              "rmse": "RMSE", "mae": "MAE", "bias": "bias", "crps": "CRPS", "spread": "spread",
              "spread_skill": "spread/skill"}
    cols = [c for c in labels if c in table.columns]
    parts.append(markdown_table(table, cols, [labels[c] for c in cols]))
    if "n_points" in table and (table["n_points"] == 0).any():
        parts += ["Lead times without a verified point (no truth there, or hours the forecast's run never "
                  "completed) show n/a.", ""]
    spec = [c for c in table.columns if c.startswith(SPECTRAL_PREFIX)]
    if spec:
        parts += ["## Spectral power ratio by wavelength band (forecast / truth; 1: the truth's variance at "
                  "those scales, below 1 too smooth)", ""]
        parts.append(markdown_table(table, ["variable", "lead_time_h"] + spec,
                                    ["variable", "lead (h)"] + [_band_text(c) for c in spec]))
    cat = [c for c in table.columns if c.split("_")[0] in ("csi", "pod", "far")]
    refl = table[table[cat].notna().any(axis=1)] if cat else table.iloc[0:0]
    if len(refl):
        parts += ["## Reflectivity: CSI, POD, FAR (events >= threshold, members pooled)", ""]
        heads = [f"{c.split('_')[0].upper()} {c.split('_', 1)[1]} dBZ" for c in cat]
        parts.append(markdown_table(refl, ["variable", "lead_time_h"] + cat, ["variable", "lead (h)"] + heads))
        fss_cols = [c for c in table.columns if c.startswith("fss_")]
        long = []
        for _, row in refl.iterrows():
            by_thr: dict[str, dict[str, Any]] = {}
            for c in fss_cols:
                _, thr, win = c.split("_")
                by_thr.setdefault(thr, {"variable": row["variable"], "lead_time_h": row["lead_time_h"],
                                        "threshold": thr})[win] = row[c]
            long += list(by_thr.values())
        if long:
            frame = pd.DataFrame(long)
            wins = [c for c in frame.columns if c.startswith("w")]
            heads = [f"FSS {w[1:]} pt ({number_text(int(w[1:]) * spacing)} km)" for w in wins]
            parts += ["## Fractions skill score (NaN when neither side has events)", ""]
            parts.append(markdown_table(frame, ["variable", "lead_time_h", "threshold"] + wins,
                                        ["variable", "lead (h)", "threshold (dBZ)"] + heads))
    return "\n".join(parts)
