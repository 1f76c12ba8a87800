"""What does each phase of one model cost? The median time per phase and contender, a panel per device and batch."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..cells import PHASES
from . import data, layout, style
from .layout import Plot

__all__ = ["plot_phases"]


def plot_phases(df: pd.DataFrame, run: Mapping, model: str) -> Plot | None:
    """One model: the median time of each phase per contender, a panel per device and batch size."""
    cells = data.cells(df)
    cells = cells[cells["model"] == model]
    if cells.empty:
        return None
    contenders = data.contenders(cells)
    styles = style.styles(data.cells(df))
    devices = data.present(cells["device"], ())
    phases = data.present(cells["phase"], PHASES)
    all_batches = sorted(int(b) for b in cells["batch_size"].unique())
    batches = data.some_batches(all_batches)
    fig = layout.figure(width=1.3 + len(devices) * (1.2 + 0.35 * len(phases) * len(contenders)),
                  height=1.2 + 2.6 * len(batches))
    axes = fig.subplots(len(batches), len(devices), squeeze=False)
    marks = style.Marks()
    log = layout.spans(cells[cells["batch_size"].isin(batches)].groupby(["batch_size", "device"])["median_s"])
    width = 0.8 / len(contenders)
    for r, batch in enumerate(batches):
        for c, device in enumerate(devices):
            ax = axes[r][c]
            if log:
                layout.log_y(ax)
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
                                    edgecolor=style.darker(styles[contender.name].color), linewidth=0.6, zorder=2)
                    bar.set_gid(row["key"])
                    layout.whisker(ax, x, median, row["ci_low_s"] * 1e3, row["ci_high_s"] * 1e3)
                    marks.bar(ax, bar, row, top=row["ci_high_s"] * 1e3)
            if c == 0:
                ax.set_ylabel("median time per call (ms)")
            ax.set_xticks(range(len(phases)), [p.replace("_", "\n") if len(p) > 10 else p for p in phases])
            ax.set_xlim(-0.5, len(phases) - 0.5)
            ax.set_title(f"{device} · batch {batch}", fontsize=10)
            ax.grid(axis="y", alpha=0.3, zorder=0)
            if here.empty:
                layout.no_data(ax)
    handles = [Patch(facecolor=styles[c.name].color, edgecolor=style.darker(styles[c.name].color), label=c.label)
               for c in contenders]
    handles += [Line2D([], [], color="black", marker="|", linestyle="none", markersize=10,
                       label="95% CI of the median")]
    title = f"{model}: time per phase, per framework"
    layout.finish(fig, title, layout.footer(run, df), handles + marks.handles())
    caption = (f"Median time per call of each phase of {model}, lower is better; whiskers are the 95% bootstrap "
               f"CI of the median. {data.batch_note(all_batches, batches)}")
    if log:
        caption += f" The time axis is logarithmic: the bars of a panel differ by more than {layout.LOG_RATIO:.0f}x."
    caption += data.threads_note(df) + marks.caption()
    return Plot(f"phases_{data.slug(model)}", title, caption, fig)
