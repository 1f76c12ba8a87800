"""Run a suite: expand it into cells, time them in worker processes, write each finished cell.

Cells that measure the same workload (model, batch size, phase, dtype, device, threads) in
different frameworks and modes form a group. A group's cells are opened together, one per worker,
and their samples are taken in rounds that alternate between the workers, so that drift on a
shared machine (another job, thermal or frequency changes) hits every framework alike; only ratios
measured that way support a claim that one framework is faster.

Quiet neighbours: while one worker is timed, every other worker of the run is stopped (SIGSTOP to
its process group, SIGCONT at its turn). An idle framework's thread pools (OpenBLAS, OpenMP, TF's
Eigen pool, XLA's) spin for a while after their work, and on a 2-core machine they took the timed
worker's cores: TensorFlow's mlp train step measured 10x slower beside the reference and torch than
alone. A stopped process cannot spin, whatever its pools do (tests/harness/test_quiet.py).

Passes: the samples of one stretch of a run in one process share that process's luck (its memory
layout, its JIT's choices, the machine's state that minute), which the spread within it does not
show. So a run takes its samples in `timing.passes` passes: each starts fresh worker processes and
visits the groups in its own shuffled order, and each round visits the workers in a shuffled order.
Samples are stored with their pass and round; harness.levels turns them into statistics by level.
The first pass checks each cell and calibrates its iterations per sample; the later ones reuse
that count, so that every sample of a cell measures the same loop.

Before a pass is timed, while nothing is, its workers start side by side (their frameworks'
imports) and do, all at once, what needs no quiet: the first pass's contract and float64 checks,
a later pass's builds and first calls (_start_pass). A first pass's first call stays in `open`,
timed alone, since it is kept (the compile time of a JIT).

Past 400 lines: a pass's start, its groups' rounds and a cell's open, sample and close share the
pool, the sides and the keep() that writes each cell; split apart they would pass all of it around.

Every finished cell is written at once, atomically: a run that is killed loses at most the cells in
flight, and `resume` runs only what is missing (a cell written after some of its passes goes on
from the next). A worker that crashes, hangs past the cell timeout
or runs out of memory costs its cell (recorded as crashed, timeout or oom, with the tail of its
stderr), the worker is restarted, and the run goes on.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import metadata, results
from .cells import Cell, CellRecord
from .passes import compile_cache, in_pass, loops_of, merge, passes_done, tight
from .suites import Suite
from .workers import Pool, Worker, WorkerDied, WorkerTimeout, worker_env

__all__ = ["RunSummary", "run_suite", "start_run", "resume_run", "Progress", "passes_done", "loops_of"]

Progress = Callable[..., None]  # progress(event, **details); events: start, pass, cell, step, done, finish


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
        "worker_env": worker_env(),
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

    def __init__(self, cell: Cell, worker: Worker, left_s: float, record: CellRecord, t0: float, side) -> None:
        self.cell, self.worker, self.left_s, self.record, self.t0 = cell, worker, left_s, record, t0
        self.side = side
        self.samples_s: list[float] = []
        self.rounds: list[int] = []  # the round of each sample, in this pass

    def request(self, message: dict, at_least_s: float = 0.0) -> dict:
        start = time.monotonic()
        try:
            return self.worker.request(message, max(self.left_s, at_least_s))
        finally:
            self.left_s -= time.monotonic() - start


def _peaks(suite: Suite, workers: Pool, timeout_s: float, side: str | None = None, python: str | None = None) -> dict:
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
            worker, setup = workers.get(cell, timeout_s, side, python)
            if not setup.get("available"):
                continue
            workers.focus(worker)
            reply = worker.request({"op": "peak", "device": device}, timeout_s)
        except (WorkerDied, WorkerTimeout):
            workers.discard(cell, side)
            continue
        if reply.get("ok"):
            peaks["cpu" if device == "cpu" else device] = reply["gflops"]
    return peaks


@dataclass(slots=True)
class _Side:
    """One run being measured: the whole of a plain `bench run`, or one of `bench ab`'s two
    environments (`python`: its interpreter), whose workers take turns with the other's."""

    run: results.Run
    summary: RunSummary
    name: str | None = None
    python: str | None = None
    loops: dict[str, int] = field(default_factory=dict)


