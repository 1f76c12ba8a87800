"""Busy-waiting adapters with a known cost, for the end-to-end tests of `bench compare`.

Each is the reference adapter (so that building the model and the equivalence check pass) whose
timed call, instead of the model's work, spins on time.perf_counter for a known duration:
BASE_S[phase] seconds, times a slowdown factor for the frameworks named in the environment variable
FWBENCH_TEST_SLOWDOWN ("name=factor,name=factor"; the workers inherit it). A busy-wait, not
sleep: it holds a core, like the work it stands for, and lasts exactly as long on any machine
that gives it one, so that a planted 30% slowdown is a 30% slowdown whatever the machine's speed.

tests/harness/test_compare.py registers two of them, 'steady' and 'slowed', through FWBENCH_ADAPTERS.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from harness.adapters.base import Unavailable
from harness.adapters.reference import ReferenceAdapter, ReferenceModel

__all__ = ["SLOWDOWN_VAR", "BASE_S", "BusyAdapter", "ADAPTERS"]

SLOWDOWN_VAR = "FWBENCH_TEST_SLOWDOWN"
# With this set to a Python executable, the slowdown applies only in workers that it runs (bench ab's B).
SLOWDOWN_FOR_VAR = "FWBENCH_TEST_SLOWDOWN_FOR"
BASE_S = {"forward": 0.0006, "forward_backward": 0.0012, "train_step": 0.0015}


def _factor(framework: str) -> float:
    only = os.environ.get(SLOWDOWN_FOR_VAR)
    if only and os.path.abspath(sys.executable) != os.path.abspath(only):  # bench ab: one side only
        return 1.0
    for item in filter(None, os.environ.get(SLOWDOWN_VAR, "").split(",")):
        name, _, factor = item.partition("=")
        if name.strip() == framework:
            return float(factor)
    return 1.0


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class _BusyModel(ReferenceModel):
    framework = ""

    def timing_phase(self, phase, x, y):
        timed = super().timing_phase(phase, x, y)
        seconds = BASE_S[phase] * _factor(self.framework)
        return dataclasses.replace(timed, run=lambda: _spin(seconds), prepare=None,
                                   how=f"busy-wait of {seconds * 1e3:.3f} ms")


class BusyAdapter(ReferenceAdapter):
    def build(self, spec, weights, *, device="cpu", dtype="float32", mode="eager"):
        reason = self.unavailable_reason(device, dtype, mode)
        if reason:
            raise Unavailable(reason)
        model = _BusyModel(spec, weights, dtype)
        model.framework = self.name  # the registered name: 'steady' or 'slowed'
        return model


class _JitteryModel(_BusyModel):
    def timing_phase(self, phase, x, y):
        import random

        timed = super().timing_phase(phase, x, y)
        rng = random.Random(0)
        base = BASE_S[phase]
        return dataclasses.replace(timed, run=lambda: _spin(base * rng.uniform(0.5, 1.5)),
                                   how="a busy-wait of a random length, +-50%")


class JitteryAdapter(BusyAdapter):
    """A busy-wait whose every call lasts a random 50-150% of BusyAdapter's: a cell that stays loose."""

    def build(self, spec, weights, *, device="cpu", dtype="float32", mode="eager"):
        model = super().build(spec, weights, device=device, dtype=dtype, mode=mode)
        model.__class__ = _JitteryModel
        return model


ADAPTERS = {"steady": f"{__name__}:BusyAdapter", "slowed": f"{__name__}:BusyAdapter",
            "jittery": f"{__name__}:JitteryAdapter"}


def environment(repo, slowdown: str | None = None, only_for: str | None = None) -> dict[str, str]:
    """This process's environment with the repository importable, these adapters registered and
    `slowdown` planted ("name=factor"), in the workers of the interpreter `only_for` alone if given."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(repo), env.get("PYTHONPATH"))))
    env["FWBENCH_ADAPTERS"] = ",".join(f"{k}={v}" for k, v in ADAPTERS.items())
    env.pop(SLOWDOWN_VAR, None)
    env.pop(SLOWDOWN_FOR_VAR, None)
    if slowdown:
        env[SLOWDOWN_VAR] = slowdown
    if only_for:
        env[SLOWDOWN_FOR_VAR] = only_for
    return env


# --------------------------------------------------------------------------------------------
# quiet neighbours (tests/harness/test_quiet.py): fixed work, and a neighbour whose threads spin


class _WorkModel(ReferenceModel):
    """Fixed CPU work on every core the worker has (not a fixed duration): a matrix product in
    NumPy's BLAS with the cell's threads, as a framework's intra-op pool does its work. It takes
    longer whenever another process gets a share of the cores."""

    def timing_phase(self, phase, x, y):
        import numpy as np

        timed = super().timing_phase(phase, x, y)
        a = np.random.default_rng(0).standard_normal((320, 320))
        out = np.empty_like(a)
        return dataclasses.replace(timed, run=lambda: np.matmul(a, a, out=out), prepare=None,
                                   how="a 320 x 320 float64 matrix product")


class WorkAdapter(ReferenceAdapter):
    """The reference adapter whose timed call is fixed CPU work on every core."""

    def build(self, spec, weights, *, device="cpu", dtype="float32", mode="eager"):
        reason = self.unavailable_reason(device, dtype, mode)
        if reason:
            raise Unavailable(reason)
        return _WorkModel(spec, weights, dtype)


def spin_all_cores() -> None:
    """Start one thread per core that never stops hashing, outside the GIL (hashlib releases it for
    large buffers): a thread pool that spins and never sleeps, the worst neighbour there is."""
    import hashlib
    import threading

    block = bytes(1 << 20)

    def spin() -> None:
        while True:
            hashlib.sha256(block).digest()

    for _ in range(os.cpu_count() or 2):
        threading.Thread(target=spin, daemon=True).start()


class SpinningAdapter(WorkAdapter):
    """A framework whose thread pools spin from the moment it builds a model until its worker exits."""

    def build(self, spec, weights, *, device="cpu", dtype="float32", mode="eager"):
        model = super().build(spec, weights, device=device, dtype=dtype, mode=mode)
        if not getattr(SpinningAdapter, "_spinning", False):
            SpinningAdapter._spinning = True
            spin_all_cores()
        return model


QUIET_ADAPTERS = {"work": f"{__name__}:WorkAdapter", "spinner": f"{__name__}:SpinningAdapter"}
