"""A run read once, and the tidy pandas tables derived from it: the API for notebooks.

`read(run_dir)` reads a run folder (harness.store) once, run.json and every cell file, into a `Run`;
`Run.table()` is the DataFrame of its cells, one row per cell, with the statistics of each cell's
raw samples (computed once per process: harness.cells.Measurement.stats), and `Run.checks()` the
per-tensor equivalence errors. Both are built on first use and kept. Commands, the report, the
plots and `bench compare` take a Run, so that one command reads each file of a run once.

`load(run_dir)` and `load_checks(run_dir)` do both in one call, for a notebook:

    >>> from harness import results
    >>> df = results.load("results/20261123-184512-quick")
    >>> ok = df[df.status == "ok"]
    >>> ok.pivot_table(index=["model", "phase"], columns="framework", values="median_s")

The storage layer's names (write_cell, read_run, finished_cells, ResultsError, SCHEMA_VERSION, ...)
are re-exported here, as fwbench has always offered them from this module.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cells import CELL_FIELDS, CHECK_FAULTS, CHECK_FIELDS, FAILED, STATUSES, WORKLOAD_FIELDS, CellRecord
from .columns import _CHECK_DTYPES, _COLUMN_DTYPES, _LEVEL_COLUMNS, _RAW_COLUMNS, _STAT_COLUMNS, CHECK_COLUMNS, COLUMNS
from .stats import throughput
from .store import (
    CELLS_DIR,
    RUN_FILE,
    SCHEMA_VERSION,
    TABLE_FILE,
    ResultsError,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    cell_path,
    finished_cells,
    new_run_id,
    read_cells,
    read_json,
    read_run,
    refuse_newer,
    write_cell,
    write_run,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Run",
    "read",
    "load",
    "load_checks",
    "write_table",
    "COLUMNS",
    "CHECK_COLUMNS",
    "PHASE_SUM_TOLERANCE",
    "flag",
    "plain",
    "peak_for",
    # re-exported from harness.cells and harness.store
    "STATUSES",
    "FAILED",
    "CHECK_FAULTS",
    "CELL_FIELDS",
    "WORKLOAD",
    "SCHEMA_VERSION",
    "RUN_FILE",
    "CELLS_DIR",
    "TABLE_FILE",
    "ResultsError",
    "new_run_id",
    "atomic_write_json",
    "atomic_write_bytes",
    "read_json",
    "refuse_newer",
    "write_run",
    "read_run",
    "cell_path",
    "write_cell",
    "finished_cells",
]

WORKLOAD = WORKLOAD_FIELDS  # the name this module has always given it

@dataclass(eq=False)
class Run:
    """A run folder as read once: `meta` is run.json (with the defaults of an older file), `records`
    every finished cell, {key: CellRecord}, sorted by key. The tables are derived on first use."""

    path: Path
    meta: dict
    records: dict[str, CellRecord]
    _tables: dict = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        """The run's id: its folder's name."""
        return Path(self.path).resolve().name

    def table(self, raw: bool = False) -> pd.DataFrame:
        """One row per finished cell (sorted by key), the columns of COLUMNS; with raw=True also
        samples_s (the list of seconds per call), threads_applied and knobs (dicts). An empty run
        gives an empty DataFrame with the same columns. See `load` for every column."""
        if raw not in self._tables:
            self._tables[raw] = _table(self, raw)
        return self._tables[raw]

    def checks(self) -> pd.DataFrame:
        """The equivalence checks, one row per tensor checked: see `load_checks`."""
        if "checks" not in self._tables:
            self._tables["checks"] = _checks_table(self)
        return self._tables["checks"]


def read(run_dir: str | os.PathLike) -> Run:
    """The run in run_dir, every file read once; ResultsError when it is not a readable run folder."""
    run_dir = Path(run_dir)
    meta = read_run(run_dir)
    return Run(run_dir, meta, read_cells(run_dir))


def load(run_dir: str | os.PathLike | Run, raw: bool = False) -> pd.DataFrame:
    """A run as a pandas DataFrame, one row per finished cell (sorted by key): the API for notebooks.

    Columns (COLUMNS, in order):

    - run_id (the folder's name), key, and the cell: model, framework, device, dtype, mode,
      batch_size, phase, threads;
    - status (one of STATUSES), reason, verified (the equivalence check passed: True/False/<NA>),
      threads_verified, check_status, worst_normwise, first_divergence, check_reason (why it failed or is
      unverified), timed_status (the check of what the timed phase computed, at the cell's batch:
      pass/fail/unverified) and float64_status (the float64 part of a float32 cell; <NA> for a float64
      cell or the reference): docs/equivalence.md, "What verified means for a timed cell";
    - the statistics of the seconds per call, from harness.stats.summarize over samples_s: n,
      median_s, q1_s, q3_s, iqr_s, min_s, max_s, mean_s, stdev_s, cv, ci_low_s, ci_high_s (bootstrap
      95% CI of the median), noisy, noisy_cv, noisy_iqr. NaN / <NA> for cells without samples:
      every status but 'ok';
    - samples_per_s = batch_size / median_s; flops (of one call) and gflops_per_s = flops /
      median_s / 1e9; peak_share = gflops_per_s / run.json's "peak_gflops" for the cell's device
      ('cuda' and 'cuda:0' are the same device), a fraction, NaN without a peak;
    - phase_sum_ratio, phase_sum_flag: on forward_backward rows, (forward + backward) / forward_backward
      of the same cell in the other phases, flagged beyond 1 +- PHASE_SUM_TOLERANCE;
    - first_call_s, warmup_calls, iters_per_sample, peak_memory_bytes, memory_kind ('rss' or
      'cuda_allocator'), how (how the phase was timed), started, seconds (wall time of the cell).

    With raw=True, also samples_s (the list of seconds per call), threads_applied and knobs (dicts).
    An empty run gives an empty DataFrame with the same columns. run_dir may be a Run already read.

    Example::

        >>> from harness import results
        >>> df = results.load("results/20261123-184512-quick")
        >>> ok = df[df.status == "ok"]
        >>> ok.pivot_table(index=["model", "phase"], columns="framework", values="median_s")
        >>> ok[ok.noisy][["key", "cv", "iqr_s"]]      # cells whose timings are not to be trusted
    """
    return (run_dir if isinstance(run_dir, Run) else read(run_dir)).table(raw)


def _table(run: Run, raw: bool) -> pd.DataFrame:
    import pandas as pd

    peaks = run.meta.get("peak_gflops") or {}
    rows = []
    for key, record in run.records.items():
        try:
            rows.append(_row(run.path.name, key, record, peaks, raw))
        except (TypeError, ValueError) as e:
            raise ResultsError(f"{cell_path(run.path, key)}: cannot tabulate this cell: {e}") from e
    columns = list(COLUMNS) + (list(_RAW_COLUMNS) if raw else [])
    df = pd.DataFrame(rows, columns=columns)
    return _phase_sums(df.astype(_COLUMN_DTYPES))




def load_checks(run_dir: str | os.PathLike | Run) -> pd.DataFrame:
    """The equivalence checks of a run, one row per tensor checked: what the equivalence plot draws.

    A check belongs to a model in one framework, device, dtype and mode (CHECK_FIELDS), whatever
    the batch size and phase timed (it runs at its own batch, harness.checks.CHECK_BATCH), so each
    is listed once even though every cell of it stores a copy. Columns (CHECK_COLUMNS): run_id,
    model, framework, device, dtype, mode, check_status ('pass', 'fail', 'skip', 'error'),
    first_divergence, and per tensor: tensor ('output', 'loss', 'layer:conv1', 'grad:conv1.weight',
    'sgd:fc1.bias', ...), stage ('forward', 'gradient', 'update'), layer, shape (a tuple), max_abs,
    normwise (||a-b|| / ||b|| against the float64 reference), atol, rtol, normwise_tol (the
    tolerance it was held to), passed, note. Cells run without verification contribute nothing.

    Example::

        >>> checks = results.load_checks("results/20261123-184512-quick")
        >>> checks[~checks.passed][["model", "framework", "tensor", "normwise", "normwise_tol"]]
    """
    return (run_dir if isinstance(run_dir, Run) else read(run_dir)).checks()


def _checks_table(run: Run) -> pd.DataFrame:
    import pandas as pd

    rows, seen = [], set()
    for record in run.records.values():
        check = record.check
        if not check:
            continue
        which = tuple(getattr(record.cell, name) for name in CHECK_FIELDS)
        if which in seen:
            continue
        seen.add(which)
        for t in check.get("tensors") or []:
            rows.append({
                "run_id": run.path.name, **dict(zip(CHECK_FIELDS, which, strict=True)),
                "check_status": check.get("status"), "first_divergence": check.get("first_divergence"),
                "tensor": t.get("tensor"), "stage": t.get("stage"), "layer": t.get("layer"),
                "shape": tuple(t.get("shape") or ()), "max_abs": _float(t.get("max_abs")),
                "normwise": _float(t.get("normwise")), "atol": _float(t.get("atol")), "rtol": _float(t.get("rtol")),
                "normwise_tol": _float(t.get("normwise_tol")), "passed": t.get("passed"), "note": t.get("note", ""),
            })
    return pd.DataFrame(rows, columns=list(CHECK_COLUMNS)).astype(_CHECK_DTYPES)


PHASE_SUM_TOLERANCE = 0.25


def _phase_sums(df):
    """On each forward_backward row: (median forward + median backward) / median forward_backward of
    the same model, framework, device, dtype, mode, batch and threads, and a flag when it is off by
    more than PHASE_SUM_TOLERANCE: the phases were then not measured consistently (a backward that
    redid the forward, say, or a compiler that fused across the two)."""
    if df.empty:
        return df
    same = ["model", "framework", "device", "dtype", "mode", "batch_size", "threads"]
    ok = df[df["status"] == "ok"]
    medians = ok.pivot_table(index=same, columns="phase", values="median_s", aggfunc="first")
    if not {"forward", "backward", "forward_backward"} <= set(medians.columns):
        return df
    ratio = (medians["forward"] + medians["backward"]) / medians["forward_backward"]
    for index, value in ratio.dropna().items():
        mask = (df["phase"] == "forward_backward") & (df["status"] == "ok")
        for column, wanted in zip(same, index, strict=True):
            mask &= df[column] == wanted
        df.loc[mask, "phase_sum_ratio"] = value
        df.loc[mask, "phase_sum_flag"] = abs(value - 1) > PHASE_SUM_TOLERANCE
    return df


def _row(run_id: str, key: str, record: CellRecord, peaks: Mapping, raw: bool) -> dict:
    cell, check = record.cell, record.check or {}
    row: dict[str, Any] = {"run_id": run_id, "key": key, **cell.to_dict()}
    row.update(status=record.status, reason=record.reason, verified=record.verified,
               threads_verified=record.threads_verified,
               check_status=check.get("status"), worst_normwise=_float(check.get("worst_normwise")),
               first_divergence=check.get("first_divergence"), check_reason=check.get("reason") or None,
               timed_status=(check.get("timed") or {}).get("status"),
               float64_status=(check.get("float64") or {}).get("status"))
    stats, levels = record.stats(), record.level_stats()
    row.update({column: getattr(stats, name) if stats else None for name, column in _STAT_COLUMNS.items()})
    row.update({column: getattr(levels, name) if levels else None for name, column in _LEVEL_COLUMNS.items()})
    median = _float(row["median_s"])
    flops = _float(record.flops)
    batch = cell.batch_size
    row["samples_per_s"] = throughput(batch, median) if batch and median > 0 else math.nan
    row["flops"] = flops
    row["gflops_per_s"] = flops / median / 1e9 if median > 0 else math.nan
    peak = peak_for(cell.device, peaks)
    row["peak_share"] = row["gflops_per_s"] / peak if peak else math.nan
    for name in ("first_call_s", "warmup_calls", "iters_per_sample", "peak_memory_bytes", "memory_kind", "how",
                 "started", "seconds"):
        row[name] = getattr(record, name)
    if raw:
        passes, rounds = record.sample_labels()
        row.update(samples_s=list(record.samples_s), sample_passes=list(passes), sample_rounds=list(rounds),
                   threads_applied=record.threads_applied, knobs=record.knobs)
    return row


def flag(value: Any) -> bool | None:
    """A flag column's value (pandas nullable boolean) as True, False, or None for <NA> / missing."""
    if value is None or value is _pd_na() or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value)


def plain(value: Any) -> Any:
    """A value read from a DataFrame as a plain Python one (NumPy int64 -> int), for JSON and dataclasses."""
    return value.item() if hasattr(value, "item") else value


def _pd_na() -> Any:
    import pandas as pd

    return pd.NA


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def peak_for(device: str, peaks: Mapping) -> float | None:
    """The peak GFLOP/s run.json's "peak_gflops" holds for device ('cuda' and 'cuda:0' name the same
    device), or None when it has none that is a positive number."""
    value = peaks.get(device)
    if value is None:
        alias = {"cuda": "cuda:0", "cuda:0": "cuda"}.get(device)
        value = peaks.get(alias) if alias else None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def write_table(run: str | os.PathLike | Run) -> Path:
    """Write cells.csv, the table of load() without raw samples, atomically. Returns its path."""
    run = run if isinstance(run, Run) else read(run)
    path = Path(run.path) / TABLE_FILE
    atomic_write_text(path, run.table().to_csv(index=False))
    return path
