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
import time

from harness.adapters.base import Unavailable
from harness.adapters.reference import ReferenceAdapter, ReferenceModel

__all__ = ["SLOWDOWN_VAR", "BASE_S", "BusyAdapter", "ADAPTERS"]

SLOWDOWN_VAR = "FWBENCH_TEST_SLOWDOWN"
BASE_S = {"forward": 0.0006, "forward_backward": 0.0012, "train_step": 0.0015}


def _factor(framework: str) -> float:
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


ADAPTERS = {"steady": f"{__name__}:BusyAdapter", "slowed": f"{__name__}:BusyAdapter"}
