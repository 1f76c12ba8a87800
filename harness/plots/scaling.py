"""How does throughput scale with batch size? Samples per second against the batch, a line per contender."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.lines import Line2D

from . import data, layout, style
from .layout import Plot

__all__ = ["plot_scaling"]


def plot_scaling(df: pd.DataFrame, run: Mapping, phase: str) -> Plot | None:
    """One phase: throughput against batch size, a panel per model, a line per contender (and device)."""
    cells = data.cells(df)
    cells = cells[cells["phase"] == phase]
    if cells.empty or cells.groupby(["model", "contender", "device"])["batch_size"].nunique().max() < 2:
        return None  # not one line of two points
    styles = style.styles(data.cells(df))
    contenders = data.contenders(cells)
    devices = data.present(cells["device"], ())
    dashes = {d: style.DEVICE_LINESTYLES[i % len(style.DEVICE_LINESTYLES)] for i, d in enumerate(devices)}
    models = data.models(cells, run)
    nrows, ncols = layout.grid(len(models), 3)
    fig = layout.figure(width=1.0 + 4.4 * ncols, height=1.4 + 3.2 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    marks = style.Marks()
    for k, model in enumerate(models):
        ax = axes[k // ncols][k % ncols]
        here = cells[cells["model"] == model]
        for contender in contenders:
            for device in devices:
                rows = here[(here["contender"] == contender.name) & (here["device"] == device)]
                rows = rows[np.isfinite(rows["samples_per_s"])].sort_values("batch_size")
                if rows.empty:
                    continue
                look = styles[contender.name]
                x = rows["batch_size"].astype(float).to_numpy()
                y = rows["samples_per_s"].to_numpy()
                # throughput = batch / time: the CI of the time, turned over, is the CI of the throughput
                with np.errstate(divide="ignore", invalid="ignore"):  # a CI of 0 or NaN draws no bar
                    low = x / rows["ci_high_s"].to_numpy(dtype=float)
                    high = x / rows["ci_low_s"].to_numpy(dtype=float)
                ax.plot(x, y, color=look.color, linestyle=dashes[device], linewidth=1.5, zorder=2,
                        gid=f"{contender.label}@{device}")
                layout.vertical_ci(ax, x, y, low, high, look.color)
                for xi, yi, (_, row) in zip(x, y, rows.iterrows(), strict=True):
                    marks.point(ax, xi, yi, row, look)
        batches = sorted(int(b) for b in here["batch_size"].unique())
        ax.set_xscale("log", base=2)
        layout.log_y(ax)
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
    layout.hide_unused(axes, len(models))
    handles = [layout.point_handle(styles[c.name], c.label) for c in contenders]
    if len(devices) > 1:
        handles += [Line2D([], [], color="black", linestyle=dashes[d], label=d) for d in devices]
    title = f"{phase}: how throughput scales with batch size"
    layout.finish(fig, title, layout.footer(run, df), handles + marks.handles())
    caption = (f"Samples per second of {phase} (batch size / median time per call) against the batch size, both "
               "axes logarithmic; higher is better, and a line flattening out means a bigger batch no longer "
               "pays. Error bars are the 95% CI of the median.")
    if len(devices) > 1:
        caption += " Line style tells the devices apart."
    caption += data.threads_note(df) + marks.caption()
    return Plot(f"scaling_{data.slug(phase)}", title, caption, fig)
