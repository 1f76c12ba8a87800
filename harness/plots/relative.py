"""Who is fastest? Time relative to the fastest contender of each model, a heatmap per phase."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.colors import LogNorm

from ..cells import PHASES
from . import data, layout, style
from .layout import Plot

__all__ = ["plot_relative"]


def plot_relative(df: pd.DataFrame, run: Mapping) -> Plot | None:
    """Who is fastest: time relative to the fastest contender of each model, a heatmap per phase."""
    cells = data.cells(df)
    if cells.empty:
        return None
    phases = data.present(cells["phase"], PHASES)
    devices = data.present(cells["device"], ())
    models = data.models(cells, run)
    contenders = data.contenders(cells)
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
    cmap = layout.cmap("Blues")
    label_w = 0.3 + 0.075 * max(len(c.label) for c in contenders)
    ncols_max = max(len(t[1]) for t in tables)
    panel_w = label_w + 1.15 * ncols_max
    per_row = max(1, min(len(tables), int((layout.MAX_WIDTH_IN - 1.2) // panel_w)))
    nrows = math.ceil(len(tables) / per_row)
    fig = layout.figure(width=max(7.5, per_row * panel_w + 1.4), height=1.3 + nrows * (1.0 + 0.42 * len(contenders)))
    axes = fig.subplots(nrows, per_row, squeeze=False)
    marks = style.Marks()
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
                t.set_color(style.RED)
                t.set_fontweight("bold")
                t.set_bbox({"facecolor": "white", "edgecolor": style.RED, "boxstyle": "round,pad=0.15"})
        names = [f"{m}\n{d} · batch {b}" if len(devices) > 1 else f"{m}\nbatch {b}" for m, d, b in columns]
        ax.set_xticks(range(len(columns)), names, fontsize=8)
        ax.set_yticks(range(len(contenders)), [c.label for c in contenders] if n % per_row == 0 else [])
        ax.tick_params(length=0)
        ax.set_title(phase, fontsize=10, loc="left")
        for spine in ax.spines.values():
            spine.set_visible(False)
    layout.hide_unused(axes, len(tables))
    colorbar = fig.colorbar(image, ax=[ax for row in axes for ax in row if ax.get_visible()], shrink=0.9, pad=0.02)
    colorbar.set_label("time / fastest")
    colorbar.set_ticks([t for t in (1, 1.5, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000) if t <= vmax])
    colorbar.ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    colorbar.ax.yaxis.set_minor_locator(ticker.NullLocator())
    title = "Relative speed: time / fastest, per model and phase"
    layout.finish(fig, title, layout.footer(run, df), marks.handles())
    caption = ("Median time per call divided by the fastest contender's on the same model, device and phase "
               "(1.00 = fastest, 2.00 = twice as slow), at each model's largest batch size; '–' means no timing.")
    caption += data.threads_note(df) + marks.caption()
    return Plot("relative", title, caption, fig)
