"""Times relative to a control framework measured in the same rounds: what `bench compare
--relative-to` compares, and what `bench noise` calibrates for it.

Whatever hit the whole machine in one round (another tenant, a slower clock) hits the control
framework's cell of the same workload in that round too, so a cell's round median divided by the
control's round median of the same (pass, round) keeps the cell's own speed and cancels the
machine's. Passes and rounds are independent draws (harness.runner), and the ratios keep their
labels, so they are summarized by level like any timings (harness.levels).
"""

from __future__ import annotations

import numpy as np

from . import levels
from .cells import WORKLOAD_FIELDS

__all__ = ["labels", "relative_table"]


def labels(row) -> tuple[list, list, list]:
    """(samples, their passes, their rounds) of one row of a raw results table."""
    return list(row["samples_s"]), list(row["sample_passes"]), list(row["sample_rounds"])


def relative_table(df, control: str):
    """df (a raw results table, harness.results.load(raw=True)) without the control framework's cells,
    every other ok cell's samples replaced by its round medians divided by the control's round median
    of the same (pass, round): one value per round, labelled with it, and median_s their median. A
    cell whose workload the control did not finish, or that shares fewer than 2 rounds with it,
    becomes 'skipped', with the reason."""
    df = df.copy()
    ok = df[(df["framework"] == control) & (df["status"] == "ok")]
    controls: dict[tuple, dict] = {}
    # the control's eager cell when it has several modes
    for _, r in ok.assign(_other=ok["mode"] != "eager").sort_values("_other", kind="stable").iterrows():
        controls.setdefault(tuple(r[c] for c in WORKLOAD_FIELDS), levels.round_medians(*labels(r)))
    for key, row in df.iterrows():
        if row["framework"] == control or row["status"] != "ok":
            continue
        base = controls.get(tuple(row[c] for c in WORKLOAD_FIELDS))
        mine = levels.round_medians(*labels(row))
        common = sorted(set(mine) & set(base or {}))
        if base is None or len(common) < 2:
            why = "no finished cell" if base is None else f"{len(common)} rounds in common with the cell"
            df.at[key, "status"] = "skipped"
            df.at[key, "reason"] = f"not compared relative to {control}: {why} of {control} for this workload"
            continue
        ratios = [mine[u] / base[u] for u in common if base[u] > 0]
        df.at[key, "samples_s"] = ratios
        df.at[key, "sample_passes"] = [u[0] for u in common]
        df.at[key, "sample_rounds"] = [u[1] for u in common]
        df.at[key, "median_s"] = float(np.median(ratios))
    return df[df["framework"] != control]
