"""Faulty adapters: the reference adapter with one way of failing, for the end-to-end tests of `bench run`.

Each adapter is harness.adapters.reference with one thing changed, and the change only bites when
the phase is timed, inside the `run` callable of the Phase that `timing_phase` returns: building the
model and the equivalence check (which go through forward / loss_and_grads / train_step) pass, so a
failure can only come from the timing, in the worker process.

- CrashingAdapter: the worker process dies from SIGSEGV, after printing "faulty: about to crash
  (pid N) in the first call" to stderr (the runner must keep it in the cell's stderr_tail).
- HangingAdapter: the timed call never returns (sleeps for an hour).
- OomAdapter: the timed call raises MemoryError, as NumPy does when asked for 512 TiB (nothing is
  allocated: no address space is that large).
- UnavailableAdapter: the framework is not installed here ("faulty: not installed here").
- LateCrashingAdapter, LateOomAdapter: the same faults, but only in the calls that take samples
  (Timer.sample, the interleaved rounds), so that the first call, warm-up and calibration pass and
  the failure comes in the middle of a group's rounds.

tests/harness/test_run.py registers them through the environment variable FWBENCH_ADAPTERS, which
the worker processes inherit, as `tests.harness.faulty:<Class>`.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time

import numpy as np

from harness.adapters.base import Availability, Unavailable
from harness.adapters.reference import ReferenceAdapter, ReferenceModel

__all__ = [
    "CRASH_LINE",
    "UNAVAILABLE_REASON",
    "IN_SAMPLE",
    "NOT_IN_SAMPLE",
    "FaultyModel",
    "CrashingAdapter",
    "HangingAdapter",
    "OomAdapter",
    "UnavailableAdapter",
    "LateCrashingAdapter",
    "LateOomAdapter",
    "ADAPTERS",
]

CRASH_LINE = "faulty: about to crash"
UNAVAILABLE_REASON = "faulty: not installed here"
# Where a fault struck, in its stderr line or MemoryError message.
IN_SAMPLE = "in a sample"
NOT_IN_SAMPLE = "in the first call"


def _crash(where: str) -> None:
    sys.stderr.write(f"{CRASH_LINE} (pid {os.getpid()}) {where}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(60)  # never reached: the signal's default action ends the process


def _hang(where: str) -> None:
    time.sleep(3600)


def _oom(where: str) -> None:
    # 2**46 float64 = 512 TiB: NumPy raises its _ArrayMemoryError (a MemoryError) without allocating.
    try:
        np.empty((1 << 46,), np.float64)
    except MemoryError as e:
        raise MemoryError(f"{e} ({where})") from e


def _in_sample() -> bool:
    """Whether this call comes from harness.timing.Timer.sample (a sample), not the first call,
    the warm-up or the calibration."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "sample" and frame.f_globals.get("__name__") == "harness.timing":
            return True
        frame = frame.f_back
    return False


class FaultyModel(ReferenceModel):
    """The reference model whose timed calls do `fault()` instead of their work (with `late`, only
    the calls that take samples)."""

    fault = staticmethod(lambda where: None)
    late = False

    def timing_phase(self, phase, x, y):
        timed = super().timing_phase(phase, x, y)
        fault, late, work = self.fault, self.late, timed.run

        def run():
            in_sample = _in_sample()
            if late and not in_sample:
                return work()
            return fault(IN_SAMPLE if in_sample else NOT_IN_SAMPLE)

        return dataclasses.replace(timed, run=run, how=f"faulty: {timed.how}")


class _FaultyAdapter(ReferenceAdapter):
    model_class: type[FaultyModel] = FaultyModel

    def build(self, spec, weights, *, device="cpu", dtype="float32", mode="eager"):
        reason = self.unavailable_reason(device, dtype, mode)
        if reason:
            raise Unavailable(reason)
        return self.model_class(spec, weights, dtype)


class _CrashingModel(FaultyModel):
    fault = staticmethod(_crash)


class _HangingModel(FaultyModel):
    fault = staticmethod(_hang)


class _OomModel(FaultyModel):
    fault = staticmethod(_oom)


class _LateCrashingModel(_CrashingModel):
    late = True


class _LateOomModel(_OomModel):
    late = True


class CrashingAdapter(_FaultyAdapter):
    model_class = _CrashingModel


class HangingAdapter(_FaultyAdapter):
    model_class = _HangingModel


class OomAdapter(_FaultyAdapter):
    model_class = _OomModel


class LateCrashingAdapter(_FaultyAdapter):
    model_class = _LateCrashingModel


class LateOomAdapter(_FaultyAdapter):
    model_class = _LateOomModel


class UnavailableAdapter(ReferenceAdapter):
    def availability(self) -> Availability:
        return Availability(False, None, UNAVAILABLE_REASON)


# name -> "module:Class", as FWBENCH_ADAPTERS spells it.
ADAPTERS = {
    "crashing": f"{__name__}:CrashingAdapter",
    "hanging": f"{__name__}:HangingAdapter",
    "oom": f"{__name__}:OomAdapter",
    "unavailable": f"{__name__}:UnavailableAdapter",
    "late_crashing": f"{__name__}:LateCrashingAdapter",
    "late_oom": f"{__name__}:LateOomAdapter",
}