def run_suite(suite: Suite, run_dir: str | Path, *, progress: Progress | None = None,
              extra_env: dict[str, str] | None = None, loops: dict[str, int] | None = None) -> RunSummary:
    """Measure every cell of `suite` not yet in `run_dir`, in the suite's passes. Raises
    KeyboardInterrupt after keeping every finished cell (run.json then says 'interrupted').

    Each pass starts fresh worker processes and visits the groups in an order of its own (drawn from
    the run's `shuffle_seed`); a cell is written after each of its passes, so a resumed run goes on
    from the pass it was in. `loops` (cell key -> iterations per sample) pins the calibration of the
    cells it names; a later pass always keeps the first pass's.

    The run folder is read once, at the start; what the run adds is kept in memory as it is written,
    so the summary's `run` is the whole run without reading it back."""
    return run_sides(suite, {None: (run_dir, None)}, progress=progress, extra_env=extra_env, loops=loops)[None]


def run_sides(suite: Suite, sides: dict[str | None, tuple[str | Path, str | None]], *,
              progress: Progress | None = None, extra_env: dict[str, str] | None = None,
              loops: dict[str, int] | None = None) -> dict[str | None, RunSummary]:
    """run_suite for several runs of one suite at once, each side {name: (run_dir, python)} with its
    own workers (in its own interpreter when `python` is given), every cell of every side in the
    same groups and rounds: `bench ab`. The first side's shuffle_seed orders every side's passes."""
    progress = progress or (lambda event, **details: None)
    timing = suite.timing
    passes = timing.passes
    cells = suite.cells()
    state = []
    for name, (run_dir, python) in sides.items():
        run = results.read(run_dir)
        left = sum(passes_done(run.records.get(c.key), passes) < passes for c in cells)
        state.append(_Side(run, RunSummary(run.path, len(cells), len(cells) - left, run=run), name, python))
    first_side = state[0]
    if "shuffle_seed" not in first_side.run.meta:
        first_side.run.meta["shuffle_seed"] = random.SystemRandom().randrange(2**32)
    seed = first_side.run.meta["shuffle_seed"]
    for side in state:
        side.run.meta["shuffle_seed"] = seed
        if loops:  # kept in run.json: a resumed run pins the same loops
            side.run.meta["loops"] = dict(sorted(loops.items()))
        side.loops = side.run.meta.get("loops") or {}
    # The timed batches and the reference's results on them, shared by the workers of every
    # framework (harness.verify): computed once per model and batch, not once per worker.
    shared = tempfile.TemporaryDirectory(prefix="fwbench-reference-")
    workers = Pool({**compile_cache(shared.name), **(extra_env or {})})
    started = time.monotonic()

    def done_of(side: _Side, cell: Cell) -> int:
        return passes_done(side.run.records.get(cell.key), passes)

    left = [c for c in cells if any(done_of(side, c) < passes for side in state)]
    work = sum(passes - done_of(side, c) for side in state for c in cells)
    total = len(cells) * len(state)
    n_done = sum(side.summary.done_before for side in state)
    progress("start", total=total, done=n_done, todo=total - n_done, passes=passes, work=work)

    def keep(side: _Side, record: CellRecord, final: bool) -> None:
        nonlocal n_done
        results.write_cell(side.run.path, record.key, record)
        side.run.records[record.key] = record
        progress("step", cell=record.cell)
        if final:
            n_done += 1
            side.summary.statuses[record.status] = side.summary.statuses.get(record.status, 0) + 1
            progress("done", cell=record.cell, record=record, done=n_done, total=total,
                     elapsed=time.monotonic() - started)

    interrupted = failed = False
    try:
        for side in state:
            if left and not side.run.meta.get("peak_gflops"):
                side.run.meta["peak_gflops"] = _peaks(suite, workers, timing.cell_timeout_s, side.name, side.python)
            results.write_run(side.run.path, side.run.meta)
        first = min((done_of(side, c) for side in state for c in left), default=passes)
        for p in range(first, passes):
            this = [c for c in left if any(done_of(side, c) == p for side in state)]
            if not this:
                continue
            progress("pass", index=p, passes=passes, cells=len(this) * len(state))
            _start_pass([(side, c) for c in this for side in state if done_of(side, c) == p], suite, workers,
                        shared.name)
            groups = _groups(this)
            rng = random.Random(f"{seed}:{p}")
            rng.shuffle(groups)
            for group in groups:
                entries = [(side, cell) for cell in group for side in state if done_of(side, cell) == p]
                if timing.budget_s is not None and time.monotonic() - started > timing.budget_s:
                    for side, cell in entries:  # a cell with passes behind it keeps them
                        spent = f"the suite's time budget of {timing.budget_s:g} s was spent"
                        keep(side, side.run.records.get(cell.key) or _base(cell, "skipped", spent), final=True)
                    continue
                _measure_group(entries, p, suite, workers, shared.name, rng, keep, progress)
            workers.close()  # fresh processes for the next pass
    except KeyboardInterrupt:
        interrupted = True
        raise
    except BaseException:
        failed = True
        raise
    finally:
        workers.close()
        shared.cleanup()
        for side in state:
            run, summary = side.run, side.summary
            summary.interrupted, summary.failed = interrupted, failed
            run.records = dict(sorted(run.records.items()))
            run.meta["status"] = "interrupted" if interrupted else "failed" if failed else "finished"
            run.meta["finished"] = _now()
            results.write_run(run.path, run.meta)
            results.write_table(run)
            summary.seconds = time.monotonic() - started
        progress("finish", summary=state[0].summary)
    return {side.name: side.summary for side in state}


