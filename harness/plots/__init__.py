"""DataFrames of a run -> matplotlib figures, one question each; no measuring, no files.

`plots(df, checks, run)` takes the tables of harness.results (`load`, `load_checks`, `read_run`)
and returns every figure the run has data for. Each `plot_*` function answers one question and
returns None when the run lacks what it needs (one framework, one batch size, no checks, ...).

Figures use matplotlib's object-oriented API only (`matplotlib.figure.Figure`, never pyplot): no
global state, no GUI backend, safe to build in any thread or headless process.

Every plot marks the same two things the same way (`style.Marks`): a cell flagged noisy by
harness.levels (a CI wider than ±10%) is hatched or hollow, and a cell not verified (its
equivalence check failed, or could not be made) is drawn with a red edge or a red cross and '!'.
In the heatmap and in text they are the report's '~' and '!'. Each figure carries a footer naming
the run, the machine and the framework versions, so that an image seen on its own still says where
its numbers come from.

One module per figure (relative, phases, scaling, threads, efficiency, equivalence) over three
shared ones, each importing only those below it: layout (the Plot, figure furniture), style
(colours, markers, the marks) and data (the timed cells, contenders, the order of things).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from ..cells import PHASES
from . import data
from .efficiency import plot_efficiency
from .equivalence import plot_equivalence
from .layout import Plot
from .phases import plot_phases
from .relative import plot_relative
from .scaling import plot_scaling
from .style import framework_color
from .threads import plot_threads

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


def plots(df: pd.DataFrame, checks: pd.DataFrame, run: Mapping) -> list[Plot]:
    """Every plot the run has data for, in reading order.

    The verdict first (relative speed), then each model's phases, batch-size and thread scaling,
    efficiency against the machine's peak, and the equivalence of every contender with the reference.
    """
    cells = data.cells(df)
    found: list[Plot | None] = [plot_relative(df, run)]
    found += [plot_phases(df, run, model) for model in data.models(cells, run)]
    found += [plot_scaling(df, run, phase) for phase in data.present(cells["phase"], PHASES)]
    found += [plot_threads(df, run), plot_efficiency(df, run)]
    if checks is not None and not checks.empty:
        found += [plot_equivalence(checks, run, dtype) for dtype in data.present(checks["dtype"], data.DTYPE_ORDER)]
    return [p for p in found if p is not None]
