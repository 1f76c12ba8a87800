"""Run a suite: expand it into cells, time them in worker processes, write each finished cell.

Cells that measure the same workload (model, batch size, phase, dtype, device, threads) in
different frameworks and modes form a group. A group's cells are opened together, one per worker,
and their samples are taken in rounds that alternate between the workers, so that drift on a
shared machine (another job, thermal or frequency changes) hits every framework alike; only ratios
measured that way support a claim that one framework is faster.

Every finished cell is written at once, atomically: a run that is killed loses at most the cells in
flight, and `resume` runs only what is missing. A worker that crashes, hangs past the cell timeout
or runs out of memory costs its cell (recorded as crashed, timeout or oom, with the tail of its
stderr), the worker is restarted, and the run goes on.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import metadata, results
from .cells import Cell, CellRecord
from .suites import Suite
from .workers import Worker, WorkerDied, WorkerTimeout

__all__ = ["RunSummary", "run_suite", "start_run", "resume_run", "Progress"]

Progress = Callable[..., None]  # progress(event, **details); events: start, cell, done, finish


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(slots=True)
class RunSummary:
    run_dir: Path
    total: int
    done_before: int
    statuses: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    failed: bool = False  # the runner itself stopped on an error (a cell's failure is not one)
    seconds: float = 0.0
    run: results.Run | None = None  # the finished run, every cell in memory: no need to read it back


def start_run(suite: Suite, results_dir: str | Path = "results", run_id: str | None = None) -> Path:
    """Create results/<run-id>/ with its run.json (the suite, the environment, the knobs)."""
    results_dir = Path(results_dir)
    run_id = run_id or results.new_run_id(suite.name, results_dir=results_dir)
    run_dir = results_dir / run_id
    (run_dir / results.CELLS_DIR).mkdir(parents=True, exist_ok=False)
    results.write_run(run_dir, {
        "run_id": run_id,
        "suite": suite.to_dict(),
        "suite_path": str(suite.path) if suite.path else None,
        "environment": metadata.environment(),
        "thread_env": metadata.thread_env(),
        "status": "running",
        "started": _now(),
    })
    return run_dir


def resume_run(run_dir: str | Path) -> tuple[Suite, Path]:
    """The suite of an existing run, read back from its run.json (not from a file that may have
    changed since), for running what is missing."""
    run_dir = Path(run_dir)
    run = results.read_run(run_dir)
    if run.get("kind") == "train":
        raise results.ResultsError(f"{run_dir}: a `bench train` run; resume it with `bench train --resume {run_dir}`")
    suite = Suite.from_dict(run["suite"], source=str(run_dir / results.RUN_FILE))
    return suite, run_dir


class _Workers:
    """One worker per (framework, device, threads), started when first needed, restarted after a death."""

    def __init__(self, extra_env: dict[str, str] | None) -> None:
        self._workers: dict[tuple, Worker] = {}
        self._setup: dict[tuple, dict] = {}
        self.extra_env = extra_env

    def get(self, cell: Cell, timeout_s: float) -> tuple[Worker, dict]:
        key = (cell.framework, cell.device, cell.threads)
        worker = self._workers.get(key)
        if worker is None or not worker.alive:
            if worker is not None:
                worker.close()
            worker = Worker(cell.framework, cell.device, cell.threads, self.extra_env)
            self._workers[key] = worker
            self._setup[key] = worker.request({"op": "setup", "framework": cell.framework,
                                               "threads": cell.threads}, timeout_s)
        return worker, self._setup[key]

    def discard(self, cell: Cell) -> None:
        worker = self._workers.pop((cell.framework, cell.device, cell.threads), None)
        if worker is not None:
            worker.kill()
            worker.close()

    def close(self) -> None:
        for worker in self._workers.values():
            worker.close()
        self._workers.clear()


def _groups(cells: list[Cell]) -> list[list[Cell]]:
    """The cells of each workload together, in the order the suite lists them."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.workload, []).append(cell)
    return list(groups.values())


