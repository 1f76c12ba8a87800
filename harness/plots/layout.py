"""Figure furniture: the Plot a figure module returns, its size, title, legend and footer, and the shared pieces."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps, ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from . import data, style

__all__ = [
    "MAX_WIDTH_IN",
    "LOG_RATIO",
    "Plot",
    "figure",
    "finish",
    "footer",
    "log_y",
    "spans",
    "whisker",
    "vertical_ci",
    "point_handle",
    "stage_bands",
    "no_data",
    "grid",
    "hide_unused",
    "percent_of",
    "cmap",
]

MAX_WIDTH_IN = 16.0
LOG_RATIO = 20.0  # bars spanning more than this factor get a log axis, else the small ones vanish
_FOOTER_IN = 0.25  # the footer line at the bottom of every figure
_FOOTER_LINE_IN = 0.13  # each further line of it
_LEGEND_ROW_IN = 0.22  # a row of the legend at fontsize 9
_NAME = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True, slots=True)
class Plot:
    """One figure and the words a report prints with it."""

    name: str  # file-name stem: 'phases_mnist_cnn', 'relative', ...; only [a-z0-9_]
    title: str  # the question it answers, one line
    caption: str  # what a reader needs: which batch and phase, what the marks mean
    figure: Figure

    def __post_init__(self):
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"plot name {self.name!r}: only lowercase letters, digits and '_' make a file-name stem")
        if not self.title or "\n" in self.title:
            raise ValueError(f"plot {self.name!r}: the title must be one non-empty line, got {self.title!r}")


def figure(width: float, height: float) -> Figure:
    """A constrained-layout figure between 6 and MAX_WIDTH_IN inches wide."""
    return Figure(figsize=(min(max(width, 6.0), MAX_WIDTH_IN), height), layout="constrained")


def finish(fig: Figure, title: str, footer: str, handles: list) -> None:
    """The title on top; below the panels the legend, in as many columns as the width holds, then the footer."""
    fig.suptitle(title, fontsize=12, fontweight="bold")
    height = fig.get_figheight()
    lines = _wrap(footer, fig.get_figwidth())
    fig.text(0.005, 0.06 / height, "\n".join(lines), fontsize=7, color="#555555", ha="left", va="bottom")
    below = _FOOTER_IN + _FOOTER_LINE_IN * (len(lines) - 1)
    if handles:
        fits = [n for n in range(1, len(handles) + 1) if _legend_width(handles, n) <= fig.get_figwidth() - 0.2]
        ncols = max(fits, default=1)
        fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, _FOOTER_IN / height), ncols=ncols,
                   frameon=False, fontsize=9, borderaxespad=0.2)
        below += 0.1 + _LEGEND_ROW_IN * math.ceil(len(handles) / ncols)
    # NOTE: the legend is anchored by hand (constrained layout would draw an 'outside' one over the footer)
    # and the layout keeps the panels above it.
    fig.get_layout_engine().set(rect=(0, below / height, 1, 1 - below / height))


def _wrap(footer: str, width_in: float) -> list[str]:
    """The footer in as few lines as fit the width, broken between its ' · ' parts."""
    lines: list[str] = []
    for part in footer.split(" · "):
        # NOTE: ~0.05 in a character of DejaVu Sans at 7 pt
        if lines and len(lines[-1]) + 3 + len(part) <= (width_in - 0.1) / 0.05:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    return lines


def _legend_width(handles: list, ncols: int) -> float:
    """About how wide (inches) a legend at fontsize 9 is in ncols columns, filled as matplotlib fills them."""
    rows, longer = divmod(len(handles), ncols)
    sizes = [rows + 1] * longer + [rows] * (ncols - longer)
    width, start = 0.0, 0
    for size in (s for s in sizes if s):
        # NOTE: the handle and the gaps take ~0.75 in, a character of DejaVu Sans at 9 pt ~0.07 in
        width += 0.75 + 0.07 * max(len(h.get_label()) for h in handles[start:start + size])
        start += size
    return width


def footer(run: Mapping, df: pd.DataFrame | None, frameworks: Iterable[str] | None = None,
           run_id: str | None = None) -> str:
    """'run 20261202-005753-quick · suite quick · AMD EPYC, 2 logical cores · torch 2.13.0, tensorflow 2.21.0'."""
    if run_id is None and df is not None and not df.empty:
        run_id = data.first(df["run_id"])
    run_id = run_id or run.get("run_id") or "?"
    suite = run.get("suite")
    suite_name = suite.get("name") if isinstance(suite, Mapping) else suite
    env = run.get("environment") or {}
    cpu = env.get("cpu") or {}
    parts = [f"run {run_id}", f"suite {suite_name or '?'}",
             f"{cpu.get('model') or 'unknown CPU'}, {cpu.get('logical_cores') or '?'} logical cores"]
    gpus = env.get("gpus") or []
    if gpus:
        parts.append(", ".join(str(g.get("name", "?")) for g in gpus if isinstance(g, Mapping)))
    if frameworks is None:
        frameworks = set(df["framework"].dropna()) if df is not None and not df.empty else set()
    packages = env.get("packages") or {}
    versions = []
    for framework in sorted(frameworks, key=lambda f: data.rank(f, data.FRAMEWORK_ORDER)):
        package = "numpy" if framework == "reference" else "keras" if framework.startswith("keras") else framework
        # NOTE: keras-jax and keras-torch name one keras
        if packages.get(package) and f"{package} {packages[package]}" not in versions:
            versions.append(f"{package} {packages[package]}")
    if versions:
        parts.append(", ".join(versions))
    return " · ".join(parts)


def log_y(ax) -> None:
    """A log y scale whose ticks read as plain numbers (1, 2, 5, 10, 20, ...; 20k, 1M), not powers of ten."""
    ax.set_yscale("log")
    axis = ax.yaxis
    axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _number(v)))
    axis.set_minor_locator(ticker.LogLocator(base=10, subs=tuple(range(2, 10))))
    axis.set_minor_formatter(ticker.NullFormatter())


def _number(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def spans(groups) -> bool:
    """Whether the values of some group span more than LOG_RATIO: then every panel of the figure gets a
    log axis (on a linear one the small bars vanish; one scale for all panels reads more easily)."""
    for _, values in groups:
        values = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        values = values[np.isfinite(values) & (values > 0)]
        if len(values) > 1 and values.max() / values.min() > LOG_RATIO:
            return True
    return False


def whisker(ax, x: float, median: float, low: float, high: float) -> None:
    """The CI of one bar; nothing where the CI is unknown (NaN)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return
    below, above = max(median - low, 0.0), max(high - median, 0.0)
    ax.errorbar(x, median, yerr=[[below], [above]], fmt="none", ecolor="black", elinewidth=1, capsize=2, zorder=4)


