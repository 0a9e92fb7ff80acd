"""The score plots: skill against lead time, spectra, rank histograms and FSS.

Each function draws one PNG from the score table and the
:class:`Collected` data; :func:`draw_all` writes those that apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stormcast_plugin.scoring.report import number_text

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["Collected", "draw_all"]

DPI = 100
"""Resolution of the score plots."""
PANEL_SIZE = (4.2, 3.2)
"""Width and height of one plot panel in inches."""
MAX_COLUMNS = 3
"""Panels per row."""

_FORECAST_COLOR = "tab:blue"
_TRUTH_COLOR = "black"
_CRPS_COLOR = "tab:orange"
_SPREAD_COLOR = "tab:green"


@dataclass
class Collected:
    """Per-variable data the plots and the report need besides the table."""

    spectra: dict[str, dict[str, Any]] = field(default_factory=dict)
    ranks: dict[str, dict[str, Any]] = field(default_factory=dict)
    fss: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: int = 0
    times: int = 0


def _grid(n: int) -> tuple[int, int]:
    ncols = max(1, min(MAX_COLUMNS, n))
    return math.ceil(n / ncols), ncols


def _figure(nrows: int, ncols: int, extra_height: float = 0.5) -> "Figure":
    from stormcast_plugin.plot.maps import new_figure

    w, h = PANEL_SIZE
    return new_figure((w * ncols, h * nrows + extra_height), dpi=DPI)


def _head(name: str) -> tuple[str, str]:
    from stormcast_plugin.plot.style import style_for

    style = style_for(name)
    return str(style["long_name"]), str(style["units"])


def _lead_axis(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("lead time (h)")
    ax.grid(True, linewidth=0.3, color="0.7")


def _plot_skill(table: "pd.DataFrame", path: Path) -> Path:
    names = list(dict.fromkeys(table["variable"]))
    nrows, ncols = _grid(len(names))
    fig = _figure(nrows, ncols)
    for k, var in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        rows = table[table["variable"] == var]
        long_name, units = _head(var)
        lead = rows["lead_time_h"].to_numpy()
        ax.plot(lead, rows["rmse"], "o-", color=_FORECAST_COLOR, label="RMSE (ensemble mean)")
        if "crps" in rows and rows["crps"].notna().any():
            ax.plot(lead, rows["crps"], "s--", color=_CRPS_COLOR, label="CRPS (fair)")
        if "spread" in rows and rows["spread"].notna().any():
            ax.plot(lead, rows["spread"], "^:", color=_SPREAD_COLOR, label="ensemble spread")
        ax.set_title(f"{long_name} ({var})", fontsize=10)
        ax.set_ylabel(f"error ({units})" if units else "error")
        ax.set_ylim(bottom=0)
        _lead_axis(ax)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Skill against lead time (lower is better)", fontsize=11)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _wavelength_axis(ax: Any, lam: np.ndarray) -> None:
    """Log wavelength axis, large scales on the left, ticks as plain km values."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, StrMethodFormatter

    lo, hi = float(np.nanmin(lam)), float(np.nanmax(lam))
    nice = [v * 10.0 ** e for e in range(-1, 5) for v in (1, 2, 5)]
    ticks = [v for v in nice if lo * 0.999 <= v <= hi * 1.001] or [lo, hi]
    ax.set_xscale("log")
    ax.set_xlim(hi * 1.05, lo / 1.05)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _plot_spectra(collected: Collected, path: Path) -> Path:
    from matplotlib.ticker import NullLocator

    from stormcast_plugin.plot.maps import new_figure

    names = list(collected.spectra)
    nrows, ncols = _grid(len(names))
    w, h = PANEL_SIZE
    fig = new_figure((w * ncols, 1.5 * h * nrows + 0.5), dpi=DPI)
    grid = fig.add_gridspec(2 * nrows, ncols, height_ratios=[2, 1] * nrows)
    for k, var in enumerate(names):
        spec = collected.spectra[var]
        r, c = divmod(k, ncols)
        ax = fig.add_subplot(grid[2 * r, c])
        axr = fig.add_subplot(grid[2 * r + 1, c], sharex=ax)
        long_name, units = _head(var)
        lam = spec["wavelength"]
        positive = lambda a: np.where(np.asarray(a) > 0, a, np.nan)  # noqa: E731 (log axes)
        label = "forecast (mean of member spectra)" if spec["members"] else "forecast"
        ax.plot(lam, positive(spec["truth"]), "-", color=_TRUTH_COLOR, label="truth")
        ax.plot(lam, positive(spec["forecast"]), "-", color=_FORECAST_COLOR, label=label)
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(NullLocator())
        _wavelength_axis(ax, lam)
        ax.set_ylabel(f"power ({units})$^2$" if units and units != "1" else "power")
        ax.set_title(f"{long_name} ({var}), lead +{spec['lead']:g} h", fontsize=10)
        ax.grid(True, linewidth=0.3, color="0.8")
        ax.legend(fontsize=8)
        ax.tick_params(labelbottom=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = positive(spec["forecast"] / positive(spec["truth"]))
        axr.plot(lam, ratio, "-", color=_FORECAST_COLOR)
        axr.axhline(1.0, color=_TRUTH_COLOR, linewidth=0.8, linestyle="--")
        if np.isfinite(ratio).any():
            axr.set_yscale("log")
            axr.yaxis.set_minor_locator(NullLocator())
        axr.set_ylabel("forecast / truth")
        axr.set_xlabel("wavelength (km)")
        axr.grid(True, linewidth=0.3, color="0.8")
    fig.suptitle("Radially averaged power spectra (ratio 1: right variance at that scale)", fontsize=11)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _plot_ranks(collected: Collected, path: Path) -> Path:
    names = list(collected.ranks)
    nrows, ncols = _grid(len(names))
    fig = _figure(nrows, ncols)
    for k, var in enumerate(names):
        info = collected.ranks[var]
        ax = fig.add_subplot(nrows, ncols, k + 1)
        counts = np.asarray(info["counts"], dtype=np.float64)
        total = counts.sum()
        freq = counts / total if total else counts
        m = int(info["members"])
        ax.bar(np.arange(m + 1), freq, width=0.85, color=_FORECAST_COLOR, edgecolor="white")
        ax.axhline(1.0 / (m + 1), color=_TRUTH_COLOR, linestyle="--", linewidth=1, label="calibrated")
        leads = info["leads"]
        span = f"+{leads[0]:g} h" if len(leads) == 1 else f"+{leads[0]:g} .. +{leads[-1]:g} h"
        long_name, _ = _head(var)
        ax.set_title(f"{long_name} ({var})\nleads {span}, {int(total)} points", fontsize=10)
        ax.set_xlabel(f"rank of the truth among {m} members")
        ax.set_ylabel("relative frequency (fraction)")
        ax.set_xticks(np.arange(m + 1))
        ax.legend(fontsize=8)
    fig.suptitle("Rank histograms (flat: calibrated; U: under-dispersive; dome: over-dispersive)", fontsize=11)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _plot_fss(collected: Collected, path: Path, spacing: float) -> Path:
    import matplotlib

    panels = [(var, k) for var in collected.fss for k in range(len(collected.fss[var]["thresholds"]))]
    nrows, ncols = _grid(len(panels))
    fig = _figure(nrows, ncols)
    cmap = matplotlib.colormaps["viridis"]
    for p, (var, k) in enumerate(panels):
        info = collected.fss[var]
        ax = fig.add_subplot(nrows, ncols, p + 1)
        leads = np.asarray(info["leads"])
        wins = info["windows"]
        for w, win in enumerate(wins):
            color = cmap(0.1 + 0.8 * w / max(len(wins) - 1, 1))
            ax.plot(leads, info["values"][:, k, w], "o-", color=color,
                    label=f"{int(win)} pt ({number_text(int(win) * spacing)} km)")
        base = info["base_rate"][:, k]
        ax.plot(leads, 0.5 + base / 2.0, "--", color="0.4", linewidth=1, label="useful (0.5 + f0/2)")
        long_name, units = _head(var)
        ax.set_title(f"{long_name} ({var}) >= {number_text(info['thresholds'][k])} {units}", fontsize=10)
        ax.set_ylabel("FSS (dimensionless)")
        ax.set_ylim(0, 1.02)
        _lead_axis(ax)
        ax.legend(fontsize=7, title="neighbourhood", title_fontsize=7)
    fig.suptitle("Fractions skill score (higher is better)", fontsize=11)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def draw_all(table: "pd.DataFrame", collected: Collected, out: Path, spacing: float) -> list[Path]:
    paths = [_plot_skill(table, out / "skill_vs_lead.png"), _plot_spectra(collected, out / "spectra.png")]
    if collected.ranks:
        paths.append(_plot_ranks(collected, out / "rank_histogram.png"))
    if collected.fss:
        paths.append(_plot_fss(collected, out / "fss.png", spacing))
    return paths
