"""How much faster do more CPU threads make each contender? Speed-up against the thread count."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.lines import Line2D

from ..cells import PHASES
from . import data, layout, style
from .layout import Plot

__all__ = ["plot_threads"]


def plot_threads(df: pd.DataFrame, run: Mapping) -> Plot | None:
    """Speed-up against the thread count, a panel per model, at the largest batch size."""
    cells = data.cells(df, all_threads=True)
    cells = cells[cells["threads"].notna()]
    if cells.empty or cells["threads"].nunique() < 2:
        return None
    phases = data.present(cells["phase"], PHASES)
    phase = "forward_backward" if "forward_backward" in phases else phases[0]
    cells = cells[cells["phase"] == phase]
    # only what was swept: a contender on a device at a batch size timed at two thread counts or more
    swept = cells.groupby(["model", "contender", "device", "batch_size"])["threads"].transform("nunique") > 1
    cells = cells[swept]
    if cells.empty:
        return None
    styles = style.styles(data.cells(df))
    contenders = data.contenders(cells)
    devices = data.present(cells["device"], ())
    dashes = {d: style.DEVICE_LINESTYLES[i % len(style.DEVICE_LINESTYLES)] for i, d in enumerate(devices)}
    models = data.models(cells, run)
    threads = sorted(int(t) for t in cells["threads"].unique())
    nrows, ncols = layout.grid(len(models), 3)
    fig = layout.figure(width=1.0 + 4.2 * ncols, height=1.4 + 3.2 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    marks = style.Marks()
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
                look = styles[contender.name]
                ax.plot(x, y, color=look.color, linestyle=dashes[device], linewidth=1.5, zorder=2,
                        gid=f"{contender.label}@{device}")
                for xi, yi, (_, row) in zip(x, y, rows.iterrows(), strict=True):
                    marks.point(ax, xi, yi, row, look)
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
    layout.hide_unused(axes, len(models))
    handles = [layout.point_handle(styles[c.name], c.label) for c in contenders]
    handles.append(Line2D([], [], color="#888888", linestyle="--", label="ideal (linear) speed-up"))
    if len(drawn) > 1:
        handles += [Line2D([], [], color="black", linestyle=dashes[d], label=d) for d in devices if d in drawn]
    title = f"Thread scaling: speed-up of {phase} with more CPU threads"
    layout.finish(fig, title, layout.footer(run, df), handles + marks.handles())
    sizes = sorted(set(batches))
    caption = (f"Median time at {threads[0]} thread{'s' if threads[0] > 1 else ''} / median time at each thread "
               f"count, for {phase} at each model's largest batch size "
               f"({', '.join(map(str, sizes))}); the dashed line is the ideal linear speed-up, higher is better.")
    caption += marks.caption()
    return Plot("threads", title, caption, fig)