def _start_pass(entries: list[tuple[_Side, Cell]], suite: Suite, workers: Pool, cache_dir: str) -> None:
    """Before a pass is timed, while nothing is: its workers started side by side, and what `open`
    would do one worker at a time that needs no quiet done in every worker at once, on every usable
    core (worker_main's prepare): the checks of the cells in their first pass, the builds and first
    calls of those in a later one (whose first call is not kept). The first pass's first calls stay
    in `open`, each timed alone. A worker that fails here is started again by its first cell, whose
    record then says why."""
    timeout_s = suite.timing.cell_timeout_s
    at_once = metadata.usable_cpus()
    workers.start([(cell, side.name, side.python) for side, cell in entries], timeout_s, at_once)
    first = [(cell, side.name) for side, cell in entries if side.run.records.get(cell.key) is None]
    later = [(cell, side.name) for side, cell in entries if side.run.records.get(cell.key) is not None]
    jobs: dict = {}
    models: dict = {}  # worker -> what its job makes: a model checked, or a cell built
    if suite.verify:
        for worker, cells in workers.workers_of(first):
            jobs.setdefault(worker, {"op": "prepare", "seed": 0, "cache_dir": cache_dir})["cells"] = \
                [c.to_dict() for c in cells]
            models[worker] = len({(c.model, c.dtype, c.mode) for c in cells})
    for worker, cells in workers.workers_of(later):
        jobs.setdefault(worker, {"op": "prepare", "seed": 0, "cache_dir": cache_dir})["build"] = \
            [c.to_dict() for c in cells]
        models[worker] = models.get(worker, 0) + len(cells)
    # Each worker's deadline: a cell's timeout for each model it makes (what `open` would give each,
    # one at a time, with every core), twice that where it shares the cores with other workers; and
    # then its BLAS and OpenMP pools one thread each (at_once workers on as many cores), since pools
    # larger than their share spin against each other.
    share = 2 if len(jobs) > 1 and at_once > 1 else 1
    if share > 1:
        for message in jobs.values():
            message["threads"] = 1
    replies = workers.together([(worker, message, timeout_s * share * max(1, models[worker]))
                                for worker, message in jobs.items()], at_once)
    for worker, reply in replies.items():
        if not isinstance(reply, dict):  # died or hung: gone; its cells' `open` starts another
            workers.forget(worker)


