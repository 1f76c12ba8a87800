"""Planted training bugs: the reference adapter with one mistake each that only a training run shows.

Each one passes `bench check`'s usual cells at a glance (forward, loss and gradients are the
reference's own); the mistake is in how train_step is driven over many steps:

- DriftingAdapter: from its 41st step on (step index 40) the SGD step is 1% too large, as a
  learning-rate schedule the spec does not have would make it. It still learns to the same accuracy.
  The loss of step 40 is computed before that update, so the first wrong loss is step 41's.
- LaggingAdapter: trains on the batch it was handed at the previous call (a prefetch off by one),
  so from step 1 on every loss is another batch's.
- StalledAdapter: stops updating after 5 steps (an optimizer whose state froze): it stops learning.
- CrashingAdapter: its worker dies from SIGSEGV at its 11th step: the others' results must stand.

tests/harness/test_train.py registers them through FWBENCH_ADAPTERS as `tests.harness.planted_train:<Class>`.
"""

from __future__ import annotations

import os
import signal

from harness.adapters.reference import ReferenceAdapter, ReferenceModel

DRIFT_FROM_STEP = 40
STALL_AFTER = 5


class _Counting(ReferenceModel):
    def set_optimizer(self, optimizer) -> None:
        super().set_optimizer(optimizer)
        self.calls = 0


class DriftingModel(_Counting):
    def train_step(self, x, y):
        if self.calls == DRIFT_FROM_STEP:
            self._optimizer.lr *= 1.01
        self.calls += 1
        return super().train_step(x, y)


class LaggingModel(_Counting):
    def train_step(self, x, y):
        previous = getattr(self, "_previous", None)
        self._previous = (x.copy(), y.copy())
        if previous is not None:
            x, y = previous
        return super().train_step(x, y)


class StalledModel(_Counting):
    def train_step(self, x, y):
        self.calls += 1
        if self.calls > STALL_AFTER:
            loss, _ = self.loss_and_grads(x, y)
            return loss
        return super().train_step(x, y)


class CrashingModel(_Counting):
    def train_step(self, x, y):
        self.calls += 1
        if self.calls > 10:
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().train_step(x, y)


class CrashingAdapter(ReferenceAdapter):
    model_class = CrashingModel


class DriftingAdapter(ReferenceAdapter):
    model_class = DriftingModel


class LaggingAdapter(ReferenceAdapter):
    model_class = LaggingModel


class StalledAdapter(ReferenceAdapter):
    model_class = StalledModel


ADAPTERS = {"drifting": "tests.harness.planted_train:DriftingAdapter",
            "lagging": "tests.harness.planted_train:LaggingAdapter",
            "stalled": "tests.harness.planted_train:StalledAdapter",
            "crashing": "tests.harness.planted_train:CrashingAdapter"}
