"""The cell: what one measurement is (Cell, its workload and key) and what became of it (CellRecord,
with its Measurement), one typed record from the suite to the worker, to disk and back.

The same field names are used everywhere a cell travels: `Cell.to_dict()` is what a worker is sent
and what a cell file holds under "cell"; `CellRecord.to_dict()` is a cell file's document (less its
schema_version, which harness.store adds); a worker's replies carry CellRecord's field names
(first_call_s, iters_per_sample, how, knobs, flops, check, samples_s, peak_memory_bytes,
memory_kind), so that the runner passes them on without renaming. `CellRecord.from_dict` reads a
document of any earlier version: a field it lacks gets the dataclass default.

Statistics are never stored: a record keeps its raw samples in a Measurement, whose `stats()` is
computed on first use and kept for the life of the process.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .levels import LevelStats, level_summary
from .stats import Stats, summarize

__all__ = [
    "DTYPES",
    "PHASES",
    "STATUSES",
    "FAILED",
    "CHECK_FAULTS",
    "CELL_FIELDS",
    "WORKLOAD_FIELDS",
    "CHECK_FIELDS",
    "parse_device",
    "Cell",
    "Measurement",
    "CellRecord",
]

DTYPES = ("float32", "float64")
# The phases, in the order a reader expects them.
PHASES = ("forward", "backward", "forward_backward", "train_step")
# What became of a cell. Only 'ok' cells have samples and statistics.
STATUSES = ("ok", "skipped", "error", "timeout", "oom", "crashed")
# The statuses of a cell that was attempted and failed (skipped is not a failure).
FAILED = ("error", "timeout", "oom", "crashed")
# The statuses of a cell's check that find it parting from the reference (or the check broken);
# 'unverified', a check that could not be made, is not among them.
CHECK_FAULTS = ("fail", "error")


def parse_device(device: str) -> tuple[str, int | None]:
    """'cpu' -> ('cpu', None); 'cuda' -> ('cuda', None); 'cuda:1' -> ('cuda', 1)."""
    kind, _, index = str(device).partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise ValueError(f"unknown device {device!r}; valid: cpu, cuda, cuda:N")
    return kind, int(index) if index else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True, order=True)
class Cell:
    """One measurement: a model in a framework, on a device, in a dtype and mode, at a batch size,
    for one phase, with a number of threads."""

    model: str
    framework: str
    device: str
    dtype: str
    mode: str
    batch_size: int
    phase: str
    threads: int

    def __post_init__(self):
        for name in ("model", "framework", "mode"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"cell {name}: expected a non-empty string, got {value!r}")
        parse_device(self.device)
        if self.dtype not in DTYPES:
            raise ValueError(f"cell dtype: unknown {self.dtype!r}; valid: {', '.join(DTYPES)}")
        if self.phase not in PHASES:
            raise ValueError(f"cell phase: unknown {self.phase!r}; valid: {', '.join(PHASES)}")
        for name in ("batch_size", "threads"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"cell {name}: expected a positive integer, got {value!r}")

    @property
    def key(self) -> str:
        """A stable id, safe in file names: 'mnist_cnn.torch.cpu.float32.eager.b32.forward.t2'
        ('cuda:1' becomes 'cuda1'). An id, not a format to parse: use to_dict()/from_dict()."""
        def safe(s: str) -> str:
            return re.sub(r"[^A-Za-z0-9_-]", "-", s)
        device = self.device.replace(":", "")
        return ".".join((safe(self.model), safe(self.framework), device, self.dtype, safe(self.mode),
                         f"b{self.batch_size}", self.phase, f"t{self.threads}"))

    @property
    def workload(self) -> tuple:
        """What the contenders of a comparison share: the cell without its framework and mode, as the
        values of WORKLOAD_FIELDS."""
        return tuple(getattr(self, name) for name in WORKLOAD_FIELDS)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in CELL_FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cell:
        missing = [n for n in CELL_FIELDS if n not in data]
        unknown = [k for k in data if k not in CELL_FIELDS]
        if missing or unknown:
            raise ValueError(f"not a cell: missing {missing}, unknown {unknown}; keys: {', '.join(CELL_FIELDS)}")
        return cls(**{n: data[n] for n in CELL_FIELDS})


# The fields of a cell, in the order of a table's columns.
CELL_FIELDS = tuple(f.name for f in fields(Cell))
# A workload: a cell without its framework and mode, what the contenders of a comparison share.
WORKLOAD_FIELDS = ("model", "device", "dtype", "batch_size", "phase", "threads")
# What an equivalence check belongs to: a model in one framework, device, dtype and mode, whatever
# the batch size and phase timed.
CHECK_FIELDS = ("model", "framework", "device", "dtype", "mode")


@dataclass(frozen=True, slots=True)
class Measurement:
    """The raw data of one timed phase. Statistics are derived from it (`stats()`), never stored."""

    samples_s: tuple[float, ...]  # seconds per call, one value per sample
    iters_per_sample: int
    first_call_s: float | None
    warmup_calls: int
    min_sample_s: float | None  # None in a cell file written before it was recorded
    how: str = ""
    _stats: Stats | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples_s", tuple(float(s) for s in self.samples_s))
        if not self.samples_s:
            raise ValueError("a Measurement needs at least one sample: call Timer.sample(k) before measurement()")
        if self.iters_per_sample < 1:
            raise ValueError(f"iters_per_sample must be at least 1, got {self.iters_per_sample}")
        if self.warmup_calls < 0:
            raise ValueError(f"warmup_calls cannot be negative, got {self.warmup_calls}")

    def stats(self) -> Stats:
        """stats.summarize(samples_s) with its defaults, computed on first use and kept. For another
        confidence or bootstrap seed, call stats.summarize(m.samples_s, ...) directly."""
        if self._stats is None:
            object.__setattr__(self, "_stats", summarize(self.samples_s))
        return self._stats

    def to_dict(self) -> dict:
        """The raw data, JSON-ready (no statistics: a reader derives them)."""
        doc = {"samples_s": list(self.samples_s), "iters_per_sample": self.iters_per_sample,
               "first_call_s": self.first_call_s, "warmup_calls": self.warmup_calls, "how": self.how}
        if self.min_sample_s is not None:  # added to the format later: absent where unknown
            doc["min_sample_s"] = self.min_sample_s
        return doc


@dataclass(frozen=True, slots=True)
class CellRecord:
    """What became of one cell: a cell file's document, typed.

    status is one of STATUSES; reason says why a cell is not 'ok'; stderr_tail is a dead worker's
    last words. verified: every part of the equivalence check passed (True), one failed or could not
    be made (False), or None when none ran; check is its verdict with every tensor, the contract
    part's fields with the timed phase's part (`timed`) and the float64 part (`float64`) beside
    (harness.verify.cell_verdict; results/README.md documents the fields). threads_verified: the framework reported the
    thread count asked for. samples_s (seconds per call), iters_per_sample, first_call_s,
    warmup_calls, min_sample_s and how are the timing's raw data, which `measurement()` gives as a
    Measurement; threads_applied and knobs are what the worker reported; flops the analytic count
    of one call; peak_memory_bytes with memory_kind ('rss' or 'cuda_allocator'); started (ISO time)
    and seconds (wall time of the cell, build and check included).
    """

    cell: Cell
    status: str
    reason: str = ""
    stderr_tail: str = ""
    verified: bool | None = None
    check: dict | None = None
    threads_verified: bool | None = None
    samples_s: tuple[float, ...] = ()
    iters_per_sample: int | None = None
    first_call_s: float | None = None
    warmup_calls: int | None = None
    min_sample_s: float | None = None  # added to the format later: absent from older files
    how: str = ""
    # Which pass and which round of it took each sample (0-based, parallel to samples_s), and how many
    # passes the cell has finished; added with passes: absent from older files, whose samples are then
    # one pass, a round each.
    sample_passes: tuple[int, ...] = ()
    sample_rounds: tuple[int, ...] = ()
    passes_done: int | None = None
    threads_applied: dict = field(default_factory=dict)
    knobs: dict = field(default_factory=dict)
    flops: float | None = None
    peak_memory_bytes: int | None = None
    memory_kind: str | None = None
    started: str | None = None
    seconds: float | None = None
    _measurement: Measurement | None = field(default=None, init=False, repr=False, compare=False)
    _levels: LevelStats | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.cell, Cell):
            raise TypeError(f"CellRecord.cell must be a Cell, got {type(self.cell).__name__}")
        if self.status not in STATUSES:
            raise ValueError(f"cell {self.cell.key!r}: status {self.status!r} is not one of {', '.join(STATUSES)}")
        object.__setattr__(self, "samples_s", tuple(self.samples_s))
        for name in ("sample_passes", "sample_rounds"):
            labels = tuple(int(v) for v in getattr(self, name))
            if labels and len(labels) != len(self.samples_s):
                raise ValueError(f"cell {self.cell.key!r}: {len(labels)} {name} for {len(self.samples_s)} samples")
            object.__setattr__(self, name, labels)

    @property
    def key(self) -> str:
        return self.cell.key

    def sample_labels(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The pass and round of each sample; for a file written before passes, one pass whose rounds
        are the samples themselves (nothing finer is known of them)."""
        if self.sample_passes and self.sample_rounds:
            return self.sample_passes, self.sample_rounds
        n = len(self.samples_s)
        return (0,) * n, tuple(range(n))

    def measurement(self) -> Measurement | None:
        """The timing of an 'ok' cell with samples, as a Measurement (made once, then kept); None
        for any other. TypeError or ValueError when the stored samples are not numbers."""
        if self.status != "ok" or not self.samples_s:
            return None
        if self._measurement is None:
            m = Measurement(self.samples_s, self.iters_per_sample or 1, self.first_call_s, self.warmup_calls or 0,
                            self.min_sample_s, self.how)
            object.__setattr__(self, "_measurement", m)
        return self._measurement

    def stats(self) -> Stats | None:
        """The statistics of an 'ok' cell's samples (computed once per process), or None."""
        m = self.measurement()
        return m.stats() if m is not None else None

    def level_stats(self) -> LevelStats | None:
        """The statistics by level (harness.levels: a CI from the passes and rounds, the noise flag)
        of an 'ok' cell's samples, computed once per process; None for any other."""
        if self.status != "ok" or not self.samples_s:
            return None
        if self._levels is None:
            passes, rounds = self.sample_labels()
            object.__setattr__(self, "_levels", level_summary(self.samples_s, passes, rounds))
        return self._levels

    def replace(self, **changes: Any) -> CellRecord:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The cell file's document (without schema_version)."""
        doc: dict[str, Any] = {"cell": self.cell.to_dict()}
        for f in fields(self):
            if f.name not in ("cell", "_measurement", "_levels"):
                doc[f.name] = getattr(self, f.name)
        doc["samples_s"] = list(self.samples_s)
        for name in ("sample_passes", "sample_rounds"):
            doc[name] = list(doc[name])
        for name in ("min_sample_s", "passes_done"):
            if doc[name] is None:  # absent where unknown, as in the files written before it
                del doc[name]
        for name in ("sample_passes", "sample_rounds"):
            if not doc[name]:
                del doc[name]
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> CellRecord:
        """A record from a cell file's document of any version; ValueError or TypeError naming the field
        when it cannot be one. Fields an older file lacks get their defaults; unknown fields are ignored."""
        raw_cell = doc.get("cell")
        if not isinstance(raw_cell, Mapping):
            raise ValueError(f"'cell' must be an object with {', '.join(CELL_FIELDS)}, got {raw_cell!r}")
        status = doc.get("status")
        if not isinstance(status, str):
            raise ValueError(f"'status' must be a string, got {status!r}")
        kwargs = {name: doc[name] for name in _RECORD_FIELDS if doc.get(name) is not None}
        return cls(cell=Cell.from_dict(raw_cell), **kwargs)


_RECORD_FIELDS = tuple(f.name for f in fields(CellRecord) if f.name not in ("cell", "_measurement", "_levels"))
