"""A worker process's side: read a request, answer it, until 'exit' or the parent goes away.

The parent (harness.workers.Worker, driven by runner.py) sends one JSON object per line; the worker
answers each with one. Reply fields named in "record" are CellRecord's own (harness.cells), which
the runner applies to the cell's record as they are: one schema on the wire and on disk.

    parent -> worker                                  worker -> parent
    {"op": "setup", "framework", "threads"}           {"ok", "threads_applied", "available", "reason", "version"}
    {"op": "peak", "device"}                          {"ok", "gflops"}
    {"op": "prepare", "cells": [Cell.to_dict()],      {"ok", "checked", "seconds"}
     "build": [Cell.to_dict()], "seed", "cache_dir",    (open's checks, and later passes' builds, made
     "threads"?}                                        ahead: _Session.prepare)
    {"op": "open", "cell": Cell.to_dict(),            {"ok", "record": {first_call_s, iters_per_sample,
     "timing": Timing.to_dict(), "verify", "seed",      warmup_calls, min_sample_s, how, check, knobs, flops}}
     "cache_dir", "iters_per_sample"?}
    {"op": "sample", "k"}                             {"ok", "samples_s": [seconds per call, ...]}
    {"op": "close"}                                   {"ok", "record": {peak_memory_bytes, memory_kind}}
    {"op": "check", "model", "device", "dtype",       {"ok", "result": CheckResult.to_dict()}
     "mode", "batch", "steps", "seed"}                  (bench check, for an adapter with an `environment`)
    {"op": "train_open" | "train_steps" | "train_eval", ...}   bench train: harness/training/session.py
    {"op": "exit"}

A failure answers {"ok": false, "kind": "skipped" | "error" | "oom", "error": "..."}.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

from .cells import Cell
from .metadata import peak_rss_bytes, peak_rss_reset

__all__ = ["main"]

_OOM_ERRORS = ("OutOfMemoryError", "ResourceExhaustedError")  # torch.cuda's and TensorFlow's


def _cpu_peak_gflops(n: int = 1024, repeats: int = 5) -> float:
    """float32 matrix-multiply throughput of NumPy's BLAS with this worker's threads: best of a few."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = a.copy()
    c = np.empty_like(a)
    np.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