def vertical_ci(ax, x, y, low, high, color: str) -> None:
    keep = np.isfinite(low) & np.isfinite(high)
    if keep.any():
        ax.errorbar(x[keep], y[keep], yerr=[np.maximum(y[keep] - low[keep], 0), np.maximum(high[keep] - y[keep], 0)],
                    fmt="none", ecolor=color, elinewidth=1, capsize=2, alpha=0.7, zorder=2)


def point_handle(look: style.Style, label: str, line: bool = True) -> Line2D:
    return Line2D([], [], color=look.color, marker=look.marker, markeredgecolor=style.darker(look.color),
                  markeredgewidth=0.5, linestyle="-" if line else "none", label=label)


def stage_bands(ax, stages: list) -> None:
    """Every other stage ('forward', 'gradient', 'update') of the checked tensors on a grey band, named at the top."""
    blocks = []  # (stage, first index, last index)
    for i, stage in enumerate(stages):
        if blocks and blocks[-1][0] == stage:
            blocks[-1][2] = i
        else:
            blocks.append([stage, i, i])
    for n, (stage, first, last) in enumerate(blocks):
        if n % 2:
            ax.axvspan(first - 0.5, last + 0.5, color="#f0f0f0", zorder=0, linewidth=0)
        if isinstance(stage, str):
            ax.text((first + last) / 2, 0.97, stage, transform=ax.get_xaxis_transform(), ha="center", va="top",
                    fontsize=8, color="#666666")


def no_data(ax) -> None:
    ax.text(0.5, 0.5, "no timing", transform=ax.transAxes, ha="center", va="center", color="#888888")


def grid(n: int, max_cols: int) -> tuple[int, int]:
    ncols = min(n, max_cols)
    return math.ceil(n / ncols), ncols


def hide_unused(axes, used: int) -> None:
    flat = [ax for row in axes for ax in row]
    for ax in flat[used:]:
        ax.set_visible(False)


def percent_of(peak: float):
    """GFLOP/s -> % of the peak, and back: the functions of a secondary axis."""
    return (lambda g: np.asarray(g, dtype=float) / peak * 100.0,
            lambda p: np.asarray(p, dtype=float) * peak / 100.0)


def cmap(name: str):
    """The colormap, with missing cells (no timing) light grey."""
    return colormaps[name].with_extremes(bad="#f2f2f2")
