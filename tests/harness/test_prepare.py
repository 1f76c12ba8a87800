"""What a pass does before it is timed (runner._start_pass): its workers started side by side
(Pool.start, Pool.together), the first pass's checks and a later pass's builds made in every
worker at once (worker_main's prepare), and what happens when a worker fails there."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness import adapters, suites
from harness.cells import Cell
from harness.workers import Pool, Worker, WorkerDied, WorkerTimeout

from . import faulty

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def faulty_adapters(monkeypatch):
    """FWBENCH_ADAPTERS naming every faulty adapter, inherited by the workers started here."""
    monkeypatch.setenv("FWBENCH_ADAPTERS", ",".join(f"{n}={t}" for n, t in faulty.ADAPTERS.items()))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))))
    for cached in (adapters._registered, adapters.get, suites.framework_modes):
        cached.cache_clear()
    yield
    for cached in (adapters._registered, adapters.get, suites.framework_modes):
        cached.cache_clear()


def _cell(framework: str, model: str = "mlp", phase: str = "train_step", batch: int = 8) -> Cell:
    return Cell(model, framework, "cpu", "float32", "eager", batch, phase, 1)


def _timing() -> dict:
    return suites.Timing(samples=2, rounds=1, warmup=1).to_dict()


def _worker(framework: str) -> Worker:
    worker = Worker(framework, "cpu", 1)
    assert worker.request({"op": "setup", "framework": framework, "threads": 1}, 60)["available"]
    return worker


def _open(worker: Worker, cell: Cell, tmp_path: Path, *, verify: bool) -> dict:
    reply = worker.request({"op": "open", "cell": cell.to_dict(), "timing": _timing(), "verify": verify, "seed": 0,
                            "cache_dir": str(tmp_path), "iters_per_sample": None}, 120)
    assert reply["ok"], reply
    return reply["record"]


def _without_seconds(value):
    """A check's verdict without its durations, the only part that differs from one making to another."""
    if isinstance(value, dict):
        return {k: _without_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_without_seconds(v) for v in value]
    return value


@pytest.mark.parametrize("framework", ["torch"])
def test_the_checks_made_ahead_are_the_ones_open_would_make(tmp_path, framework):
    pytest.importorskip(framework)
    cells = [_cell(framework, phase="forward"), _cell(framework, phase="train_step", batch=16)]
    ahead, alone = _worker(framework), _worker(framework)
    try:
        reply = ahead.request({"op": "prepare", "cells": [c.to_dict() for c in cells], "seed": 0}, 300)
        assert reply["ok"] and reply["checked"] == 1  # one model, dtype and mode: one contract and float64 check
        again = ahead.request({"op": "prepare", "cells": [c.to_dict() for c in cells], "seed": 0}, 300)
        assert again["checked"] == 0  # kept: open finds them made
        for cell in cells:
            prepared = _open(ahead, cell, tmp_path, verify=True)["check"]
            made_in_open = _open(alone, cell, tmp_path, verify=True)["check"]
            assert prepared["status"] == "pass" and prepared["float64"] is not None
            assert _without_seconds(prepared) == _without_seconds(made_in_open)
    finally:
        ahead.close()
        alone.close()


def test_a_prebuilt_cell_opens_with_its_loop_pinned_and_no_peak_of_its_own(tmp_path):
    cell = _cell("reference", model="linear_regression")
    worker = _worker("reference")
    try:
        reply = worker.request({"op": "prepare", "build": [cell.to_dict()], "seed": 0, "cache_dir": str(tmp_path)},
                               60)
        assert reply["ok"] and reply["checked"] == 1
        opened = worker.request({"op": "open", "cell": cell.to_dict(), "timing": _timing(), "verify": False,
                                 "seed": 0, "cache_dir": str(tmp_path), "iters_per_sample": 7}, 60)
        assert opened["ok"] and opened["record"]["iters_per_sample"] == 7
        samples = worker.request({"op": "sample", "k": 2}, 60)["samples_s"]
        assert len(samples) == 2 and all(s > 0 for s in samples)
        # every prebuilt model of the pass is in memory: the first pass's peak is the one kept
        assert worker.request({"op": "close"}, 60)["record"] == {}
        # the next cell, not prebuilt, is built in open and has its peak again
        other = _cell("reference", model="linear_regression", phase="forward")
        _open(worker, other, tmp_path, verify=False)
        assert worker.request({"op": "close"}, 60)["record"]["peak_memory_bytes"] > 0
    finally:
        worker.close()


