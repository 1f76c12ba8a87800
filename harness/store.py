"""Storage: a run folder's versioned JSON documents, written atomically and read back. No statistics.

A run folder `results/<run-id>/` holds:

    run.json            the run: suite, environment, versions, git commit, knobs, "peak_gflops", schema_version
    cells/<key>.json    one document per finished cell (harness.cells.CellRecord), written the moment it ends
    cells.csv           the tidy table, one row per cell (harness.results.write_table); derived, rewritten at will

Every document carries `schema_version`. A reader refuses a document newer than SCHEMA_VERSION (its
fields may mean something this version cannot know) and accepts an older one: fields added later
are optional, and `_RUN_DEFAULTS` and CellRecord's defaults fill in what an older file lacks. Bump
SCHEMA_VERSION only when a field changes meaning or a required field is added; adding an optional
field needs only a default.

Writes are atomic (temporary file in the same folder, fsync, os.replace): a run killed at any
moment leaves every file either as it was or complete, plus at worst a hidden `.<name>.*.tmp` file
that every reader ignores. A killed run loses at most the cell in flight.

JSON has no NaN or Infinity: a non-finite float is written as null and read back as None (NaN in
the DataFrame). Finite floats round-trip exactly (json writes repr()). NumPy scalars and arrays are
written as the Python numbers and lists they hold.

The file name of a cell is its key with the characters that are unsafe in a file name (and a
leading '.') percent-encoded: the key 'mlp/torch/cuda:0/...' is stored as 'mlp%2Ftorch%2Fcuda%3A0...'.
`read_cells` gives the keys back decoded.
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
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

from .cells import CELL_FIELDS, STATUSES, CellRecord
from .errors import BadInput

__all__ = [
    "SCHEMA_VERSION",
    "RUN_FILE",
    "CELLS_DIR",
    "TABLE_FILE",
    "ResultsError",
    "new_run_id",
    "atomic_write_json",
    "atomic_write_bytes",
    "atomic_write_text",
    "read_json",
    "refuse_newer",
    "write_run",
    "read_run",
    "cell_path",
    "write_cell",
    "read_cells",
    "finished_cells",
]

SCHEMA_VERSION = 1

RUN_FILE = "run.json"
CELLS_DIR = "cells"
TABLE_FILE = "cells.csv"

# What an older run.json may lack, and the value a reader sees instead. A field added to the format
# gets its default here, so that files written before it stay readable.
_RUN_DEFAULTS: dict[str, Any] = {
    "suite": None,
    "started": None,
    "finished": None,
    "environment": {},
    "knobs": {},
    "peak_gflops": {},
}


class ResultsError(BadInput):
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
    atomic_write_text(path, text)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text (UTF-8) to path atomically (see atomic_write_json)."""
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


def write_cell(run_dir: str | os.PathLike, key: str, record: CellRecord | Mapping) -> Path:
    """Write one finished cell atomically, replacing an earlier result for the same key. Returns its path.

    record is a CellRecord, or its document (CellRecord.to_dict()'s form, fields left out taking
    their defaults), which is validated as one: a document that is not a cell raises ResultsError.
    """
    path = cell_path(run_dir, key)
    if not isinstance(record, CellRecord):
        where = f"cell {key!r}"
        cell = record.get("cell") if isinstance(record, Mapping) else None
        if not isinstance(cell, Mapping):
            raise ResultsError(f"{where}: 'cell' must be an object with {', '.join(CELL_FIELDS)}, got {cell!r}")
        if record.get("status") not in STATUSES:
            raise ResultsError(f"{where}: status {record.get('status')!r} is not one of {', '.join(STATUSES)}")
        record = _record(record, where)
    atomic_write_json(path, _versioned(record.to_dict()))
    return path


def _record(doc: Mapping, where: str) -> CellRecord:
    try:
        return CellRecord.from_dict(doc)
    except (TypeError, ValueError) as e:
        raise ResultsError(f"{where}: not a cell record: {e}") from e


def _cell_documents(run_dir: str | os.PathLike):
    """(key, document, CellRecord) of every stored cell, sorted by key, each file read once."""
    folder = Path(run_dir) / CELLS_DIR
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):
            continue
        doc = read_json(path)
        found.append((unquote(path.name.removesuffix(".json")), doc, _record(doc, str(path))))
    return sorted(found, key=lambda entry: entry[0])


def read_cells(run_dir: str | os.PathLike) -> dict[str, CellRecord]:
    """Every stored cell of the run, {key: CellRecord}, sorted by key; {} when none has finished yet.

    Each file is read once. Temporary files left by a killed writer are ignored. A corrupt file
    raises ResultsError naming it.
    """
    return {key: record for key, _, record in _cell_documents(run_dir)}


def finished_cells(run_dir: str | os.PathLike) -> dict[str, dict]:
    """read_cells() as documents: {key: CellRecord.to_dict() with the file's schema_version}, every
    field present (the defaults of those an older file lacks filled in)."""
    return {key: {"schema_version": doc["schema_version"], **record.to_dict()}
            for key, doc, record in _cell_documents(run_dir)}