def _measure_group(entries: list[tuple[_Side, Cell]], p: int, suite: Suite, workers: Pool, cache_dir: str,
                   rng: random.Random, keep, progress) -> None:
    """Pass `p` of one group: open each cell in its worker, take the pass's rounds with the workers in
    a new order each round (the others stopped), close, and keep each cell with its samples so far."""
    timing = suite.timing
    opened: list[_Open] = []
    calibrated: dict[str, int] = {}  # with several sides, the first side's count is every side's
    for side, cell in entries:
        progress("cell", cell=cell)
        prior = side.run.records.get(cell.key)
        iters = prior.iters_per_sample if prior is not None else side.loops.get(cell.key, calibrated.get(cell.key))
        entry = _open(cell, workers, suite, timing.cell_timeout_s, cache_dir, verify=suite.verify and prior is None,
                      iters_per_sample=iters, side=side)
        if isinstance(entry, _Open):
            calibrated.setdefault(cell.key, entry.record.iters_per_sample)
            opened.append(entry)
        else:
            keep(side, in_pass(entry, p, timing.passes), final=True)
    sizes = timing.round_sizes
    last = timing.max_rounds or len(sizes)
    for r in range(last):
        # the planned rounds for every cell; then more, for the cells still loose (budgets)
        loose = [e for e in opened if not tight(e.samples_s, e.rounds, timing.target_ci)] if r >= len(sizes) else []
        todo = opened[:] if r < len(sizes) else loose
        if not todo:
            break
        k = sizes[min(r, len(sizes) - 1)]
        rng.shuffle(todo)
        for entry in todo:
            workers.focus(entry.worker)
            if timing.cooldown_s:
                time.sleep(timing.cooldown_s)
            failed = _sample(entry, k, workers)
            if failed is not None:
                opened.remove(entry)
                keep(entry.side, in_pass(failed, p, timing.passes), final=True)
            else:
                entry.rounds.extend([r] * k)
    for entry in opened:
        record = _close(entry, workers)
        if record.status == "ok":
            record = merge(entry.side.run.records.get(entry.cell.key), record, p, entry.rounds)
        else:
            record = in_pass(record, p, timing.passes)
        keep(entry.side, record, final=record.status != "ok" or record.passes_done >= timing.passes)


def _failure(cell: Cell, error: Exception, t0: float, workers: Pool, side: str | None = None) -> CellRecord:
    workers.discard(cell, side)
    status = "timeout" if isinstance(error, WorkerTimeout) else error.kind
    return _base(cell, status, str(error), stderr_tail=error.stderr_tail, seconds=time.monotonic() - t0)


def _open(cell: Cell, workers: Pool, suite: Suite, timeout_s: float, cache_dir: str, *, verify: bool,
          iters_per_sample: int | None, side: _Side) -> _Open | CellRecord:
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    try:
        worker, setup = workers.get(cell, timeout_s, side.name, side.python)
        workers.focus(worker)
        if not setup.get("ok", True):  # the adapter could not even be loaded in the worker
            return _base(cell, "error", setup.get("error", ""), stderr_tail=worker.stderr_tail(800),
                         seconds=time.monotonic() - t0)
        if not setup.get("available", True):
            return _base(cell, "skipped", setup.get("reason") or f"{cell.framework} is not available")
        reply = worker.request({"op": "open", "cell": cell.to_dict(), "timing": suite.timing.to_dict(),
                                "verify": verify, "seed": 0, "cache_dir": cache_dir,
                                "iters_per_sample": iters_per_sample}, deadline - time.monotonic())
    except (WorkerDied, WorkerTimeout) as e:
        return _failure(cell, e, t0, workers, side.name)
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
    return _Open(cell, worker, deadline - time.monotonic(), record, t0, side)


def _sample(entry: _Open, k: int, workers: Pool) -> CellRecord | None:
    """Take k samples for an open cell; the cell's failure record if that fails, else None."""
    try:
        reply = entry.request({"op": "sample", "k": k})
    except (WorkerDied, WorkerTimeout) as e:
        return _failure(entry.cell, e, entry.t0, workers, entry.side.name)
    if not reply.get("ok"):
        status = "oom" if reply.get("kind") == "oom" else "error"
        return _base(entry.cell, status, reply.get("error", ""), seconds=time.monotonic() - entry.t0)
    entry.samples_s.extend(reply["samples_s"])
    return None


def _close(entry: _Open, workers: Pool) -> CellRecord:
    try:
        reply = entry.request({"op": "close"}, at_least_s=5.0)
    except (WorkerDied, WorkerTimeout) as e:
        return _failure(entry.cell, e, entry.t0, workers, entry.side.name)
    return entry.record.replace(samples_s=tuple(entry.samples_s), seconds=time.monotonic() - entry.t0,
                                **reply.get("record", {}))
