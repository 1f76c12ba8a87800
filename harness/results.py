"""The on-disk format of a run: versioned JSON documents written atomically, read back as a pandas table.

A run folder `results/<run-id>/` holds:

    run.json            the run: suite, environment, versions, git commit, knobs, "peak_gflops", schema_version
    cells/<key>.json    one document per finished cell, written the moment the cell ends
    cells.csv           the tidy table, one row per cell (`write_table`); derived, rewritten at will

Every document carries `schema_version`. A reader refuses a document newer than SCHEMA_VERSION (its
fields may mean something this version cannot know) and accepts an older one: fields added later
are optional, and `_RUN_DEFAULTS` / `_CELL_DEFAULTS` fill in what an older file lacks. Bump
SCHEMA_VERSION only when a field changes meaning or a required field is added; adding an optional
field needs only a default here.

Writes are atomic (temporary file in the same folder, fsync, os.replace): a run killed at any
moment leaves every file either as it was or complete, plus at worst a hidden `.<name>.*.tmp` file
that every reader ignores. A killed run loses at most the cell in flight.

JSON has no NaN or Infinity: a non-finite float is written as null and read back as None (NaN in
the DataFrame). Finite floats round-trip exactly (json writes repr()). NumPy scalars and arrays are
written as the Python numbers and lists they hold.

The file name of a cell is its key with the characters that are unsafe in a file name (and a
leading '.') percent-encoded: the key 'mlp/torch/cuda:0/...' is stored as 'mlp%2Ftorch%2Fcuda%3A0...'.
`finished_cells` gives the keys back decoded.

Statistics are not stored: the raw samples are, and `load` derives the statistics (harness.stats)
each time it reads a run.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "SCHEMA_VERSION",
    "STATUSES",
    "FAILED",
    "CELL_FIELDS",
    "COLUMNS",
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
    "load",
    "CHECK_COLUMNS",
    "load_checks",
    "write_table",
    "WORKLOAD",
    "flag",
    "plain",
    "peak_for",
]

SCHEMA_VERSION = 1

RUN_FILE = "run.json"
CELLS_DIR = "cells"
TABLE_FILE = "cells.csv"

# What became of a cell. Only 'ok' cells have samples and statistics.
STATUSES = ("ok", "skipped", "error", "timeout", "oom", "crashed")
# The statuses of a cell that was attempted and failed (skipped is not a failure).
FAILED = ("error", "timeout", "oom", "crashed")

# The fields of a cell (harness.suites.Cell), in the order of the table's columns.
CELL_FIELDS = ("model", "framework", "device", "dtype", "mode", "batch_size", "phase", "threads")
# A workload: a cell without its framework and mode, what the contenders of a comparison share.
WORKLOAD = ("model", "device", "dtype", "batch_size", "phase", "threads")

# What an older run.json or cell file may lack, and the value a reader sees instead. A field added
# to the format gets its default here, so that files written before it stay readable.
_RUN_DEFAULTS: dict[str, Any] = {
    "suite": None,
    "started": None,
    "finished": None,
    "environment": {},
    "knobs": {},
    "peak_gflops": {},
}
_CELL_DEFAULTS: dict[str, Any] = {
    "reason": "",
    "stderr_tail": "",
    "verified": None,
    "check": None,
    "threads_verified": None,
    "samples_s": [],
    "iters_per_sample": None,
    "first_call_s": None,
    "warmup_calls": None,
    "how": "",
    "threads_applied": {},
    "knobs": {},
    "flops": None,
    "peak_memory_bytes": None,
    "memory_kind": None,
    "started": None,
    "seconds": None,
}

# The statistics of harness.stats.Stats, and their column names (seconds get the unit '_s').
_STAT_COLUMNS = {
    "n": "n", "median": "median_s", "q1": "q1_s", "q3": "q3_s", "iqr": "iqr_s", "min": "min_s",
    "max": "max_s", "mean": "mean_s", "stdev": "stdev_s", "cv": "cv", "ci_low": "ci_low_s",
    "ci_high": "ci_high_s", "noisy": "noisy", "noisy_cv": "noisy_cv", "noisy_iqr": "noisy_iqr",
}

# The columns of load(), in order, with their pandas dtypes. Nullable dtypes ('Int64', 'boolean')
# keep integers integers and flags flags in the rows that have no value.
_COLUMN_DTYPES: dict[str, str] = {
    "run_id": "object",
    "key": "object",
    "model": "object",
    "framework": "object",
    "device": "object",
    "dtype": "object",
    "mode": "object",
    "batch_size": "Int64",
    "phase": "object",
    "threads": "Int64",
    "status": "object",
    "reason": "object",
    "verified": "boolean",
    "threads_verified": "boolean",
    "check_status": "object",
    "worst_normwise": "float64",
    "first_divergence": "object",
    "n": "Int64",
    "median_s": "float64",
    "q1_s": "float64",
    "q3_s": "float64",
    "iqr_s": "float64",
    "min_s": "float64",
    "max_s": "float64",
    "mean_s": "float64",
    "stdev_s": "float64",
    "cv": "float64",
    "ci_low_s": "float64",
    "ci_high_s": "float64",
    "noisy": "boolean",
    "noisy_cv": "boolean",
    "noisy_iqr": "boolean",
    "samples_per_s": "float64",
    "flops": "float64",
    "gflops_per_s": "float64",
    "peak_share": "float64",
    "phase_sum_ratio": "float64",
    "phase_sum_flag": "boolean",
    "first_call_s": "float64",
    "warmup_calls": "Int64",
    "iters_per_sample": "Int64",
    "peak_memory_bytes": "Int64",
    "memory_kind": "object",
    "how": "object",
    "started": "object",
    "seconds": "float64",
}
COLUMNS = tuple(_COLUMN_DTYPES)
# Added by load(raw=True): the stored lists and settings, one Python object per row.
_RAW_COLUMNS = ("samples_s", "threads_applied", "knobs")


class ResultsError(ValueError):
    """A results file or folder that cannot be read or written as asked; the message names the file."""


# ------------------------------------------------------------------------------------------------
# run ids and atomic writes


def new_run_id(suite_name: str, now: datetime | None = None, results_dir: str | os.PathLike | None = None) -> str:
    """A sortable, filesystem-safe run id: '20261123-184512-quick' (local time, to the second).

    When `results_dir` already holds a folder of that name, a short random suffix is added
    ('20261123-184512-quick-3fa2'). Characters other than letters, digits, '.', '_' and '-' in the
    suite name become '-'.
    """
    now = now or datetime.now()
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", suite_name).strip(".-") or "run"
    run_id = f"{now:%Y%m%d-%H%M%S}-{name}"
    if results_dir is None:
        return run_id
    candidate = run_id
    while (Path(results_dir) / candidate).exists():
        candidate = f"{run_id}-{secrets.token_hex(2)}"
    return candidate


def _jsonable(obj: Any) -> Any:
    """obj with NumPy values made Python ones and non-finite floats made None (JSON has no NaN)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write obj as JSON to path so that path is, at every moment, either the old file or the new one.

    The text goes to a temporary file in the same folder ('.<name>.<random>.tmp'), is flushed and
    fsynced, and replaces path with os.replace (atomic on POSIX and Windows). A process killed
    before the replace leaves that temporary file behind; readers ignore it. Non-finite floats are
    written as null (see the module docstring).
    """
    path = Path(path)
    try:
        text = json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise ResultsError(f"cannot write {path}: {e}") from e
    _atomic_write_text(path, text)


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write data to path atomically (see atomic_write_json), creating the folder: for reports and plots."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); results are for everyone the umask allows.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # NOTE: an ordinary failure (full disk, Ctrl-C) cleans up; only a hard kill leaves the temp file.
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable. Not possible on every platform (Windows): best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------
# reading documents


def read_json(path: str | os.PathLike) -> dict:
    """A results document: a JSON object with a schema_version this fwbench can read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except OSError as e:
        raise ResultsError(f"{path}: cannot read: {e}") from e
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: corrupt results file, not valid JSON ({e}); delete it "
                           "(a cell file is re-measured when the run resumes)") from e
    if not isinstance(doc, dict):
        raise ResultsError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    refuse_newer(doc, path)
    return doc