def _base(cell: Cell, status: str, reason: str = "", **extra) -> CellRecord:
    return CellRecord(cell, status, reason, started=_now(), **{"seconds": 0.0, **extra})


class _Open:
    """A cell being measured: its worker, the time it has left, its record so far and its samples.

    The cell timeout is charged only with this cell's own requests: the cells of a group take turns,
    and the time spent on a neighbour (a hanging one above all) must not count against this one.
    """

    def __init__(self, cell: Cell, worker: Worker, left_s: float, record: CellRecord, t0: float) -> None:
        self.cell, self.worker, self.left_s, self.record, self.t0 = cell, worker, left_s, record, t0
        self.samples_s: list[float] = []

    def request(self, message: dict, at_least_s: float = 0.0) -> dict:
        start = time.monotonic()
        try:
            return self.worker.request(message, max(self.left_s, at_least_s))
        finally:
            self.left_s -= time.monotonic() - start


def _peaks(suite: Suite, workers: _Workers, timeout_s: float) -> dict:
    """The float32 matrix-multiply peak of each device, measured once per run (with the suite's
    largest thread count on the CPU)."""
    peaks: dict = {}
    threads = max(suite.threads)
    for device in suite.devices:
        framework = "reference" if device == "cpu" else next((f for f in suite.frameworks if f != "reference"), None)
        if framework is None:
            continue
        cell = Cell(suite.models[0], framework, device, "float32", "eager", 1, "forward", threads)
        try:
            worker, setup = workers.get(cell, timeout_s)
            if not setup.get("available"):
                continue
            reply = worker.request({"op": "peak", "device": device}, timeout_s)
        except (WorkerDied, WorkerTimeout):
            workers.discard(cell)
            continue
        if reply.get("ok"):
            peaks["cpu" if device == "cpu" else device] = reply["gflops"]
    return peaks


def run_suite(suite: Suite, run_dir: str | Path, *, progress: Progress | None = None,
              extra_env: dict[str, str] | None = None) -> RunSummary:
    """Measure every cell of `suite` not yet in `run_dir`. Raises KeyboardInterrupt after keeping
    every finished cell (run.json then says 'interrupted').

    The run folder is read once, at the start; what the run adds is kept in memory as it is written,
    so the summary's `run` is the whole run without reading it back."""
    progress = progress or (lambda event, **details: None)
    run = results.read(run_dir)
    timing = suite.timing
    cells = suite.cells()
    todo = [c for c in cells if c.key not in run.records]
    summary = RunSummary(run.path, len(cells), len(cells) - len(todo), run=run)
    workers = _Workers(extra_env)
    # The timed batches and the reference's results on them, shared by the workers of every
    # framework (harness.verify): computed once per model and batch, not once per worker.
    shared = tempfile.TemporaryDirectory(prefix="fwbench-reference-")
    started = time.monotonic()
    progress("start", total=len(cells), done=summary.done_before, todo=len(todo))

    def finish(record: CellRecord) -> None:
        results.write_cell(run.path, record.key, record)
        run.records[record.key] = record
        summary.statuses[record.status] = summary.statuses.get(record.status, 0) + 1
        progress("done", cell=record.cell, record=record, done=summary.done_before + sum(summary.statuses.values()),
                 total=len(cells), elapsed=time.monotonic() - started)

    try:
        if todo and not run.meta.get("peak_gflops"):
            run.meta["peak_gflops"] = _peaks(suite, workers, timing.cell_timeout_s)
            results.write_run(run.path, run.meta)
        for group in _groups(todo):
            if timing.budget_s is not None and time.monotonic() - started > timing.budget_s:
                for cell in group:
                    finish(_base(cell, "skipped", f"the suite's time budget of {timing.budget_s:g} s was spent"))
                continue
            opened: list[_Open] = []
            for cell in group:
                progress("cell", cell=cell)
                entry = _open(cell, workers, suite, timing.cell_timeout_s, shared.name)
                if isinstance(entry, _Open):
                    opened.append(entry)
                else:
                    finish(entry)
            for k in timing.round_sizes:
                for entry in list(opened):
                    time.sleep(timing.cooldown_s)  # the previous worker's thread pools stop spinning
                    failed = _sample(entry, k, workers)
                    if failed is not None:
                        opened.remove(entry)
                        finish(failed)
            for entry in opened:
                finish(_close(entry, workers))
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    except BaseException:
        summary.failed = True
        raise
    finally:
        workers.close()
        shared.cleanup()
        run.records = dict(sorted(run.records.items()))
        run.meta["status"] = "interrupted" if summary.interrupted else "failed" if summary.failed else "finished"
        run.meta["finished"] = _now()
        results.write_run(run.path, run.meta)
        results.write_table(run)
        summary.seconds = time.monotonic() - started
        progress("finish", summary=summary)
    return summary