class _Session:
    """What one worker holds: its adapter, the open cell, cached reference runs and verdicts."""

    def __init__(self) -> None:
        self.adapter = None
        self.timer = None
        self.model = None
        self.references: dict = {}
        self.verdicts: dict = {}
        self.prebuilt: dict = {}  # cell key -> (model, phase, timer, first call): prepare's "build"
        self.unmeasured_peak = False
        # the CPUs this process may use, before its adapter pins it (configure_threads): prepare's
        self.cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None

    def setup(self, msg: dict) -> dict:
        from . import adapters

        self.adapter = adapters.get(msg["framework"])
        # before the framework is first imported: its backend (KERAS_BACKEND), x64, ...
        os.environ.update(self.adapter.environment)
        status = self.adapter.availability()
        applied = self.adapter.configure_threads(int(msg["threads"])) if status.available else {}
        if status.available and "threadpools" not in applied:
            applied = {**applied, "threadpools": _threadpools()}
        return {"ok": True, "threads_applied": applied, "available": status.available, "reason": status.reason,
                "version": status.version, "pid": os.getpid()}

    def peak(self, msg: dict) -> dict:
        if msg["device"] == "cpu":
            return {"ok": True, "gflops": _cpu_peak_gflops()}
        peak = getattr(self.adapter, "device_peak_gflops", None)
        if peak is None:
            return {"ok": False, "kind": "skipped", "error": f"{self.adapter.name} measures no peak on {msg['device']}"}
        return {"ok": True, "gflops": peak(msg["device"])}

    def open(self, msg: dict) -> dict:
        import numpy as np

        import reference_impl as ri

        from . import verify
        from .adapters.base import Unavailable
        from .timing import Timer

        cell = Cell.from_dict(msg["cell"])
        warmup, min_sample_s = int(msg["timing"]["warmup"]), float(msg["timing"]["min_sample_s"])
        spec = ri.models.get(cell.model)
        seed = int(msg.get("seed", 0))
        cache_dir = msg.get("cache_dir")  # the run's shared reference results (harness.verify)
        weights = ri.init_weights(spec, seed, np.float64)
        checking = bool(msg.get("verify"))
        prebuilt = None if checking else self.prebuilt.pop(cell.key, None)
        if prebuilt is not None:  # built by prepare, with its first call made (a later pass: not kept)
            self.model, phase, self.timer, first = prebuilt
            self.unmeasured_peak = True
            return self._ready(cell, spec, phase, first, None, warmup, min_sample_s, msg.get("iters_per_sample"))
        self.unmeasured_peak = False
        try:
            if checking:
                reference = verify.PhaseReference(spec, weights, cell.batch_size, seed, cache_dir)
                x, y = reference.x, reference.y
                # before the cell's peak memory starts: another model, in float64
                float64 = self._float64_check(cell, spec, weights, seed)
            else:
                x, y = verify.timed_batch(spec, weights, cell.batch_size, seed, cache_dir)
            peak_rss_reset()
            self.model = self.adapter.build(spec, weights, device=cell.device, dtype=cell.dtype, mode=cell.mode)
            contract = self._contract_check(self.model, cell, spec, weights, seed) if checking else None
            phase = self.model.timing_phase(cell.phase, x, y)
            start = self.model.get_weights() if checking and cell.phase == "train_step" else None
            reset = getattr(self.model, "reset_device_memory", None)
            if reset is not None:  # so that the peak is this phase's, not the check's
                reset()
        except Unavailable as e:
            self.model = None
            return {"ok": False, "kind": "skipped", "error": str(e)}
        self.timer = Timer(phase)
        first = self.timer.first_call()
        check = None
        if checking:
            # untimed: what the first timed call computed, at this cell's batch, against the reference
            timed = verify.check_timed(self.timer.readback(), reference, cell.phase, start, dtype=cell.dtype,
                                       device=cell.device)
            check = verify.cell_verdict(contract, timed, float64, self.adapter.float64_limitation)
        return self._ready(cell, spec, phase, first, check, warmup, min_sample_s, msg.get("iters_per_sample"))

    def _ready(self, cell: Cell, spec, phase, first: float, check, warmup: int, min_sample_s: float,
               pinned: int | None) -> dict:
        """The open cell warmed up and its iterations per sample set: its record so far."""
        self.timer.warmup(warmup)
        # pinned: a later pass, or `bench run --loops-from`: no calibration
        iters = self.timer.pin(int(pinned), min_sample_s) if pinned else self.timer.calibrate(min_sample_s)
        return {"ok": True, "record": {
            "first_call_s": first, "iters_per_sample": iters, "warmup_calls": warmup, "min_sample_s": min_sample_s,
            "how": phase.how, "check": check, "knobs": self.model.knobs(),
            "flops": spec.phase_flops(cell.phase, cell.batch_size)}}

    def prepare(self, msg: dict) -> dict:
        """What `open` would do one worker at a time that needs no quiet, done ahead for every cell of
        a pass while no worker is timed: the runner asks every worker at once, and the work (JAX
        compiling every model, twice for the checks) then uses every core, where `open` used one.

        cells: the cells to check (their first pass): the contract check of a model built as the
        timed one is, and the float64 check, each once per model, device, dtype and mode (what
        `open` caches anyway). build: the cells of a later pass, built and called once (_prebuild).
        What cannot be made here (the framework lacks the dtype, a build fails) is left to `open`,
        which reports it as it would have.

        threads: where workers share the cores, the thread pools' size meanwhile, and every CPU for
        a process pinned to fewer (harness/sharing.py says why)."""
        from .sharing import side_by_side

        if msg.get("threads") is None:
            return self._prepare(msg)
        with side_by_side(int(msg["threads"]), self.cpus):
            return self._prepare(msg)

    def _prepare(self, msg: dict) -> dict:
        import numpy as np

        import reference_impl as ri

        from .adapters.base import Unavailable

        seed = int(msg.get("seed", 0))
        start, made = time.perf_counter(), 0
        for data in msg.get("build", ()):
            made += self._prebuild(Cell.from_dict(data), seed, msg.get("cache_dir"))
        for data in msg.get("cells", ()):
            cell = Cell.from_dict(data)
            key = (cell.model, cell.device, cell.dtype, cell.mode)
            if key in self.verdicts:
                continue
            spec = ri.models.get(cell.model)
            weights = ri.init_weights(spec, seed, np.float64)
            try:
                if self.adapter.unavailable_reason(cell.device, cell.dtype, cell.mode):
                    continue
                self._float64_check(cell, spec, weights, seed)
                model = self.adapter.build(spec, weights, device=cell.device, dtype=cell.dtype, mode=cell.mode)
                self._contract_check(model, cell, spec, weights, seed)
                made += 1
            except Unavailable:
                continue
            except Exception:  # `open` meets it again, in its cell, and says so there
                traceback.print_exc()
                self.verdicts.pop(key, None)
        return {"ok": True, "checked": made, "seconds": time.perf_counter() - start}

    def _prebuild(self, cell: Cell, seed: int, cache_dir: str | None) -> bool:
        """A cell of a later pass built, its timed phase made and called once (a JIT compiles then,
        from the run's compilation cache), ahead of its turn: `open` then has only the warm-up and
        the pinned loop to do. Its first call is not kept (a later pass keeps the first pass's), nor
        its peak memory (every prebuilt model is in memory at once). False when it cannot be made
        here: `open` makes it, and reports why it fails."""
        import numpy as np

        import reference_impl as ri

        from . import verify
        from .adapters.base import Unavailable
        from .timing import Timer

        spec = ri.models.get(cell.model)
        weights = ri.init_weights(spec, seed, np.float64)
        try:
            x, y = verify.timed_batch(spec, weights, cell.batch_size, seed, cache_dir)
            model = self.adapter.build(spec, weights, device=cell.device, dtype=cell.dtype, mode=cell.mode)
            phase = model.timing_phase(cell.phase, x, y)
            timer = Timer(phase)
            first = timer.first_call()
        except Unavailable:
            return False
        except Exception:
            traceback.print_exc()
            return False
        self.prebuilt[cell.key] = (model, phase, timer, first)
        return True

    def _contract_check(self, model, cell: Cell, spec, weights, seed: int):
        """The check of the built model through the contract, at checks.CHECK_BATCH (once per model,
        device, dtype and mode: every phase and batch of it shares the answer)."""
        from . import checks

        key = (cell.model, cell.device, cell.dtype, cell.mode)
        if key not in self.verdicts:
            self.verdicts[key] = checks.check_model(model, self._reference(spec, weights, seed), repeats=1,
                                                    framework=self.adapter.name, device=cell.device,
                                                    dtype=cell.dtype, mode=cell.mode)
        return self.verdicts[key]

    def _float64_check(self, cell: Cell, spec, weights, seed: int):
        """The same framework, device and mode built in float64 and checked as the contract part;
        None for a float64 cell (its contract part is that check) and for the reference (float64
        is the reference itself)."""
        from . import checks

        if cell.dtype == "float64" or self.adapter.name == "reference":
            return None
        key = (cell.model, cell.device, "float64", cell.mode)
        if key not in self.verdicts:
            self.verdicts[key] = checks.check_cell(self.adapter, self._reference(spec, weights, seed),
                                                   device=cell.device, dtype="float64", mode=cell.mode, repeats=1)
        return self.verdicts[key]

    def _reference(self, spec, weights, seed: int):
        from . import checks, verify

        if spec.name not in self.references:
            optimizers = verify.timed_optimizers(spec)
            self.references[spec.name] = checks.ReferenceRun(spec, weights, checks.CHECK_BATCH, seed,
                                                             checks.CHECK_STEPS, optimizers=optimizers)
        return self.references[spec.name]

    def check(self, msg: dict) -> dict:
        """One cell of `bench check`, for an adapter that needs a process of its own."""
        import numpy as np

        import reference_impl as ri

        from . import checks

        key = (msg["model"], msg["batch"], msg["seed"], msg["steps"])
        if key not in self.references:
            spec = ri.models.get(msg["model"])
            weights = ri.init_weights(spec, msg["seed"], np.float64)
            self.references[key] = checks.ReferenceRun(spec, weights, msg["batch"], msg["seed"], msg["steps"])
        result = checks.check_cell(self.adapter, self.references[key], device=msg["device"], dtype=msg["dtype"],
                                   mode=msg["mode"])
        return {"ok": True, "result": result.to_dict()}

    def train(self, msg: dict) -> dict:
        """`bench train`'s ops (train_open, train_steps, train_eval): harness.training.session."""
        from .training.session import TrainSession

        if msg["op"] == "train_open":
            self.trainer = TrainSession(self.adapter)
            return self.trainer.open(msg)
        if getattr(self, "trainer", None) is None:
            return {"ok": False, "kind": "error", "error": f"{msg['op']} before train_open"}
        return (self.trainer.steps if msg["op"] == "train_steps" else self.trainer.evaluate)(msg)

    def sample(self, msg: dict) -> dict:
        if self.timer is None:
            return {"ok": False, "kind": "error", "error": "sample before open"}
        # One untimed call first: the other workers ran since this one's last round, and their work
        # evicted its caches and let its thread pool fall asleep. Still needed with the others
        # stopped (SIGSTOP) meanwhile: without it, cells measured 3-9% slower per framework and up
        # to 40% (torch mnist_cnn forward, batch 128; Intel Xeon, 2026-12-04, two runs each way).
        self.timer.warmup(1)
        return {"ok": True, "samples_s": self.timer.sample(int(msg["k"]))}

    def close(self, msg: dict) -> dict:
        if self.unmeasured_peak:  # prebuilt: the process holds the pass's other models too
            self.model = self.timer = None
            return {"ok": True, "record": {}}
        peak, kind = peak_rss_bytes(), "rss"
        device_memory = getattr(self.model, "device_memory", None)
        if device_memory is not None:
            found = device_memory()
            if found is not None:
                peak, kind = found
        self.model = self.timer = None
        return {"ok": True, "record": {"peak_memory_bytes": peak, "memory_kind": kind}}


