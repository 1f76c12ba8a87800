"""The parent's handle on a worker process: start it, send a request, wait for the answer or its death.

Why processes: frameworks never share thread pools or allocators, a thread count is set before a
framework loads (BLAS and OpenMP read it from the environment), and a crash, a hang or running out
of memory ends one worker, not the run. The parent (runner.py) interleaves rounds across workers;
the worker's side, and the protocol between the two, are in worker_main.py.

The protocol is one JSON object per line. The worker keeps its real stdout for the protocol and
points file descriptor 1 at stderr, so that whatever a framework prints cannot corrupt it; stderr
goes to a file whose tail is reported when a worker dies.
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

from .metadata import THREAD_COUNT_VARS

__all__ = ["Pool", "Worker", "WorkerDied", "WorkerTimeout", "thread_environment", "SPIN_ENV"]



def thread_environment(threads: int) -> dict[str, str]:
    """The environment that gives every BLAS and OpenMP pool in a worker `threads` threads."""
    env = {var: str(threads) for var in THREAD_COUNT_VARS}
    env["TF_NUM_INTEROP_THREADS"] = "1"
    return env


# NOTE: after a GEMM, OpenBLAS's threads spin for 2^28 cycles (~0.1 s) before they sleep. Workers
# take turns, so a worker's spinning threads stole the cores of the next one: torch's mnist_cnn
# forward_backward at batch 128 measured 73 ms beside the reference, 38 ms with this set to 2^20
# cycles (~0.4 ms), which cost the reference nothing measurable. A user's own setting wins.
SPIN_ENV = {"OPENBLAS_THREAD_TIMEOUT": "20"}


def code_path() -> str:
    """A folder holding this fwbench's own packages (harness, reference_impl) and nothing else, for
    another environment's interpreter to import them from without seeing this environment's
    site-packages (bench ab: each side's frameworks are its own). Made once per process."""
    global _CODE_PATH
    if _CODE_PATH is None:
        from pathlib import Path

        folder = Path(tempfile.mkdtemp(prefix="fwbench-code-"))
        for package in ("harness", "reference_impl"):
            source = Path(__import__(package).__file__).resolve().parent
            (folder / package).symlink_to(source, target_is_directory=True)
        _CODE_PATH = str(folder)
    return _CODE_PATH


_CODE_PATH: str | None = None


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

    def __init__(self, framework: str, device: str, threads: int, extra_env: dict[str, str] | None = None, *,
                 python: str | None = None) -> None:
        self.framework, self.device, self.threads = framework, device, threads
        env = {**SPIN_ENV, **os.environ, **thread_environment(threads), **(extra_env or {}),
               "FWBENCH_PARENT_PID": str(os.getpid())}
        if python is not None:  # another environment's interpreter, running this fwbench's code (bench ab)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, (code_path(), env.get("PYTHONPATH"))))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # oneDNN changes TensorFlow's CPU speed ~2x here: never leave it to a default nobody records.
        env.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
        self._stderr = tempfile.TemporaryFile(mode="w+b")
        # A session of its own: a Ctrl-C at the terminal reaches the parent only, which then stops
        # the workers itself, after keeping every finished cell.
        self._proc = subprocess.Popen(
            [python or sys.executable, "-m", "harness.worker_main"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, env=env, start_new_session=True,
        )
        self._buffer = b""
        self.setup: dict = {}
        self.paused = False

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    @property
    def pid(self) -> int:
        return self._proc.pid

    def pause(self) -> None:
        """Stop the worker (SIGSTOP to its whole process group: every thread of every pool) while
        another is timed: a stopped process cannot spin, whatever its thread pools were doing."""
        if not self.paused and self.alive:
            try:
                os.killpg(self._proc.pid, signal.SIGSTOP)
            except ProcessLookupError:  # it has just died: the next request says how
                return
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            try:
                os.killpg(self._proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def stderr_tail(self, limit: int = 2000) -> str:
        self._stderr.flush()
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - limit))
        return self._stderr.read().decode("utf-8", "replace")

    def request(self, message: dict, timeout_s: float) -> dict:
        """Send one message and wait for its answer; WorkerTimeout or WorkerDied if none comes."""
        self.resume()
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
        self.resume()
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def close(self) -> None:
        self.resume()
        if self._proc.poll() is None:
            try:
                self._proc.stdin.write(b'{"op": "exit"}\n')
                self._proc.stdin.flush()
                self._proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self._stderr.close()


class Pool:
    """A run's workers: one per (framework, device, threads), started when first needed, restarted after a
    death; `focus` lets one run while the others are stopped."""

    def __init__(self, extra_env: dict[str, str] | None) -> None:
        self._workers: dict[tuple, Worker] = {}
        self._setup: dict[tuple, dict] = {}
        self.extra_env = extra_env

    def get(self, cell, timeout_s: float, side: str | None = None, python: str | None = None) -> tuple[Worker, dict]:
        """The worker of a cell (of `side`, run by `python`, for `bench ab`), started when needed."""
        key = (side, cell.framework, cell.device, cell.threads)
        worker = self._workers.get(key)
        if worker is None or not worker.alive:
            if worker is not None:
                worker.close()
            worker = Worker(cell.framework, cell.device, cell.threads, self.extra_env, python=python)
            self._workers[key] = worker
            self._setup[key] = worker.request({"op": "setup", "framework": cell.framework,
                                               "threads": cell.threads}, timeout_s)
        return worker, self._setup[key]

    def focus(self, worker: Worker) -> None:
        """Let `worker` run alone: every other worker of the run is stopped until its own turn."""
        for other in self._workers.values():
            if other is not worker:
                other.pause()
        worker.resume()

    def discard(self, cell, side: str | None = None) -> None:
        worker = self._workers.pop((side, cell.framework, cell.device, cell.threads), None)
        if worker is not None:
            worker.kill()
            worker.close()

    def close(self) -> None:
        for worker in self._workers.values():
            worker.close()
        self._workers.clear()
