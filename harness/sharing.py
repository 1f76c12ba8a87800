"""How a worker shares the cores with the others while nothing is timed (worker_main's prepare).

Before a pass is timed, its workers check and build side by side, as many at once as there are
cores. Two things then waste them. Thread pools larger than their share spin against each other:
two workers with two threads each on 2 cores took torch's checks from 2.2 s alone to 7.0 s beside
JAX's (AMD EPYC, 2026-12-07). And a process its adapter pinned to fewer CPUs (JAX, which has no
thread-count setting, at one thread) keeps its CPU while another idles: JAX's and Keras-on-JAX's
checks took 72 and 71 s side by side, both on CPU 0, and 29 s each with every CPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["side_by_side", "every_cpu"]


@contextlib.contextmanager
def side_by_side(threads: int, cpus: set[int] | None) -> Iterator[None]:
    """Meanwhile: the BLAS and OpenMP pools (NumPy's, torch's) at `threads` each, and every thread of
    the process on `cpus`. TensorFlow's and XLA's pools are sized once, at start, and stay as they are."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads), every_cpu(cpus):
        yield


@contextlib.contextmanager
def every_cpu(cpus: set[int] | None) -> Iterator[None]:
    """Every thread of this process on `cpus` (those it may use) meanwhile, then each back on the
    CPUs the process had, the threads started meanwhile too. None, or a process not pinned: nothing."""
    pinned = os.sched_getaffinity(0) if cpus is not None else None
    if pinned is None or pinned == cpus:
        yield
        return
    _pin_threads(cpus)
    try:
        yield
    finally:
        _pin_threads(pinned)


def _pin_threads(cpus: set[int]) -> None:
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # a thread that ended meanwhile
            pass
