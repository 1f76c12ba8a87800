"""The table side of every plot: the timed cells, who races, the order of things, and the notes a caption adds."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import pandas as pd

from .. import results
from ..fmt import contender_label

__all__ = [
    "FRAMEWORK_ORDER",
    "DTYPE_ORDER",
    "Contender",
    "cells",
    "threads_note",
    "contenders",
    "contenders_of",
    "rank",
    "present",
    "models",
    "some_batches",
    "batch_note",
    "first",
    "slug",
]

FRAMEWORK_ORDER = ("reference", "torch", "tensorflow", "jax", "keras-jax", "keras-torch")
_MODE_ORDER = ("eager",)
DTYPE_ORDER = ("float32", "float64")

_MAX_BATCH_ROWS = 3


class Contender(NamedTuple):
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


def cells(df: pd.DataFrame | None, all_threads: bool = False) -> pd.DataFrame:
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
    ok["contender"] = [Contender(f, m, d if with_dtype else "").name
                       for f, m, d in zip(ok["framework"], ok["mode"], ok["dtype"], strict=True)]
    return ok


def threads_note(df: pd.DataFrame) -> str:
    ok = df[(df["status"] == "ok") & df["median_s"].notna()] if not df.empty else df
    counts = sorted(int(t) for t in ok["threads"].dropna().unique()) if not ok.empty else []
    if len(counts) < 2:
        return ""
    return f" At {counts[-1]} threads (the run also timed {', '.join(map(str, counts[:-1]))}: see the thread plot)."


def contenders(cells: pd.DataFrame) -> list[Contender]:
    """The contenders of cells, framework by framework in a fixed order."""
    found = {Contender(*name.split("/")) for name in cells["contender"].unique()}
    return sorted(found, key=_contender_rank)


def contenders_of(checks: pd.DataFrame, devices_in_label: bool) -> list[Contender]:
    found = {Contender(f, m, "", d if devices_in_label else "")
             for f, m, d in zip(checks["framework"], checks["mode"], checks["device"], strict=True)}
    return sorted(found, key=_contender_rank)


def _contender_rank(c: Contender) -> tuple:
    return (rank(c.framework, FRAMEWORK_ORDER), rank(c.mode, _MODE_ORDER), rank(c.dtype, DTYPE_ORDER), c.device)


def rank(value: str, order: Sequence[str]) -> tuple:
    return (order.index(value), "") if value in order else (len(order), value)


def present(values: pd.Series, order: Sequence[str]) -> list[str]:
    """The distinct values, those named in order first (in that order), then the rest sorted."""
    found = {str(v) for v in values.dropna().unique()}
    return sorted(found, key=lambda v: rank(v, order))


def models(cells: pd.DataFrame, run: Mapping) -> list[str]:
    """The models present, in the order the suite lists them."""
    suite = run.get("suite") if isinstance(run, Mapping) else None
    listed = suite.get("models") if isinstance(suite, Mapping) else None
    return present(cells["model"], listed if isinstance(listed, list) else ())


def some_batches(batches: list[int]) -> list[int]:
    if len(batches) <= _MAX_BATCH_ROWS:
        return batches
    return [batches[0], batches[len(batches) // 2], batches[-1]]


def batch_note(all_batches: list[int], shown: list[int]) -> str:
    if len(shown) < len(all_batches):
        return (f"Rows show batch sizes {', '.join(map(str, shown))} (the smallest, a middle and the largest of "
                f"{', '.join(map(str, all_batches))}).")
    return f"Batch size{'s' if len(shown) > 1 else ''} {', '.join(map(str, shown))}, a row each."


def first(values: pd.Series) -> str | None:
    values = values.dropna()
    return str(values.iloc[0]) if not values.empty else None


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", str(text).lower()).strip("_") or "x"
