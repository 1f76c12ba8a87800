"""DataFrames of a run -> matplotlib figures, one question each; no measuring, no files.

`plots(df, checks, run)` takes the tables of harness.results (`load`, `load_checks`, `read_run`)
and returns every figure the run has data for. Each `plot_*` function answers one question and
returns None when the run lacks what it needs (one framework, one batch size, no checks, ...).

Figures use matplotlib's object-oriented API only (`matplotlib.figure.Figure`, never pyplot): no
global state, no GUI backend, safe to build in any thread or headless process.

Every plot marks the same two things the same way (`_Marks`): a cell flagged noisy by
harness.stats (CV or IQR past its threshold) is hatched or hollow, and a cell whose equivalence
check failed is drawn with a red edge or a red cross and '!'. In the heatmap and in text they are
the report's '~' and '!'. Each figure carries a footer naming the run, the machine and the framework
versions, so that an image seen on its own still says where its numbers come from.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib import colormaps, ticker
from matplotlib.colors import LogNorm, to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from . import results
from .adapters.base import PHASES
from .report import contender_label
from .stats import NOISY_CV, NOISY_IQR

__all__ = [
    "Plot",
    "plots",
    "plot_phases",
    "plot_scaling",
    "plot_relative",
    "plot_equivalence",
    "plot_efficiency",
    "plot_threads",
    "framework_color",
]

_FRAMEWORK_ORDER = ("reference", "torch", "tensorflow", "jax")
_MODE_ORDER = ("eager",)
_DTYPE_ORDER = ("float32", "float64")

# Fixed colours for the frameworks fwbench knows; any other (a plugin) gets one of _OTHER_COLORS by a
# hash of its name, the same in every plot and every run. Red is kept for failed checks.
_FRAMEWORK_COLORS = {"reference": "#5f5f5f", "torch": "#ee7d1a", "tensorflow": "#1f77b4", "jax": "#2ca02c"}
_OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f00", "#393b79")
_RED = "#d62728"
_MARKERS = ("o", "s", "^", "D", "P", "X", "*")  # 'v' is kept for exact zeros in the equivalence plot
_DEVICE_LINESTYLES = ("-", "--", ":", "-.")

_MAX_WIDTH_IN = 16.0
_LOG_RATIO = 20.0  # bars spanning more than this factor get a log axis, else the small ones vanish
_MAX_BATCH_ROWS = 3
_EXACT_FLOOR = 1e-18
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


def plots(df: pd.DataFrame, checks: pd.DataFrame, run: Mapping) -> list[Plot]:
    """Every plot the run has data for, in reading order.

    The verdict first (relative speed), then each model's phases, batch-size and thread scaling,
    efficiency against the machine's peak, and the equivalence of every contender with the reference.
    """
    cells = _cells(df)
    found: list[Plot | None] = [plot_relative(df, run)]
    found += [plot_phases(df, run, model) for model in _models(cells, run)]
    found += [plot_scaling(df, run, phase) for phase in _present(cells["phase"], PHASES)]
    found += [plot_threads(df, run), plot_efficiency(df, run)]
    if checks is not None and not checks.empty:
        found += [plot_equivalence(checks, run, dtype) for dtype in _present(checks["dtype"], _DTYPE_ORDER)]
    return [p for p in found if p is not None]


def framework_color(framework: str) -> str:
    """The colour of a framework in every plot: fixed for the built-ins, a stable pick for plugins."""
    if framework in _FRAMEWORK_COLORS:
        return _FRAMEWORK_COLORS[framework]
    return _OTHER_COLORS[zlib.crc32(framework.encode()) % len(_OTHER_COLORS)]


# ------------------------------------------------------------------------------------------------
# the plots


def plot_phases(df: pd.DataFrame, run: Mapping, model: str) -> Plot | None:
    """One model: the median time of each phase per contender, a panel per device and batch size."""
    cells = _cells(df)
    cells = cells[cells["model"] == model]
    if cells.empty:
        return None
    contenders = _contenders(cells)
    styles = _styles(_cells(df))
    devices = _present(cells["device"], ())
    phases = _present(cells["phase"], PHASES)
    all_batches = sorted(int(b) for b in cells["batch_size"].unique())
    batches = _some_batches(all_batches)
    fig = _figure(width=1.3 + len(devices) * (1.2 + 0.35 * len(phases) * len(contenders)),
                  height=1.2 + 2.6 * len(batches))
    axes = fig.subplots(len(batches), len(devices), squeeze=False)
    marks = _Marks()
    log = _spans(cells[cells["batch_size"].isin(batches)].groupby(["batch_size", "device"])["median_s"])
    width = 0.8 / len(contenders)
    for r, batch in enumerate(batches):
        for c, device in enumerate(devices):
            ax = axes[r][c]
            if log:
                _log_y(ax)
            here = cells[(cells["batch_size"] == batch) & (cells["device"] == device)]
            for i, contender in enumerate(contenders):
                rows = here[here["contender"] == contender.name].drop_duplicates("phase").set_index("phase")
                for p, phase in enumerate(phases):
                    if phase not in rows.index:
                        continue
                    row = rows.loc[phase]
                    median = row["median_s"] * 1e3
                    x = p + (i - (len(contenders) - 1) / 2) * width
                    (bar,) = ax.bar(x, median, width * 0.92, color=styles[contender.name].color,
                                    edgecolor=_darker(styles[contender.name].color), linewidth=0.6, zorder=2)
                    bar.set_gid(row["key"])
                    _whisker(ax, x, median, row["ci_low_s"] * 1e3, row["ci_high_s"] * 1e3)
                    marks.bar(ax, bar, row, top=row["ci_high_s"] * 1e3)
            if c == 0:
                ax.set_ylabel("median time per call (ms)")
            ax.set_xticks(range(len(phases)), [p.replace("_", "\n") if len(p) > 10 else p for p in phases])
            ax.set_xlim(-0.5, len(phases) - 0.5)
            ax.set_title(f"{device} · batch {batch}", fontsize=10)
            ax.grid(axis="y", alpha=0.3, zorder=0)
            if here.empty:
                _no_data(ax)
    handles = [Patch(facecolor=styles[c.name].color, edgecolor=_darker(styles[c.name].color), label=c.label)
               for c in contenders]
    handles += [Line2D([], [], color="black", marker="|", linestyle="none", markersize=10,
                       label="95% CI of the median")]
    title = f"{model}: time per phase, per framework"
    _finish(fig, title, _footer(run, df), handles + marks.handles())
    caption = (f"Median time per call of each phase of {model}, lower is better; whiskers are the 95% bootstrap "
               f"CI of the median. {_batch_note(all_batches, batches)}")
    if log:
        caption += f" The time axis is logarithmic: the bars of a panel differ by more than {_LOG_RATIO:.0f}x."
    caption += _threads_note(df) + marks.caption()
    return Plot(f"phases_{_slug(model)}", title, caption, fig)


def plot_scaling(df: pd.DataFrame, run: Mapping, phase: str) -> Plot | None:
    """One phase: throughput against batch size, a panel per model, a line per contender (and device)."""
    cells = _cells(df)
    cells = cells[cells["phase"] == phase]
    if cells.empty or cells.groupby(["model", "contender", "device"])["batch_size"].nunique().max() < 2:
        return None  # not one line of two points
    styles = _styles(_cells(df))
    contenders = _contenders(cells)
    devices = _present(cells["device"], ())
    dashes = {d: _DEVICE_LINESTYLES[i % len(_DEVICE_LINESTYLES)] for i, d in enumerate(devices)}
    models = _models(cells, run)
    nrows, ncols = _grid(len(models), 3)
    fig = _figure(width=1.0 + 4.4 * ncols, height=1.4 + 3.2 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    marks = _Marks()
    for k, model in enumerate(models):
        ax = axes[k // ncols][k % ncols]
        here = cells[cells["model"] == model]
        for contender in contenders:
            for device in devices:
                rows = here[(here["contender"] == contender.name) & (here["device"] == device)]
                rows = rows[np.isfinite(rows["samples_per_s"])].sort_values("batch_size")
                if rows.empty:
                    continue
                style = styles[contender.name]
                x = rows["batch_size"].astype(float).to_numpy()
                y = rows["samples_per_s"].to_numpy()
                # throughput = batch / time: the CI of the time, turned over, is the CI of the throughput
                with np.errstate(divide="ignore", invalid="ignore"):  # a CI of 0 or NaN draws no bar
                    low = x / rows["ci_high_s"].to_numpy(dtype=float)
                    high = x / rows["ci_low_s"].to_numpy(dtype=float)
                ax.plot(x, y, color=style.color, linestyle=dashes[device], linewidth=1.5, zorder=2,
                        gid=f"{contender.label}@{device}")
                _vertical_ci(ax, x, y, low, high, style.color)
                for xi, yi, (_, row) in zip(x, y, rows.iterrows(), strict=True):
                    marks.point(ax, xi, yi, row, style)
        batches = sorted(int(b) for b in here["batch_size"].unique())
        ax.set_xscale("log", base=2)
        _log_y(ax)
        ax.xaxis.set_major_locator(ticker.FixedLocator(batches))
        ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        if len(batches) == 1:
            ax.set_xlim(batches[0] / 2, batches[0] * 2)
        ax.set_title(model, fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_xlabel("batch size (samples)")
        if k % ncols == 0:
            ax.set_ylabel("throughput (samples/s)")
    _hide_unused(axes, len(models))
    handles = [_point_handle(styles[c.name], c.label) for c in contenders]
    if len(devices) > 1:
        handles += [Line2D([], [], color="black", linestyle=dashes[d], label=d) for d in devices]
    title = f"{phase}: how throughput scales with batch size"
    _finish(fig, title, _footer(run, df), handles + marks.handles())
    caption = (f"Samples per second of {phase} (batch size / median time per call) against the batch size, both "
               "axes logarithmic; higher is better, and a line flattening out means a bigger batch no longer "
               "pays. Error bars are the 95% CI of the median.")
    if len(devices) > 1:
        caption += " Line style tells the devices apart."
    caption += _threads_note(df) + marks.caption()
    return Plot(f"scaling_{_slug(phase)}", title, caption, fig)


def plot_relative(df: pd.DataFrame, run: Mapping) -> Plot | None:
    """Who is fastest: time relative to the fastest contender of each model, a heatmap per phase."""
    cells = _cells(df)
    if cells.empty:
        return None
    phases = _present(cells["phase"], PHASES)
    devices = _present(cells["device"], ())
    models = _models(cells, run)
    contenders = _contenders(cells)
    tables = []  # per phase: the columns (model, device, batch) and the key of each cell, rows = contenders
    for phase in phases:
        here = cells[cells["phase"] == phase]
        columns, keys = [], []
        for model in models:
            for device in devices:
                mine = here[(here["model"] == model) & (here["device"] == device)]
                if mine.empty:
                    continue
                batch = int(mine["batch_size"].max())
                mine = mine[mine["batch_size"] == batch].drop_duplicates("contender").set_index("contender")
                columns.append((model, device, batch))
                keys.append([mine.at[c.name, "key"] if c.name in mine.index else None for c in contenders])
        tables.append((phase, columns, np.array(keys, dtype=object).T))
    by_key = cells.set_index("key")
    ratios = []
    for _, _, keys in tables:
        medians = np.array([[by_key.at[k, "median_s"] if k else np.nan for k in row] for row in keys], dtype=float)
        # NOTE: the fastest of each column, model and device alike: a GPU is not raced against a CPU here
        ratios.append(medians / np.nanmin(medians, axis=0, keepdims=True))
    vmax = max(2.0, *(float(np.nanmax(r)) for r in ratios))
    norm = LogNorm(vmin=1.0, vmax=vmax)
    cmap = _cmap("Blues")
    label_w = 0.3 + 0.075 * max(len(c.label) for c in contenders)
    ncols_max = max(len(t[1]) for t in tables)
    panel_w = label_w + 1.15 * ncols_max
    per_row = max(1, min(len(tables), int((_MAX_WIDTH_IN - 1.2) // panel_w)))
    nrows = math.ceil(len(tables) / per_row)
    fig = _figure(width=max(7.5, per_row * panel_w + 1.4), height=1.3 + nrows * (1.0 + 0.42 * len(contenders)))
    axes = fig.subplots(nrows, per_row, squeeze=False)
    marks = _Marks()
    image = None
    for n, ((phase, columns, keys), ratio) in enumerate(zip(tables, ratios, strict=True)):
        ax = axes[n // per_row][n % per_row]
        image = ax.imshow(np.ma.masked_invalid(ratio), cmap=cmap, norm=norm, aspect="auto")
        for i, j in np.ndindex(ratio.shape):
            if keys[i, j] is None:
                ax.text(j, i, "–", ha="center", va="center", fontsize=9, color="#888888")
                continue
            row = by_key.loc[keys[i, j]]
            t = ax.text(j, i, f"{ratio[i, j]:.2f}" + marks.suffix(row), ha="center", va="center", fontsize=9,
                        color="white" if norm(ratio[i, j]) > 0.55 else "black", gid=keys[i, j])
            if marks.is_unverified(row):
                t.set_color(_RED)
                t.set_fontweight("bold")
                t.set_bbox({"facecolor": "white", "edgecolor": _RED, "boxstyle": "round,pad=0.15"})
        names = [f"{m}\n{d} · batch {b}" if len(devices) > 1 else f"{m}\nbatch {b}" for m, d, b in columns]
        ax.set_xticks(range(len(columns)), names, fontsize=8)
        ax.set_yticks(range(len(contenders)), [c.label for c in contenders] if n % per_row == 0 else [])
        ax.tick_params(length=0)
        ax.set_title(phase, fontsize=10, loc="left")
        for spine in ax.spines.values():
            spine.set_visible(False)
    _hide_unused(axes, len(tables))
    colorbar = fig.colorbar(image, ax=[ax for row in axes for ax in row if ax.get_visible()], shrink=0.9, pad=0.02)
    colorbar.set_label("time / fastest")
    colorbar.set_ticks([t for t in (1, 1.5, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000) if t <= vmax])
    colorbar.ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    colorbar.ax.yaxis.set_minor_locator(ticker.NullLocator())
    title = "Relative speed: time / fastest, per model and phase"
    _finish(fig, title, _footer(run, df), marks.handles())
    caption = ("Median time per call divided by the fastest contender's on the same model, device and phase "
               "(1.00 = fastest, 2.00 = twice as slow), at each model's largest batch size; '–' means no timing.")
    caption += _threads_note(df) + marks.caption()
    return Plot("relative", title, caption, fig)


def plot_equivalence(checks: pd.DataFrame, run: Mapping, dtype: str, df: pd.DataFrame | None = None) -> Plot | None:
    """One dtype: the normwise error of every checked tensor per contender, against its tolerance."""
    if checks is None or checks.empty:
        return None
    here = checks[(checks["dtype"] == dtype) & checks["normwise"].notna()].copy()
    if here.empty:
        return None
    devices = _present(here["device"], ())
    here["contender"] = [_Contender(f, m, "", d if len(devices) > 1 else "").name
                         for f, m, d in zip(here["framework"], here["mode"], here["device"], strict=True)]
    contenders = _contenders_of(here, devices_in_label=len(devices) > 1)
    styles = _styles_of(contenders)
    models = _models(here, run)
    positive = here.loc[here["normwise"] > 0, "normwise"]
    tolerances = here["normwise_tol"].dropna()
    tolerances = tolerances[tolerances > 0]
    # an error of exactly 0 has no place on a log axis: it is drawn a decade below everything else
    smallest = min([*positive, *tolerances], default=_EXACT_FLOOR * 10)
    floor = 10.0 ** (math.floor(math.log10(smallest)) - 1)
    largest = max([*positive, *tolerances], default=1.0)
    exact = bool((here["normwise"] == 0).any())
    most = max(len(pd.unique(here.loc[here["model"] == m, "tensor"])) for m in models)
    ncols = 1 if len(models) == 1 else 2
    nrows = math.ceil(len(models) / ncols)
    fig = _figure(width=1.2 + ncols * max(4.5, 0.19 * most + 1.2), height=1.5 + 3.6 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    exact_any = tolerance_any = False
    failed_count = 0
    divergences = []
    for k, model in enumerate(models):
        ax = axes[k // ncols][k % ncols]
        rows = here[here["model"] == model]
        tensors = list(pd.unique(rows["tensor"]))
        where = {t: i for i, t in enumerate(tensors)}
        xs = np.arange(len(tensors))
        _stage_bands(ax, rows.groupby("tensor", sort=False)["stage"].first().reindex(tensors).tolist())
        tolerance = rows.groupby("tensor", sort=False)["normwise_tol"].max().reindex(tensors).to_numpy(float)
        if np.isfinite(tolerance).any():
            tolerance_any = True
            ax.step(np.r_[xs - 0.5, xs[-1] + 0.5], np.r_[tolerance, tolerance[-1]], where="post", color="black",
                    linestyle="--", linewidth=1.1, zorder=2)
        present = [c for c in contenders if (rows["contender"] == c.name).any()]
        spread = min(0.6, 0.15 * (len(present) - 1))
        failing = set()
        for i, contender in enumerate(present):
            style = styles[contender.name]
            offset = (i / (len(present) - 1) - 0.5) * spread if len(present) > 1 else 0.0
            mine = rows[rows["contender"] == contender.name]
            for _, row in mine.iterrows():
                x = where[row["tensor"]] + offset
                if row["normwise"] == 0:
                    exact_any = True
                    ax.plot(x, floor, marker="v", color=style.color, markersize=6, linestyle="none", zorder=3)
                else:
                    ax.plot(x, row["normwise"], marker=style.marker, color=style.color, markersize=5,
                            markeredgecolor=_darker(style.color), markeredgewidth=0.5, linestyle="none", zorder=3)
                if results.flag(row["passed"]) is False:
                    failing.add(row["tensor"])
                    failed_count += 1
                    _red_cross(ax, x, max(row["normwise"], floor))
            where_first = mine.loc[mine["check_status"] == "fail", "first_divergence"].dropna()
            if not where_first.empty:
                divergences.append(f"{contender.label} on {model} first diverges at {where_first.iloc[0]}")
        if exact_any:
            ax.axhline(floor, color="#999999", linestyle=":", linewidth=0.8, zorder=1)
        ax.set_yscale("log")
        ax.set_ylim((floor if exact else smallest) / 3, largest * 30)  # headroom for the stage names
        ax.set_xticks(xs, tensors, rotation=90, fontsize=7)
        for label in ax.get_xticklabels():
            if label.get_text() in failing:
                label.set_color(_RED)
                label.set_fontweight("bold")
        ax.set_xlim(-0.5, len(tensors) - 0.5)
        ax.set_title(model, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if k % ncols == 0:
            ax.set_ylabel("normwise error ||a - ref|| / ||ref||")
    _hide_unused(axes, len(models))
    handles = [_point_handle(styles[c.name], c.label, line=False) for c in contenders]
    if tolerance_any:
        handles.append(Line2D([], [], color="black", linestyle="--", label="tolerance (normwise_tol)"))
    if exact_any:
        handles.append(Line2D([], [], color="#777777", marker="v", linestyle="none",
                              label=f"exact: error 0, drawn at {floor:.0e}"))
    if failed_count:
        handles.append(Line2D([], [], marker="x", color=_RED, markeredgewidth=2, markersize=9, linestyle="none",
                              label="beyond tolerance: check failed"))
    title = f"{dtype}: does each framework compute what the float64 reference does?"
    frameworks = set(here["framework"])
    _finish(fig, title, _footer(run, df, frameworks=frameworks, run_id=_first(here["run_id"])), handles)
    caption = (f"Normwise error ||a - ref|| / ||ref|| of every tensor checked in {dtype} against the float64 NumPy "
               "reference (log scale), lower is better: outputs of the forward pass, then gradients, then optimizer "
               "updates, in the order the check compares them. The dashed step is the tolerance each tensor is "
               "held to.")
    if exact_any:
        caption += f" An error of exactly 0 is drawn as a triangle at {floor:.0e}."
    if failed_count:
        caption += (f" {failed_count} error(s) beyond their tolerance are crossed in red, and their tensors named in "
                    "red.")
    else:
        caption += " Every tensor is within its tolerance."
    if divergences:
        caption += " " + "; ".join(divergences) + "."
    return Plot(f"equivalence_{_slug(dtype)}", title, caption, fig)


def plot_efficiency(df: pd.DataFrame, run: Mapping) -> Plot | None:
    """Achieved GFLOP/s per model and contender against the machine's measured matmul peak."""
    cells = _cells(df)
    if cells.empty:
        return None
    gflops = cells["gflops_per_s"].astype(float)
    cells = cells[np.isfinite(gflops) & (gflops > 0)]
    if cells.empty:
        return None
    # each model at its largest batch size, per device and phase
    largest = cells.groupby(["model", "device", "phase"])["batch_size"].transform("max")
    cells = cells[cells["batch_size"] == largest]
    styles = _styles(_cells(df))
    contenders = _contenders(cells)
    devices = _present(cells["device"], ())
    phases = _present(cells["phase"], PHASES)
    models = _models(cells, run)
    peaks = {device: results.peak_for(device, run.get("peak_gflops") or {}) for device in devices}
    with_peaks = cells.assign(peak=cells["device"].map(peaks))
    heights = pd.concat([with_peaks[["device", "phase", "gflops_per_s"]],
                         with_peaks[["device", "phase", "peak"]].rename(columns={"peak": "gflops_per_s"})])
    log = _spans(heights.dropna().groupby(["device", "phase"])["gflops_per_s"])
    width = 0.8 / len(contenders)
    fig = _figure(width=1.6 + len(phases) * (1.4 + len(models) * (0.25 + 0.22 * len(contenders))),
                  height=1.6 + 3.4 * len(devices))
    axes = fig.subplots(len(devices), len(phases), squeeze=False)
    marks = _Marks()
    for r, device in enumerate(devices):
        peak = peaks[device]
        for c, phase in enumerate(phases):
            ax = axes[r][c]
            if log:
                _log_y(ax)
            here = cells[(cells["device"] == device) & (cells["phase"] == phase)]
            batches = {}
            for j, model in enumerate(models):
                mine = here[here["model"] == model]
                for i, contender in enumerate(contenders):
                    match = mine[mine["contender"] == contender.name]
                    if match.empty:
                        continue
                    row = match.iloc[0]
                    batches[model] = int(row["batch_size"])
                    x = j + (i - (len(contenders) - 1) / 2) * width
                    style = styles[contender.name]
                    (bar,) = ax.bar(x, row["gflops_per_s"], width * 0.92, color=style.color,
                                    edgecolor=_darker(style.color), linewidth=0.6, zorder=2)
                    bar.set_gid(row["key"])
                    marks.bar(ax, bar, row)
            if c == 0:
                ax.set_ylabel("achieved GFLOP/s")
            if peak:
                ax.axhline(peak, color="black", linestyle="--", linewidth=1.2, zorder=3)
                ax.annotate(f"float32 matmul peak: {peak:,.0f} GFLOP/s", (0.01, peak),
                            xycoords=("axes fraction", "data"), xytext=(0, 3), textcoords="offset points",
                            fontsize=8, va="bottom")
                ax.set_ylim(top=peak * 4 if log else peak * 1.15)
                # NOTE: after the scale is set: a secondary axis resets its formatter when the parent's scale changes
                right = ax.secondary_yaxis("right", functions=_percent_of(peak))
                if log:
                    right.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                    right.yaxis.set_minor_formatter(ticker.NullFormatter())
                right.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}%"))
                if c == len(phases) - 1:
                    right.set_ylabel("% of peak")
            if len(set(batches.values())) == 1:
                labels = models
                ax.set_xlabel(f"model (batch {next(iter(batches.values()))})", fontsize=9)
            else:
                labels = [f"{m}\nbatch {batches[m]}" if m in batches else m for m in models]
            slanted = len(models) > 3
            ax.set_xticks(range(len(models)), labels, fontsize=8, rotation=30 if slanted else 0,
                          ha="right" if slanted else "center", rotation_mode="anchor" if slanted else "default")
            ax.set_xlim(-0.5, len(models) - 0.5)
            ax.set_title(f"{phase} · {device}" if len(devices) > 1 else phase, fontsize=10)
            ax.grid(axis="y", alpha=0.3, zorder=0)
            if here.empty:
                _no_data(ax)
    handles = [Patch(facecolor=styles[c.name].color, edgecolor=_darker(styles[c.name].color), label=c.label)
               for c in contenders]
    peak_any = any(peaks.values())
    if peak_any:
        handles.append(Line2D([], [], color="black", linestyle="--", label="measured float32 matmul peak"))
    title = "Efficiency: achieved GFLOP/s against the machine's matmul peak"
    _finish(fig, title, _footer(run, df), handles + marks.handles())
    caption = ("Floating-point operations per second each contender achieves (the model's FLOPs per call / the "
               "median time), at each model's largest batch size; higher is better.")
    if peak_any:
        caption += (" The dashed line is the float32 matmul peak fwbench measured on the device; the right axis "
                    "reads in % of it.")
    missing = [d for d, p in peaks.items() if not p]
    if missing:
        caption += f" No peak was measured for {', '.join(missing)}, so there is no peak line there."
    if log:
        caption += f" The axis is logarithmic: the bars (and the peak) differ by more than {_LOG_RATIO:.0f}x."
    caption += _threads_note(df) + marks.caption()
    return Plot("efficiency", title, caption, fig)


