"""A torch adapter with a planted, exact slowdown, for scripts/validate_verdicts.py.

'torch-planted' is PyTorch's own adapter whose timed call, after the real work, busy-waits for
FWBENCH_PLANTED_SLOWDOWN (a fraction, e.g. 0.10) of that call's own duration: every cell becomes
exactly that much slower, whatever its size, and with the variable unset it is torch, unchanged.
A busy-wait, not a sleep: it holds the core, like the work it stands for. Register it with
FWBENCH_ADAPTERS="torch-planted=planted_slowdown:PlantedTorchAdapter" and this folder on PYTHONPATH
(the workers inherit both).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from harness.adapters.torch_adapter import TorchAdapter

VAR = "FWBENCH_PLANTED_SLOWDOWN"
# With this set to a Python executable, the slowdown is planted only in the workers it runs: B of a
# `bench ab`, whose two sides share every other variable.
FOR_VAR = "FWBENCH_PLANTED_FOR"


def _fraction() -> float:
    only = os.environ.get(FOR_VAR)
    if only and os.path.abspath(sys.executable) != os.path.abspath(only):
        return 0.0
    return float(os.environ.get(VAR) or 0)


def _slowed(run, fraction: float):
    clock = time.perf_counter

    def call():
        start = clock()
        out = run()
        end = clock() + (clock() - start) * fraction
        while clock() < end:
            pass
        return out

    return call


class PlantedTorchAdapter(TorchAdapter):
    def build(self, spec, weights, *, device="cpu", dtype="float32", mode="eager"):
        model = super().build(spec, weights, device=device, dtype=dtype, mode=mode)
        fraction = _fraction()
        if fraction:
            inner = model.timing_phase

            def timing_phase(phase, x, y):
                timed = inner(phase, x, y)
                return dataclasses.replace(timed, run=_slowed(timed.run, fraction),
                                           how=f"{timed.how}, then {fraction:.0%} of its time busy-waiting")

            model.timing_phase = timing_phase
        return model