def _threadpools() -> list[dict]:
    """The BLAS and OpenMP thread pools loaded in this process, with their sizes (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{k: pool.get(k) for k in ("user_api", "internal_api", "num_threads", "version")}
            for pool in threadpool_info()]


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when its parent dies. The parent stops idle workers
    (SIGSTOP) while another is timed; a stopped worker never reads the end of its stdin, so without
    this one would outlive a parent killed with -9, stopped for ever."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent's own cleanup has to do
        return
    parent = os.environ.get("FWBENCH_PARENT_PID")
    if parent and os.getppid() != int(parent):  # the parent died before the request took effect
        os._exit(1)


def main() -> None:
    """The worker's loop: read a request, answer it, until 'exit' or the parent goes away."""
    _die_with_parent()
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from frameworks go to stderr, never into the protocol
    sys.stdout = sys.stderr
    session = _Session()
    handlers = {"setup": session.setup, "peak": session.peak, "prepare": session.prepare, "open": session.open,
                "check": session.check, "sample": session.sample, "close": session.close, "train_open": session.train,
                "train_steps": session.train, "train_eval": session.train}
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["op"] == "exit":
            # Without the interpreter's teardown: TensorFlow's and Keras's took ~1 s a worker, six
            # workers a pass. Every answer is written (line-buffered) and nothing else needs saving.
            protocol.flush()
            sys.stderr.flush()
            os._exit(0)
        try:
            reply = handlers[msg["op"]](msg)
        except MemoryError as e:
            session.model = session.timer = None
            reply = {"ok": False, "kind": "oom", "error": f"MemoryError: {e}"}
        except Exception as e:
            oom = "out of memory" in str(e).lower() or type(e).__name__ in _OOM_ERRORS
            session.model = session.timer = None
            traceback.print_exc()
            reply = {"ok": False, "kind": "oom" if oom else "error", "error": f"{type(e).__name__}: {e}"}
        protocol.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
