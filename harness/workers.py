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

__all__ = ["Pool", "Worker", "WorkerDied", "WorkerTimeout", "thread_environment", "worker_env",
           "SPIN_ENV", "ALLOCATOR_ENV", "WORKER_DEFAULTS"]



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

# NOTE: glibc serves an allocation above its mmap threshold (128 KiB at first) with a fresh mmap and
# returns it with munmap, and then raises the threshold to the size it freed: whether a cell's large
# tensors come from the heap (reused) or from fresh mmaps (every page faulted in and zeroed again, on
# every call) depends on what the process allocated and freed before. torch's mnist_cnn
# forward_backward at batch 128, one thread (AMD EPYC, 2 vCPUs, 2026-12-07), in 11 fresh processes:
# 46.3-48.5 ms in 3, 66.8-70.0 ms in 8, for the process's whole life; with the threshold set (which
# turns the adjustment off, mallopt(3)) and the heap kept rather than trimmed: 46.1-47.8 ms in 5 of 5.
# In `bench ab` that luck of a pass was what kept a planted 5% from being found. glibc only; a user's
# own setting wins.
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}
WORKER_DEFAULTS = {**SPIN_ENV, **ALLOCATOR_ENV}  # what every worker gets unless the environment says otherwise


def worker_env() -> dict[str, str]:
    """WORKER_DEFAULTS as the workers get them now: the environment's own value where it has one."""
    return {name: os.environ.get(name, value) for name, value in WORKER_DEFAULTS.items()}


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
        env = {**WORKER_DEFAULTS, **os.environ, **thread_environment(threads), **(extra_env or {}),
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
        self._exit_sent = False

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
        self.send(message)
        deadline = time.monotonic() + timeout_s
        reply = self._take_reply()  # an answer already read with an earlier one
        while reply is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self.timed_out(message, timeout_s)
            ready, _, _ = select.select([self], [], [], min(left, 1.0))
            if ready:
                reply = self.read_reply()
        return reply

    def fileno(self) -> int:
        """The worker's stdout, where its answers come: a Worker can be handed to select.select."""
        return self._proc.stdout.fileno()

    def read_reply(self) -> dict | None:
        """Read what the worker has written (call when select says it is readable) and return the
        answer once a whole one has come, else None; WorkerDied if its stdout has ended."""
        self._read()
        return self._take_reply()

    def send(self, message: dict) -> None:
        """Send one message (the worker is let run first); its answer is read by request or Pool.together."""
        self.resume()
        try:
            self._proc.stdin.write(json.dumps(message).encode() + b"\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None

    def _read(self) -> None:
        """Read what the worker has written (call when its stdout is readable); WorkerDied at its end."""
        chunk = os.read(self.fileno(), 1 << 16)
        if not chunk:
            raise self._died()
        self._buffer += chunk

    def _take_reply(self) -> dict | None:
        if b"\n" not in self._buffer:
            return None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def timed_out(self, message: dict, timeout_s: float) -> WorkerTimeout:
        """Kill a worker that gave no answer to `message` in time; the WorkerTimeout that says so."""
        tail = self.stderr_tail()
        self.kill()
        return WorkerTimeout(f"no answer to {message['op']!r} within {timeout_s:.0f} s", tail)

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

    def send_exit(self) -> None:
        """Tell the worker to exit, without waiting (Pool.close ends its workers side by side)."""
        self.resume()
        if self._proc.poll() is None and not self._exit_sent:
            self._exit_sent = True
            try:
                self._proc.stdin.write(b'{"op": "exit"}\n')
                self._proc.stdin.flush()
            except OSError:
                self.kill()

    def close(self) -> None:
        self.send_exit()
        if self._proc.poll() is None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
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
            self._new(key, python)
            self._setup[key] = self._workers[key].request(self._setup_message(key), timeout_s)
        return self._workers[key], self._setup[key]

    def _new(self, key: tuple, python: str | None) -> Worker:
        old = self._workers.pop(key, None)
        if old is not None:
            old.close()
        side, framework, device, threads = key
        self._workers[key] = worker = Worker(framework, device, threads, self.extra_env, python=python)
        return worker

    @staticmethod
    def _setup_message(key: tuple) -> dict:
        return {"op": "setup", "framework": key[1], "threads": key[3]}

    def start(self, cells, timeout_s: float, at_once: int) -> None:
        """Start the workers of `cells` ((cell, side, python) triples) that are not running, their
        setups (the framework's import: seconds for TensorFlow) `at_once` at a time. Only for time
        that is not measured: the workers run side by side. A worker that fails to start is left
        for `get` to start again, which then reports why."""
        keys: dict[tuple, str | None] = {}
        for cell, side, python in cells:
            key = (side, cell.framework, cell.device, cell.threads)
            worker = self._workers.get(key)
            if worker is None or not worker.alive:
                keys.setdefault(key, python)
        started = {key: self._new(key, python) for key, python in keys.items()}
        replies = self.together([(worker, self._setup_message(key), timeout_s) for key, worker in started.items()],
                                at_once)
        for key, worker in started.items():
            reply = replies.get(worker)
            if isinstance(reply, dict):
                self._setup[key] = reply
            else:
                self._workers.pop(key).close()

    def workers_of(self, cells) -> list[tuple[Worker, list]]:
        """The running workers of `cells` ((cell, side) pairs), each with its cells."""
        found: dict[tuple, list] = {}
        for cell, side in cells:
            found.setdefault((side, cell.framework, cell.device, cell.threads), []).append(cell)
        return [(self._workers[key], mine) for key, mine in found.items()
                if key in self._workers and self._workers[key].alive]

    def together(self, jobs: list[tuple[Worker, dict, float]], at_once: int) -> dict:
        """Send each (worker, message, timeout_s) of `jobs`, at most `at_once` workers busy at a time,
        each given timeout_s from when it is sent, and wait for every answer: {worker: its reply, or
        the WorkerDied or WorkerTimeout that came instead}. Only for work that is not timed (start-up,
        checks): the workers run side by side, none stopped."""
        waiting = list(jobs)
        busy: dict[Worker, tuple[dict, float, float]] = {}  # worker -> (its message, its timeout, its deadline)
        replies: dict = {}
        while waiting or busy:
            while waiting and len(busy) < max(1, at_once):
                worker, message, timeout_s = waiting.pop(0)
                try:
                    worker.send(message)
                except WorkerDied as e:
                    replies[worker] = e
                    continue
                busy[worker] = (message, timeout_s, time.monotonic() + timeout_s)
            now = time.monotonic()
            for worker, (message, timeout_s, deadline) in list(busy.items()):
                if now >= deadline:
                    del busy[worker]
                    replies[worker] = worker.timed_out(message, timeout_s)
            if not busy:
                continue
            wait = max(0.0, min(deadline for _, _, deadline in busy.values()) - now)
            ready, _, _ = select.select(list(busy), [], [], min(wait, 1.0))
            for worker in ready:
                try:
                    reply = worker.read_reply()
                except WorkerDied as e:
                    reply = e
                if reply is not None:
                    del busy[worker]
                    replies[worker] = reply
        return replies

    def focus(self, worker: Worker) -> None:
        """Let `worker` run alone: every other worker of the run is stopped until its own turn."""
        for other in self._workers.values():
            if other is not worker:
                other.pause()
        worker.resume()

    def forget(self, worker: Worker) -> None:
        """Drop a worker that died or was killed: the next `get` of its cells starts another."""
        for key, known in list(self._workers.items()):
            if known is worker:
                del self._workers[key]
                worker.kill()
                worker.close()

    def discard(self, cell, side: str | None = None) -> None:
        worker = self._workers.pop((side, cell.framework, cell.device, cell.threads), None)
        if worker is not None:
            worker.kill()
            worker.close()

    def close(self) -> None:
        """End every worker: all are told to exit first, then each is waited for."""
        for worker in self._workers.values():
            worker.send_exit()
        for worker in self._workers.values():
            worker.close()
        self._workers.clear()