def refuse_newer(doc: Mapping, path: str | os.PathLike) -> int:
    """The document's schema_version; ResultsError if it is missing or newer than this fwbench reads."""
    found = doc.get("schema_version")
    if isinstance(found, bool) or not isinstance(found, int) or found < 1:
        raise ResultsError(f"{path}: no valid schema_version (found {found!r}): not an fwbench results file")
    if found > SCHEMA_VERSION:
        raise ResultsError(f"{path}: schema_version {found} is newer than this fwbench reads "
                           f"(schema_version {SCHEMA_VERSION}): upgrade fwbench to read it")
    return found


def _versioned(doc: Mapping) -> dict:
    return {"schema_version": SCHEMA_VERSION, **{k: v for k, v in doc.items() if k != "schema_version"}}


# ------------------------------------------------------------------------------------------------
# the run


def write_run(run_dir: str | os.PathLike, run: Mapping) -> Path:
    """Write run.json (creating the folder), with schema_version set to SCHEMA_VERSION. Returns its path."""
    path = Path(run_dir) / RUN_FILE
    atomic_write_json(path, _versioned(run))
    return path


def read_run(run_dir: str | os.PathLike) -> dict:
    """run.json, with the defaults of fields an older file lacks."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise ResultsError(f"{run_dir}: not an fwbench run folder (no {RUN_FILE})")
    return {**_RUN_DEFAULTS, **read_json(path)}


# ------------------------------------------------------------------------------------------------
# cells


def cell_path(run_dir: str | os.PathLike, key: str) -> Path:
    """Where the cell with this key is stored: cells/<key, percent-encoded>.json."""
    if not key:
        raise ResultsError("a cell key must not be empty")
    name = quote(key, safe="-_.=+,@")
    if name.startswith("."):  # a hidden name would look like a temporary file and be ignored
        name = "%2E" + name[1:]
    return Path(run_dir) / CELLS_DIR / f"{name}.json"


def write_cell(run_dir: str | os.PathLike, key: str, cell_result: Mapping) -> Path:
    """Write one finished cell atomically, replacing an earlier result for the same key. Returns its path.

    cell_result is the runner's dict: {"cell": {model, framework, ...}, "status": one of STATUSES,
    "samples_s": [seconds per call, ...], ...} (the module docstring lists every field).
    """
    path = cell_path(run_dir, key)
    _validate_cell(cell_result, f"cell {key!r}")
    if cell_result["status"] not in STATUSES:
        raise ResultsError(f"cell {key!r}: status {cell_result['status']!r} is not one of {', '.join(STATUSES)}")
    atomic_write_json(path, _versioned(cell_result))
    return path


def _validate_cell(doc: Mapping, where: str) -> None:
    cell = doc.get("cell")
    if not isinstance(cell, Mapping):
        raise ResultsError(f"{where}: 'cell' must be an object with {', '.join(CELL_FIELDS)}, got {cell!r}")
    if not isinstance(doc.get("status"), str):
        raise ResultsError(f"{where}: 'status' must be a string, got {doc.get('status')!r}")


def finished_cells(run_dir: str | os.PathLike) -> dict[str, dict]:
    """Every stored cell of the run, {key: cell result}, sorted by key; {} when none has finished yet.

    Temporary files left by a killed writer are ignored. A corrupt file raises ResultsError naming it.
    The defaults of fields an older file lacks are filled in.
    """
    folder = Path(run_dir) / CELLS_DIR
    if not folder.is_dir():
        return {}
    found = {}
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):
            continue
        doc = read_json(path)
        _validate_cell(doc, str(path))
        found[unquote(path.name.removesuffix(".json"))] = {**_CELL_DEFAULTS, **doc}
    return dict(sorted(found.items()))


# ------------------------------------------------------------------------------------------------
# the table


def load(run_dir: str | os.PathLike, raw: bool = False) -> pd.DataFrame:
    """A run as a pandas DataFrame, one row per finished cell (sorted by key): the API for notebooks.

    Columns (COLUMNS, in order):

    - run_id (the folder's name), key, and the cell: model, framework, device, dtype, mode,
      batch_size, phase, threads;
    - status (one of STATUSES), reason, verified (the equivalence check passed: True/False/<NA>),
      check_status, worst_normwise, first_divergence;
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
    An empty run gives an empty DataFrame with the same columns.

    Example::

        >>> from harness import results
        >>> df = results.load("results/20261123-184512-quick")
        >>> ok = df[df.status == "ok"]
        >>> ok.pivot_table(index=["model", "phase"], columns="framework", values="median_s")
        >>> ok[ok.noisy][["key", "cv", "iqr_s"]]      # cells whose timings are not to be trusted
    """
    import pandas as pd

    run_dir = Path(run_dir)
    run = read_run(run_dir)
    peaks = run.get("peak_gflops") or {}
    rows = []
    for key, doc in finished_cells(run_dir).items():
        try:
            rows.append(_row(run_dir.name, key, doc, peaks, raw))
        except (TypeError, ValueError) as e:
            raise ResultsError(f"{cell_path(run_dir, key)}: cannot tabulate this cell: {e}") from e
    columns = list(COLUMNS) + (list(_RAW_COLUMNS) if raw else [])
    df = pd.DataFrame(rows, columns=columns)
    return _phase_sums(df.astype(_COLUMN_DTYPES))


# The columns of load_checks(), in order, with their pandas dtypes.
_CHECK_DTYPES: dict[str, str] = {
    "run_id": "object", "model": "object", "framework": "object", "device": "object", "dtype": "object",
    "mode": "object", "check_status": "object", "first_divergence": "object", "tensor": "object",
    "stage": "object", "layer": "object", "shape": "object", "max_abs": "float64", "normwise": "float64",
    "atol": "float64", "rtol": "float64", "normwise_tol": "float64", "passed": "boolean", "note": "object",
}
CHECK_COLUMNS = tuple(_CHECK_DTYPES)


def load_checks(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The equivalence checks of a run, one row per tensor checked: what the equivalence plot draws.

    A check belongs to a model in one framework, device, dtype and mode, whatever the batch size
    and phase timed (it runs at its own batch, harness.checks.CHECK_BATCH), so each is listed once
    even though every cell of it stores a copy. Columns (CHECK_COLUMNS): run_id, model, framework,
    device, dtype, mode, check_status ('pass', 'fail', 'skip', 'error'), first_divergence, and per
    tensor: tensor ('output', 'loss', 'layer:conv1', 'grad:conv1.weight', 'sgd:fc1.bias', ...),
    stage ('forward', 'gradient', 'update'), layer, shape (a tuple), max_abs, normwise (||a-b|| /
    ||b|| against the float64 reference), atol, rtol, normwise_tol (the tolerance it was held to),
    passed, note. Cells run without verification contribute nothing.

    Example::

        >>> checks = results.load_checks("results/20261123-184512-quick")
        >>> checks[~checks.passed][["model", "framework", "tensor", "normwise", "normwise_tol"]]
    """
    import pandas as pd

    run_dir = Path(run_dir)
    read_run(run_dir)  # the folder must be a run
    rows, seen = [], set()
    for doc in finished_cells(run_dir).values():
        check, cell = doc.get("check"), doc["cell"]
        if not check:
            continue
        which = tuple(cell.get(name) for name in ("model", "framework", "device", "dtype", "mode"))
        if which in seen:
            continue
        seen.add(which)
        for t in check.get("tensors") or []:
            rows.append({
                "run_id": run_dir.name, **dict(zip(("model", "framework", "device", "dtype", "mode"), which,
                                                   strict=True)),
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


def _row(run_id: str, key: str, doc: Mapping, peaks: Mapping, raw: bool) -> dict:
    cell = doc["cell"]
    check = doc.get("check") or {}
    row: dict[str, Any] = {"run_id": run_id, "key": key}
    row.update({name: cell.get(name) for name in CELL_FIELDS})
    row.update(status=doc["status"], reason=doc.get("reason"), verified=doc.get("verified"),
               threads_verified=doc.get("threads_verified"),
               check_status=check.get("status"), worst_normwise=_float(check.get("worst_normwise")),
               first_divergence=check.get("first_divergence"))
    # NOTE: lazily, so that writing results never needs harness.stats
    from harness.stats import summarize, throughput

    samples = doc.get("samples_s") or []
    if doc["status"] == "ok" and samples:

        stats = summarize(samples)
        row.update({column: getattr(stats, name) for name, column in _STAT_COLUMNS.items()})
    else:
        row.update({column: None for column in _STAT_COLUMNS.values()})
    median = _float(row["median_s"])
    flops = _float(doc.get("flops"))
    batch = cell.get("batch_size")
    row["samples_per_s"] = throughput(batch, median) if batch and median > 0 else math.nan
    row["flops"] = flops
    row["gflops_per_s"] = flops / median / 1e9 if median > 0 else math.nan
    peak = peak_for(str(cell.get("device")), peaks)
    row["peak_share"] = row["gflops_per_s"] / peak if peak else math.nan
    for name in ("first_call_s", "warmup_calls", "iters_per_sample", "peak_memory_bytes", "memory_kind", "how",
                 "started", "seconds"):
        row[name] = doc.get(name)
    if raw:
        row.update(samples_s=list(samples), threads_applied=doc.get("threads_applied"), knobs=doc.get("knobs"))
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


def write_table(run_dir: str | os.PathLike) -> Path:
    """Write cells.csv, the table of load() without raw samples, atomically. Returns its path."""
    path = Path(run_dir) / TABLE_FILE
    _atomic_write_text(path, load(run_dir).to_csv(index=False))
    return path