def test_together_answers_for_every_worker_even_when_one_dies_or_hangs(tmp_path, faulty_adapters):
    """A later pass's build makes the first call, where these faulty models fail: the crashing
    worker's death and the hanging one's timeout come back as such, the healthy worker's answer
    beside them, and the hung worker is killed."""
    pool = Pool(None)
    cells = {name: _cell(name, model="linear_regression") for name in ("reference", "crashing", "hanging")}
    try:
        pool.start([(cell, None, None) for cell in cells.values()], 60, at_once=2)
        found = dict(pool.workers_of([(cell, None) for cell in cells.values()]))
        assert len(found) == 3
        # each job its own deadline: the hung worker's 3 s run out while the others have 60
        jobs = [(worker, {"op": "prepare", "build": [mine[0].to_dict()], "seed": 0, "cache_dir": str(tmp_path)},
                 3 if worker.framework == "hanging" else 60)
                for worker, mine in found.items()]
        started = time.monotonic()
        replies = pool.together(jobs, at_once=2)
        assert time.monotonic() - started < 30
        by_framework = {worker.framework: reply for worker, reply in replies.items()}
        assert by_framework["reference"]["ok"] and by_framework["reference"]["checked"] == 1
        assert isinstance(by_framework["crashing"], WorkerDied)
        assert faulty.CRASH_LINE in by_framework["crashing"].stderr_tail
        assert isinstance(by_framework["hanging"], WorkerTimeout)
        hung = next(worker for worker in found if worker.framework == "hanging")
        assert not hung.alive
        # the next `get` of a forgotten worker's cell starts a fresh one
        pool.forget(hung)
        worker, setup = pool.get(cells["hanging"], 60)
        assert worker is not hung and worker.alive and setup["available"]
    finally:
        pool.close()


def test_the_workers_start_sets_up_are_the_ones_get_hands_out(faulty_adapters):
    """start sets every worker up side by side; each cell's `get` then finds its worker and setup
    (here: a framework that is not installed, which its cells will be skipped for), not a new one."""
    pool = Pool(None)
    cells = [_cell("unavailable", model="linear_regression"), _cell("reference", model="linear_regression")]
    try:
        pool.start([(cell, None, None) for cell in cells], 60, at_once=2)
        started = dict(pool.workers_of([(cell, None) for cell in cells]))
        for cell in cells:
            worker, setup = pool.get(cell, 60)
            assert worker in started
        assert setup["available"] is True
        assert pool.get(cells[0], 60)[1]["reason"] == faulty.UNAVAILABLE_REASON
    finally:
        pool.close()


def test_a_worker_told_to_exit_ends_at_once_with_status_0():
    worker = _worker("reference")
    worker.close()
    assert worker._proc.returncode == 0


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads a worker's environment from /proc")
@pytest.mark.parametrize("own", [None, "65536"])
def test_a_worker_gets_the_allocator_settings_unless_the_environment_has_its_own(monkeypatch, own):
    """glibc's adjusting mmap threshold made a process's speed depend on its allocation history
    (harness/workers.py): every worker starts with it fixed, and a user's own value wins; run.json's
    worker_env says which the workers had."""
    from harness.workers import ALLOCATOR_ENV, worker_env

    if own is None:
        monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    else:
        monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", own)
    worker = Worker("reference", "cpu", 1)
    try:
        raw = Path(f"/proc/{worker.pid}/environ").read_bytes()
        env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
    finally:
        worker.close()
    expected = own or ALLOCATOR_ENV["MALLOC_MMAP_THRESHOLD_"]
    assert env["MALLOC_MMAP_THRESHOLD_"] == expected == worker_env()["MALLOC_MMAP_THRESHOLD_"]
    assert env["MALLOC_TRIM_THRESHOLD_"] == os.environ.get("MALLOC_TRIM_THRESHOLD_",
                                                            ALLOCATOR_ENV["MALLOC_TRIM_THRESHOLD_"])


_PINNED = """
import json, os, threading
from harness import sharing
every = os.sched_getaffinity(0)
os.sched_setaffinity(0, {min(every)})  # as JAX's configure_threads pins a 1-thread worker
seen = {}
stop = threading.Event()
started = []
with sharing.every_cpu(every):
    seen["inside"] = sorted(os.sched_getaffinity(0))
    t = threading.Thread(target=stop.wait)  # a thread the framework starts meanwhile
    t.start()
    started.append(t.native_id)
seen["after"] = sorted(os.sched_getaffinity(0))
seen["thread after"] = sorted(os.sched_getaffinity(started[0]))
stop.set()
print(json.dumps(seen))
"""


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity (Linux) and at least 2 usable CPUs")
def test_a_pinned_worker_has_every_cpu_while_it_prepares_and_is_pinned_again_after():
    import json
    import subprocess
    import sys

    every = sorted(os.sched_getaffinity(0))
    proc = subprocess.run([sys.executable, "-c", _PINNED], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["inside"] == every
    assert seen["after"] == seen["thread after"] == [min(every)]