def _failure(cell: Cell, error: Exception, t0: float, workers: _Workers) -> CellRecord:
    workers.discard(cell)
    status = "timeout" if isinstance(error, WorkerTimeout) else error.kind
    return _base(cell, status, str(error), stderr_tail=error.stderr_tail, seconds=time.monotonic() - t0)


def _open(cell: Cell, workers: _Workers, suite: Suite, timeout_s: float, cache_dir: str) -> _Open | CellRecord:
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    try:
        worker, setup = workers.get(cell, timeout_s)
        if not setup.get("ok", True):  # the adapter could not even be loaded in the worker
            return _base(cell, "error", setup.get("error", ""), stderr_tail=worker.stderr_tail(800),
                         seconds=time.monotonic() - t0)
        if not setup.get("available", True):
            return _base(cell, "skipped", setup.get("reason") or f"{cell.framework} is not available")
        reply = worker.request({"op": "open", "cell": cell.to_dict(), "timing": suite.timing.to_dict(),
                                "verify": suite.verify, "seed": 0, "cache_dir": cache_dir}, deadline - time.monotonic())
    except (WorkerDied, WorkerTimeout) as e:
        return _failure(cell, e, t0, workers)
    if not reply.get("ok"):
        status = {"skipped": "skipped", "oom": "oom"}.get(reply.get("kind"), "error")
        return _base(cell, status, reply.get("error", ""), stderr_tail=worker.stderr_tail(800),
                     seconds=time.monotonic() - t0)
    applied = setup.get("threads_applied", {})
    # Verified, not assumed: the count the framework reports back must be the one asked for.
    threads_verified = None if applied.get("threads") is None else applied["threads"] == cell.threads
    record = _base(cell, "ok", threads_applied=applied, threads_verified=threads_verified).replace(**reply["record"])
    if record.check is not None:
        record = record.replace(verified=record.check["status"] == "pass")
    return _Open(cell, worker, deadline - time.monotonic(), record, t0)


def _sample(entry: _Open, k: int, workers: _Workers) -> CellRecord | None:
    """Take k samples for an open cell; the cell's failure record if that fails, else None."""
    try:
        reply = entry.request({"op": "sample", "k": k})
    except (WorkerDied, WorkerTimeout) as e:
        return _failure(entry.cell, e, entry.t0, workers)
    if not reply.get("ok"):
        status = "oom" if reply.get("kind") == "oom" else "error"
        return _base(entry.cell, status, reply.get("error", ""), seconds=time.monotonic() - entry.t0)
    entry.samples_s.extend(reply["samples_s"])
    return None


def _close(entry: _Open, workers: _Workers) -> CellRecord:
    try:
        reply = entry.request({"op": "close"}, at_least_s=5.0)
    except (WorkerDied, WorkerTimeout) as e:
        return _failure(entry.cell, e, entry.t0, workers)
    return entry.record.replace(samples_s=tuple(entry.samples_s), seconds=time.monotonic() - entry.t0,
                                **reply.get("record", {}))
