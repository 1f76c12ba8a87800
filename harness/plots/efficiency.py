"""How close does each contender come to the machine's measured matmul peak, in GFLOP/s?"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .. import results
from ..cells import PHASES
from . import data, layout, style
from .layout import Plot

__all__ = ["plot_efficiency"]


def plot_efficiency(df: pd.DataFrame, run: Mapping) -> Plot | None:
    """Achieved GFLOP/s per model and contender against the machine's measured matmul peak."""
    cells = data.cells(df)
    if cells.empty:
        return None
    gflops = cells["gflops_per_s"].astype(float)
    cells = cells[np.isfinite(gflops) & (gflops > 0)]
    if cells.empty:
        return None
    # each model at its largest batch size, per device and phase
    largest = cells.groupby(["model", "device", "phase"])["batch_size"].transform("max")
    cells = cells[cells["batch_size"] == largest]
    styles = style.styles(data.cells(df))
    contenders = data.contenders(cells)
    devices = data.present(cells["device"], ())
    phases = data.present(cells["phase"], PHASES)
    models = data.models(cells, run)
    peaks = {device: results.peak_for(device, run.get("peak_gflops") or {}) for device in devices}
    with_peaks = cells.assign(peak=cells["device"].map(peaks))
    heights = pd.concat([with_peaks[["device", "phase", "gflops_per_s"]],
                         with_peaks[["device", "phase", "peak"]].rename(columns={"peak": "gflops_per_s"})])
    log = layout.spans(heights.dropna().groupby(["device", "phase"])["gflops_per_s"])
    width = 0.8 / len(contenders)
    fig = layout.figure(width=1.6 + len(phases) * (1.4 + len(models) * (0.25 + 0.22 * len(contenders))),
                  height=1.6 + 3.4 * len(devices))
    axes = fig.subplots(len(devices), len(phases), squeeze=False)
    marks = style.Marks()
    for r, device in enumerate(devices):
        peak = peaks[device]
        for c, phase in enumerate(phases):
            ax = axes[r][c]
            if log:
                layout.log_y(ax)
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
                    look = styles[contender.name]
                    (bar,) = ax.bar(x, row["gflops_per_s"], width * 0.92, color=look.color,
                                    edgecolor=style.darker(look.color), linewidth=0.6, zorder=2)
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
                right = ax.secondary_yaxis("right", functions=layout.percent_of(peak))
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
                layout.no_data(ax)
    handles = [Patch(facecolor=styles[c.name].color, edgecolor=style.darker(styles[c.name].color), label=c.label)
               for c in contenders]
    peak_any = any(peaks.values())
    if peak_any:
        handles.append(Line2D([], [], color="black", linestyle="--", label="measured float32 matmul peak"))
    title = "Efficiency: achieved GFLOP/s against the machine's matmul peak"
    layout.finish(fig, title, layout.footer(run, df), handles + marks.handles())
    caption = ("Floating-point operations per second each contender achieves (the model's FLOPs per call / the "
               "median time), at each model's largest batch size; higher is better.")
    if peak_any:
        caption += (" The dashed line is the float32 matmul peak fwbench measured on the device; the right axis "
                    "reads in % of it.")
    missing = [d for d, p in peaks.items() if not p]
    if missing:
        caption += f" No peak was measured for {', '.join(missing)}, so there is no peak line there."
    if log:
        caption += f" The axis is logarithmic: the bars (and the peak) differ by more than {layout.LOG_RATIO:.0f}x."
    caption += data.threads_note(df) + marks.caption()
    return Plot("efficiency", title, caption, fig)