def plot_threads(df: pd.DataFrame, run: Mapping) -> Plot | None:
    """Speed-up against the thread count, a panel per model, at the largest batch size."""
    cells = _cells(df, all_threads=True)
    cells = cells[cells["threads"].notna()]
    if cells.empty or cells["threads"].nunique() < 2:
        return None
    phases = _present(cells["phase"], PHASES)
    phase = "forward_backward" if "forward_backward" in phases else phases[0]
    cells = cells[cells["phase"] == phase]
    # only what was swept: a contender on a device at a batch size timed at two thread counts or more
    swept = cells.groupby(["model", "contender", "device", "batch_size"])["threads"].transform("nunique") > 1
    cells = cells[swept]
    if cells.empty:
        return None
    styles = _styles(_cells(df))
    contenders = _contenders(cells)
    devices = _present(cells["device"], ())
    dashes = {d: _DEVICE_LINESTYLES[i % len(_DEVICE_LINESTYLES)] for i, d in enumerate(devices)}
    models = _models(cells, run)
    threads = sorted(int(t) for t in cells["threads"].unique())
    nrows, ncols = _grid(len(models), 3)
    fig = _figure(width=1.0 + 4.2 * ncols, height=1.4 + 3.2 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    marks = _Marks()
    batches = []
    drawn = set()  # the devices with a line
    for k, model in enumerate(models):
        ax = axes[k // ncols][k % ncols]
        here = cells[cells["model"] == model]
        batch = int(here["batch_size"].max())
        batches.append(batch)
        here = here[here["batch_size"] == batch]
        for contender in contenders:
            for device in devices:
                rows = here[(here["contender"] == contender.name) & (here["device"] == device)].sort_values("threads")
                if len(rows) < 2 or rows["threads"].iloc[0] != threads[0]:
                    continue  # no line, or none from the common baseline
                base = rows.iloc[0]
                x = rows["threads"].astype(float).to_numpy()
                y = base["median_s"] / rows["median_s"].to_numpy()
                style = styles[contender.name]
                ax.plot(x, y, color=style.color, linestyle=dashes[device], linewidth=1.5, zorder=2,
                        gid=f"{contender.label}@{device}")
                for xi, yi, (_, row) in zip(x, y, rows.iterrows(), strict=True):
                    marks.point(ax, xi, yi, row, style)
                drawn.add(device)
        ideal = np.array(threads, dtype=float)
        ax.plot(ideal, ideal / ideal[0], color="#888888", linestyle="--", linewidth=1, zorder=1)
        ax.set_ylim(bottom=0)
        ax.axhline(1.0, color="#bbbbbb", linewidth=0.8, zorder=1)
        ax.xaxis.set_major_locator(ticker.FixedLocator(threads))
        ax.set_title(f"{model} · batch {batch}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_xlabel("threads")
        if k % ncols == 0:
            ax.set_ylabel(f"speed-up over {threads[0]} thread{'s' if threads[0] > 1 else ''} (x)")
    if not drawn:
        return None
    _hide_unused(axes, len(models))
    handles = [_point_handle(styles[c.name], c.label) for c in contenders]
    handles.append(Line2D([], [], color="#888888", linestyle="--", label="ideal (linear) speed-up"))
    if len(drawn) > 1:
        handles += [Line2D([], [], color="black", linestyle=dashes[d], label=d) for d in devices if d in drawn]
    title = f"Thread scaling: speed-up of {phase} with more CPU threads"
    _finish(fig, title, _footer(run, df), handles + marks.handles())
    sizes = sorted(set(batches))
    caption = (f"Median time at {threads[0]} thread{'s' if threads[0] > 1 else ''} / median time at each thread "
               f"count, for {phase} at each model's largest batch size "
               f"({', '.join(map(str, sizes))}); the dashed line is the ideal linear speed-up, higher is better.")
    caption += marks.caption()
    return Plot("threads", title, caption, fig)


# ------------------------------------------------------------------------------------------------
# the marks: noisy and unverified cells, drawn the same way in every plot


@dataclass
class _Marks:
    """Draws the marks of a cell and remembers what it drew, for the legend and the caption.

    Noisy (harness.stats: CV >= NOISY_CV or IQR >= NOISY_IQR of the median): a hatched bar, a hollow
    marker, '~' after a number. Unverified (the equivalence check failed): a red edge and '!' over a
    bar, a red cross behind a marker, '!' in red after a number. A tensor beyond its tolerance in the
    equivalence plot gets the same red cross.
    """

    noisy: int = 0
    unverified: int = 0
    kind: str = ""  # 'bar', 'point' or 'text': how this plot draws its cells

    @staticmethod
    def is_noisy(row) -> bool:
        return results.flag(row["noisy"]) is True

    @staticmethod
    def is_unverified(row) -> bool:
        return results.flag(row["verified"]) is False

    def _count(self, row, kind: str) -> tuple[bool, bool]:
        self.kind = kind
        noisy, unverified = self.is_noisy(row), self.is_unverified(row)
        self.noisy += noisy
        self.unverified += unverified
        return noisy, unverified

    def bar(self, ax, bar, row, top: float = math.nan) -> None:
        """Mark a bar; top is where its whisker ends, so that the '!' sits above it."""
        noisy, unverified = self._count(row, "bar")
        if noisy:
            bar.set_hatch("//")
        if unverified:
            bar.set_edgecolor(_RED)
            bar.set_linewidth(2.0)
            x = bar.get_x() + bar.get_width() / 2
            y = max(bar.get_height(), top) if math.isfinite(top) else bar.get_height()
            ax.annotate("!", (x, y), xytext=(0, 2), textcoords="offset points", ha="center",
                        va="bottom", color=_RED, fontweight="bold", fontsize=12, zorder=5)

    def point(self, ax, x, y, row, style: _Style) -> None:
        noisy, unverified = self._count(row, "point")
        ax.plot(x, y, marker=style.marker, markersize=6, linestyle="none", zorder=3, color=style.color,
                markerfacecolor="white" if noisy else style.color, markeredgewidth=1.4 if noisy else 0.5,
                markeredgecolor=style.color if noisy else _darker(style.color))
        if unverified:
            _red_cross(ax, x, y)

    def suffix(self, row) -> str:
        """'~' noisy, '!' unverified: what follows a number (the report's tables write the same)."""
        noisy, unverified = self._count(row, "text")
        return ("~" if noisy else "") + ("!" if unverified else "")

    def handles(self) -> list:
        found = []
        if self.noisy:
            label = f"noisy: CV ≥ {NOISY_CV:.0%} or IQR ≥ {NOISY_IQR:.0%} of median"
            if self.kind == "bar":
                found.append(Patch(facecolor="white", edgecolor="#333333", hatch="//", label=label))
            elif self.kind == "point":
                found.append(Line2D([], [], marker="o", markerfacecolor="white", markeredgecolor="#333333",
                                    markeredgewidth=1.4, linestyle="none", label=label))
            else:
                found.append(Patch(facecolor="none", edgecolor="none", label=f"~  {label}"))
        if self.unverified:
            label = "equivalence check failed"
            if self.kind == "bar":
                found.append(Patch(facecolor="white", edgecolor=_RED, linewidth=2, label=f"red edge, !: {label}"))
            elif self.kind == "point":
                found.append(Line2D([], [], marker="x", color=_RED, markeredgewidth=2, markersize=9,
                                    linestyle="none", label=label))
            else:
                found.append(Patch(facecolor="white", edgecolor=_RED, label=f"!  {label}"))
        return found

    def caption(self) -> str:
        found = ""
        how = {"bar": ("Hatched bars mark", "A red edge and '!'"), "point": ("Hollow markers mark", "A red cross"),
               "text": ("A '~' after a number marks", "A red '!' after a number")}.get(self.kind, ("", ""))
        if self.noisy:
            found += (f" {how[0]} noisy timings (CV ≥ {NOISY_CV:.0%} or IQR ≥ {NOISY_IQR:.0%} of the median): "
                      "the median stands, but the spread says the machine was busy.")
        if self.unverified:
            found += (f" {how[1]} marks a contender whose equivalence check failed: it was timed, but it does not "
                      "compute what the reference does.")
        return found


def _red_cross(ax, x, y) -> None:
    """A large red cross behind a marker (zorder 3), so that the marker's colour still shows in its middle."""
    ax.plot(x, y, marker="x", markersize=13, markeredgewidth=2.2, color=_RED, linestyle="none", zorder=2.9)


# ------------------------------------------------------------------------------------------------
# the data


class _Contender(NamedTuple):
    """What races in a plot: a framework in a mode (and dtype, and device where those vary)."""

    framework: str
    mode: str
    dtype: str = ""
    device: str = ""

    @property
    def name(self) -> str:
        return "/".join(self)

    @property
    def label(self) -> str:
        """'torch', 'torch compile', 'tensorflow xla · float64': the report's label, and the dtype and
        device where those vary."""
        text = contender_label(self.framework, self.mode or "eager")
        return " · ".join(part for part in (text, self.dtype, self.device) if part)


class _Style(NamedTuple):
    color: str
    marker: str


def _cells(df: pd.DataFrame | None, all_threads: bool = False) -> pd.DataFrame:
    """The timed cells ('ok' with a positive median) with a 'contender' column.

    Unless all_threads, only the most threads of a run that swept them: the other plots compare
    contenders at one setting, and plot_threads shows the sweep.
    """
    if df is None or df.empty or "status" not in df.columns:
        return pd.DataFrame(columns=[*results.COLUMNS, "contender"])
    median = pd.to_numeric(df["median_s"], errors="coerce")
    ok = df[(df["status"] == "ok") & (median > 0)].copy()
    if not all_threads and ok["threads"].nunique() > 1:
        ok = ok[ok["threads"] == ok["threads"].max()]
    with_dtype = ok["dtype"].nunique() > 1
    ok["contender"] = [_Contender(f, m, d if with_dtype else "").name
                       for f, m, d in zip(ok["framework"], ok["mode"], ok["dtype"], strict=True)]
    return ok


def _threads_note(df: pd.DataFrame) -> str:
    ok = df[(df["status"] == "ok") & df["median_s"].notna()] if not df.empty else df
    counts = sorted(int(t) for t in ok["threads"].dropna().unique()) if not ok.empty else []
    if len(counts) < 2:
        return ""
    return f" At {counts[-1]} threads (the run also timed {', '.join(map(str, counts[:-1]))}: see the thread plot)."


def _contenders(cells: pd.DataFrame) -> list[_Contender]:
    """The contenders of cells, framework by framework in a fixed order."""
    found = {_Contender(*name.split("/")) for name in cells["contender"].unique()}
    return sorted(found, key=_contender_rank)


def _contenders_of(checks: pd.DataFrame, devices_in_label: bool) -> list[_Contender]:
    found = {_Contender(f, m, "", d if devices_in_label else "")
             for f, m, d in zip(checks["framework"], checks["mode"], checks["device"], strict=True)}
    return sorted(found, key=_contender_rank)


def _contender_rank(c: _Contender) -> tuple:
    return (_rank(c.framework, _FRAMEWORK_ORDER), _rank(c.mode, _MODE_ORDER), _rank(c.dtype, _DTYPE_ORDER), c.device)


def _rank(value: str, order: Sequence[str]) -> tuple:
    return (order.index(value), "") if value in order else (len(order), value)


def _styles(cells: pd.DataFrame) -> dict[str, _Style]:
    """A colour per framework, shaded and given another marker for each further mode or dtype of it."""
    return _styles_of(_contenders(cells)) if "contender" in cells.columns else {}


def _styles_of(contenders: Iterable[_Contender]) -> dict[str, _Style]:
    seen: dict[str, int] = {}
    styles = {}
    for c in contenders:
        variant = seen.get(c.framework, 0)
        seen[c.framework] = variant + 1
        styles[c.name] = _Style(_shade(framework_color(c.framework), variant), _MARKERS[variant % len(_MARKERS)])
    return styles


def _present(values: pd.Series, order: Sequence[str]) -> list[str]:
    """The distinct values, those named in order first (in that order), then the rest sorted."""
    found = {str(v) for v in values.dropna().unique()}
    return sorted(found, key=lambda v: _rank(v, order))


def _models(cells: pd.DataFrame, run: Mapping) -> list[str]:
    """The models present, in the order the suite lists them."""
    suite = run.get("suite") if isinstance(run, Mapping) else None
    listed = suite.get("models") if isinstance(suite, Mapping) else None
    return _present(cells["model"], listed if isinstance(listed, list) else ())


def _some_batches(batches: list[int]) -> list[int]:
    if len(batches) <= _MAX_BATCH_ROWS:
        return batches
    return [batches[0], batches[len(batches) // 2], batches[-1]]


def _batch_note(all_batches: list[int], shown: list[int]) -> str:
    if len(shown) < len(all_batches):
        return (f"Rows show batch sizes {', '.join(map(str, shown))} (the smallest, a middle and the largest of "
                f"{', '.join(map(str, all_batches))}).")
    return f"Batch size{'s' if len(shown) > 1 else ''} {', '.join(map(str, shown))}, a row each."


def _first(values: pd.Series) -> str | None:
    values = values.dropna()
    return str(values.iloc[0]) if not values.empty else None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", str(text).lower()).strip("_") or "x"


# ------------------------------------------------------------------------------------------------
# figure furniture


def _figure(width: float, height: float) -> Figure:
    """A constrained-layout figure between 6 and _MAX_WIDTH_IN inches wide."""
    return Figure(figsize=(min(max(width, 6.0), _MAX_WIDTH_IN), height), layout="constrained")


def _finish(fig: Figure, title: str, footer: str, handles: list) -> None:
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


def _footer(run: Mapping, df: pd.DataFrame | None, frameworks: Iterable[str] | None = None,
            run_id: str | None = None) -> str:
    """'run 20261202-005753-quick · suite quick · AMD EPYC, 2 logical cores · torch 2.13.0, tensorflow 2.21.0'."""
    if run_id is None and df is not None and not df.empty:
        run_id = _first(df["run_id"])
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
    for framework in sorted(frameworks, key=lambda f: _rank(f, _FRAMEWORK_ORDER)):
        package = "numpy" if framework == "reference" else framework
        if packages.get(package):
            versions.append(f"{package} {packages[package]}")
    if versions:
        parts.append(", ".join(versions))
    return " · ".join(parts)


def _log_y(ax) -> None:
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


def _spans(groups) -> bool:
    """Whether the values of some group span more than _LOG_RATIO: then every panel of the figure gets a
    log axis (on a linear one the small bars vanish; one scale for all panels reads more easily)."""
    for _, values in groups:
        values = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        values = values[np.isfinite(values) & (values > 0)]
        if len(values) > 1 and values.max() / values.min() > _LOG_RATIO:
            return True
    return False


def _whisker(ax, x: float, median: float, low: float, high: float) -> None:
    """The CI of one bar; nothing where the CI is unknown (NaN)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return
    below, above = max(median - low, 0.0), max(high - median, 0.0)
    ax.errorbar(x, median, yerr=[[below], [above]], fmt="none", ecolor="black", elinewidth=1, capsize=2, zorder=4)


def _vertical_ci(ax, x, y, low, high, color: str) -> None:
    keep = np.isfinite(low) & np.isfinite(high)
    if keep.any():
        ax.errorbar(x[keep], y[keep], yerr=[np.maximum(y[keep] - low[keep], 0), np.maximum(high[keep] - y[keep], 0)],
                    fmt="none", ecolor=color, elinewidth=1, capsize=2, alpha=0.7, zorder=2)


def _point_handle(style: _Style, label: str, line: bool = True) -> Line2D:
    return Line2D([], [], color=style.color, marker=style.marker, markeredgecolor=_darker(style.color),
                  markeredgewidth=0.5, linestyle="-" if line else "none", label=label)


def _stage_bands(ax, stages: list) -> None:
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


def _no_data(ax) -> None:
    ax.text(0.5, 0.5, "no timing", transform=ax.transAxes, ha="center", va="center", color="#888888")


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    ncols = min(n, max_cols)
    return math.ceil(n / ncols), ncols


def _hide_unused(axes, used: int) -> None:
    flat = [ax for row in axes for ax in row]
    for ax in flat[used:]:
        ax.set_visible(False)


def _percent_of(peak: float):
    """GFLOP/s -> % of the peak, and back: the functions of a secondary axis."""
    return (lambda g: np.asarray(g, dtype=float) / peak * 100.0,
            lambda p: np.asarray(p, dtype=float) * peak / 100.0)


def _shade(color: str, variant: int) -> str:
    """The framework's colour for its n-th contender: the colour, then darker and lighter shades."""
    if variant == 0:
        return color
    rgb = np.array(to_rgb(color))
    amount = 0.25 * ((variant + 1) // 2)
    target = np.zeros(3) if variant % 2 else np.ones(3)
    return to_hex(rgb + (target - rgb) * min(amount, 0.7))


def _darker(color: str) -> str:
    rgb = np.array(to_rgb(color))
    return to_hex(rgb * 0.65)


def _cmap(name: str):
    """The colormap, with missing cells (no timing) light grey."""
    return colormaps[name].with_extremes(bad="#f2f2f2")
