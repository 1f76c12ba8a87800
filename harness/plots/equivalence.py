"""Does each framework compute what the float64 reference does? The error of every checked tensor."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from .. import results
from . import data, layout, style
from .layout import Plot

__all__ = ["plot_equivalence"]

_EXACT_FLOOR = 1e-18


def plot_equivalence(checks: pd.DataFrame, run: Mapping, dtype: str, df: pd.DataFrame | None = None) -> Plot | None:
    """One dtype: the normwise error of every checked tensor per contender, against its tolerance."""
    if checks is None or checks.empty:
        return None
    here = checks[(checks["dtype"] == dtype) & checks["normwise"].notna()].copy()
    if here.empty:
        return None
    devices = data.present(here["device"], ())
    here["contender"] = [data.Contender(f, m, "", d if len(devices) > 1 else "").name
                         for f, m, d in zip(here["framework"], here["mode"], here["device"], strict=True)]
    contenders = data.contenders_of(here, devices_in_label=len(devices) > 1)
    styles = style.styles_of(contenders)
    models = data.models(here, run)
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
    fig = layout.figure(width=1.2 + ncols * max(4.5, 0.19 * most + 1.2), height=1.5 + 3.6 * nrows)
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
        layout.stage_bands(ax, rows.groupby("tensor", sort=False)["stage"].first().reindex(tensors).tolist())
        tolerance = rows.groupby("tensor", sort=False)["normwise_tol"].max().reindex(tensors).to_numpy(float)
        if np.isfinite(tolerance).any():
            tolerance_any = True
            ax.step(np.r_[xs - 0.5, xs[-1] + 0.5], np.r_[tolerance, tolerance[-1]], where="post", color="black",
                    linestyle="--", linewidth=1.1, zorder=2)
        present = [c for c in contenders if (rows["contender"] == c.name).any()]
        spread = min(0.6, 0.15 * (len(present) - 1))
        failing = set()
        for i, contender in enumerate(present):
            look = styles[contender.name]
            offset = (i / (len(present) - 1) - 0.5) * spread if len(present) > 1 else 0.0
            mine = rows[rows["contender"] == contender.name]
            for _, row in mine.iterrows():
                x = where[row["tensor"]] + offset
                if row["normwise"] == 0:
                    exact_any = True
                    ax.plot(x, floor, marker="v", color=look.color, markersize=6, linestyle="none", zorder=3)
                else:
                    ax.plot(x, row["normwise"], marker=look.marker, color=look.color, markersize=5,
                            markeredgecolor=style.darker(look.color), markeredgewidth=0.5, linestyle="none", zorder=3)
                if results.flag(row["passed"]) is False:
                    failing.add(row["tensor"])
                    failed_count += 1
                    style.red_cross(ax, x, max(row["normwise"], floor))
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
                label.set_color(style.RED)
                label.set_fontweight("bold")
        ax.set_xlim(-0.5, len(tensors) - 0.5)
        ax.set_title(model, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if k % ncols == 0:
            ax.set_ylabel("normwise error ||a - ref|| / ||ref||")
    layout.hide_unused(axes, len(models))
    handles = [layout.point_handle(styles[c.name], c.label, line=False) for c in contenders]
    if tolerance_any:
        handles.append(Line2D([], [], color="black", linestyle="--", label="tolerance (normwise_tol)"))
    if exact_any:
        handles.append(Line2D([], [], color="#777777", marker="v", linestyle="none",
                              label=f"exact: error 0, drawn at {floor:.0e}"))
    if failed_count:
        handles.append(Line2D([], [], marker="x", color=style.RED, markeredgewidth=2, markersize=9, linestyle="none",
                              label="beyond tolerance: check failed"))
    title = f"{dtype}: does each framework compute what the float64 reference does?"
    frameworks = set(here["framework"])
    layout.finish(fig, title, layout.footer(run, df, frameworks=frameworks, run_id=data.first(here["run_id"])), handles)
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
    return Plot(f"equivalence_{data.slug(dtype)}", title, caption, fig)
