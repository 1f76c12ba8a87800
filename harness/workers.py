"""Worker processes: one per framework x device x thread count, driven by the parent over a pipe.

Why processes: frameworks never share thread pools or allocators, a thread count is set before a
framework loads (BLAS and OpenMP read it from the environment), and a crash, a hang or running out
of memory ends one worker, not the run. The parent (runner.py) interleaves rounds across workers.

The protocol is one JSON object per line. The worker keeps its real stdout for the protocol and
points file descriptor 1 at stderr, so that whatever a framework prints cannot corrupt it; stderr
goes to a file whose tail is reported when a worker dies.

    parent -> worker                         worker -> parent
    {"op": "setup", "framework", "threads"}  {"ok", "threads_applied", "versions"}
    {"op": "peak", "device"}                 {"ok", "gflops"}
    {"op": "open", "cell", "timing", ...}    {"ok", "first_call_s", "iters_per_sample", "check", ...}
    {"op": "sample", "k"}                    {"ok", "samples_s"}
    {"op": "close"}                          {"ok", "peak_memory_bytes", "memory_kind"}
    {"op": "exit"}

A failure answers {"ok": false, "kind": "skipped" | "error" | "oom", "error": "..."}.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

__all__ = ["Worker", "WorkerDied", "WorkerTimeout", "thread_environment", "main"]

_OOM_ERRORS = ("OutOfMemoryError", "ResourceExhaustedError")  # torch.cuda's and TensorFlow's

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                "NUMEXPR_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def thread_environment(threads: int) -> dict[str, str]:
    """The environment that gives every BLAS and OpenMP pool in a worker `threads` threads."""
    env = {var: str(threads) for var in _THREAD_VARS}
    env["TF_NUM_INTEROP_THREADS"] = "1"
    return env


# NOTE: after a GEMM, OpenBLAS's threads spin for 2^28 cycles (~0.1 s) before they sleep. Workers
# take turns, so a worker's spinning threads stole the cores of the next one: torch's mnist_cnn
# forward_backward at batch 128 measured 73 ms beside the reference, 38 ms with this set to 2^20
# cycles (~0.4 ms), which cost the reference nothing measurable. A user's own setting wins.
SPIN_ENV = {"OPENBLAS_THREAD_TIMEOUT": "20"}


class WorkerDied(RuntimeError):
    """The worker process ended; `kind` is 'crashed' or 'oom', `stderr_tail` its last words."""

    def __init__(self, message: str, kind: str, stderr_tail: str) -> None:
        super().__init__(message)
        self.kind, self.stderr_tail = kind, stderr_tail


class WorkerTimeout(RuntimeError):
    def __init__(self, message: str, stderr_tail: str) -> None:
        super().__init__(message)
        self.stderr_tail = stderr_tail


class Worker:
    """The parent's handle on one worker process."""

    def __init__(self, framework: str, device: str, threads: int, extra_env: dict[str, str] | None = None) -> None:
        self.framework, self.device, self.threads = framework, device, threads
        env = {**SPIN_ENV, **os.environ, **thread_environment(threads), **(extra_env or {})}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # oneDNN changes TensorFlow's CPU speed ~2x here: never leave it to a default nobody records.
        env.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
        self._stderr = tempfile.TemporaryFile(mode="w+b")
        # A session of its own: a Ctrl-C at the terminal reaches the parent only, which then stops
        # the workers itself, after keeping every finished cell.
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "harness.workers"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, env=env, start_new_session=True,
        )
        self._buffer = b""
        self.setup: dict = {}

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def stderr_tail(self, limit: int = 2000) -> str:
        self._stderr.flush()
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - limit))
        return self._stderr.read().decode("utf-8", "replace")

    def request(self, message: dict, timeout_s: float) -> dict:
        """Send one message and wait for its answer; WorkerTimeout or WorkerDied if none comes."""
        try:
            self._proc.stdin.write(json.dumps(message).encode() + b"\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None
        deadline = time.monotonic() + timeout_s
        out = self._proc.stdout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                tail = self.stderr_tail()
                self.kill()
                raise WorkerTimeout(f"no answer to {message['op']!r} within {timeout_s:.0f} s", tail)
            ready, _, _ = select.select([out], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(out.fileno(), 1 << 16)
                if not chunk:
                    raise self._died()
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def _died(self) -> WorkerDied:
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self._proc.returncode
        tail = self.stderr_tail()
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            # The kernel's OOM killer sends SIGKILL; nothing else here does.
            kind = "oom" if -code == signal.SIGKILL else "crashed"
            why = " (killed: out of memory?)" if kind == "oom" else ""
            return WorkerDied(f"worker died from {name}{why}", kind, tail)
        return WorkerDied(f"worker exited with status {code}", "crashed", tail)

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._proc.stdin.write(b'{"op": "exit"}\n')
                self._proc.stdin.flush()
                self._proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self._stderr.close()


# --------------------------------------------------------------------------------------------
# the worker side


def _peak_rss_reset() -> None:
    """Reset the process's peak RSS (Linux 4.0+), so that each cell's peak is its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (ImportError, OSError):
        return None


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

    def setup(self, msg: dict) -> dict:
        from . import adapters

        self.adapter = adapters.get(msg["framework"])
        status = self.adapter.availability()
        applied = self.adapter.configure_threads(int(msg["threads"])) if status.available else {}
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

        from . import checks
        from .adapters.base import Unavailable
        from .timing import Timer

        cell, timing = msg["cell"], msg["timing"]
        spec = ri.models.get(cell["model"])
        seed = int(msg.get("seed", 0))
        weights = ri.init_weights(spec, seed, np.float64)
        _peak_rss_reset()
        try:
            self.model = self.adapter.build(spec, weights, device=cell["device"], dtype=cell["dtype"],
                                            mode=cell["mode"])
            check = None
            if msg.get("verify"):
                # The check of `bench check`, at its batch size: equivalence does not depend on the
                # batch, and a large batch only adds near-ties (see checks._batches).
                key = (cell["model"], cell["device"], cell["dtype"], cell["mode"])
                if key not in self.verdicts:
                    if cell["model"] not in self.references:
                        self.references[cell["model"]] = checks.ReferenceRun(spec, weights, checks.CHECK_BATCH,
                                                                             seed, 3)
                    result = checks.check_model(self.model, self.references[cell["model"]], repeats=1,
                                                framework=self.adapter.name)
                    worst = result.worst
                    self.verdicts[key] = {"status": result.status, "first_divergence": result.first_divergence,
                                          "worst_tensor": worst.tensor if worst else None,
                                          "worst_normwise": worst.normwise if worst else None,
                                          "reason": result.reason,
                                          # every tensor, for the report's equivalence plot
                                          "tensors": result.to_dict()["tensors"]}
                check = self.verdicts[key]
            x, y = ri.random_batch(spec, cell["batch_size"], seed + 100, np.float64)
            phase = self.model.timing_phase(cell["phase"], x, y)
            reset = getattr(self.model, "reset_device_memory", None)
            if reset is not None:  # so that the peak is this phase's, not the check's
                reset()
        except Unavailable as e:
            self.model = None
            return {"ok": False, "kind": "skipped", "error": str(e)}
        self.timer = Timer(phase)
        first = self.timer.first_call()
        self.timer.warmup(int(timing.get("warmup", 3)))
        iters = self.timer.calibrate(float(timing.get("min_sample_s", 0.01)))
        return {"ok": True, "first_call_s": first, "iters_per_sample": iters, "check": check, "how": phase.how,
                "knobs": self.model.knobs(), "flops": spec.phase_flops(cell["phase"], cell["batch_size"])}

    def sample(self, msg: dict) -> dict:
        if self.timer is None:
            return {"ok": False, "kind": "error", "error": "sample before open"}
        # One untimed call first: the other workers ran since this one's last round, and their work
        # evicted its caches and let its thread pool fall asleep.
        self.timer.warmup(1)
        return {"ok": True, "samples_s": self.timer.sample(int(msg["k"]))}

    def close(self, msg: dict) -> dict:
        peak, kind = _peak_rss_bytes(), "rss"
        device_memory = getattr(self.model, "device_memory", None)
        if device_memory is not None:
            found = device_memory()
            if found is not None:
                peak, kind = found
        self.model = self.timer = None
        return {"ok": True, "peak_memory_bytes": peak, "memory_kind": kind}


def main() -> None:
    """The worker's loop: read a request, answer it, until 'exit' or the parent goes away."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from frameworks go to stderr, never into the protocol
    sys.stdout = sys.stderr
    session = _Session()
    handlers = {"setup": session.setup, "peak": session.peak, "open": session.open,
                "sample": session.sample, "close": session.close}
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["op"] == "exit":
            break
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
