"""Equivalence checks: one framework cell against the float64 reference, tensor by tensor.

A cell is (model, framework, device, dtype, mode). For the same weights and batches it compares
with the float64 reference: the forward outputs, every layer's output, the loss, every parameter
gradient, the input gradient and the gradient of every layer's output, and the steps p_k - p_0 of
10 updates, with the losses train_step returns, for the optimizer train_step times and every kind
of the catalogue (CHECK_OPTIMIZERS). Each tensor meets its tolerance (harness/tolerances.py,
docs/equivalence.md) or fails; a tensor of another dtype than asked for fails, and so does a model
that reports another device, dtype or mode. Every run is compared (the worst is kept), and the runs
with each other, to report whether the framework is bitwise deterministic. When anything fails, the
layer where the framework parts from the reference is named (first_divergence).
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

import reference_impl as ri
from reference_impl.spec import ModelSpec, OptimizerSpec

from . import adapters
from .adapters.base import Adapter, BuiltModel, Unavailable
from .tolerances import TOLERANCES, TensorCheck, Tolerance, compare, tolerance_for

__all__ = [
    "Tolerance",
    "TOLERANCES",
    "CHECK_OPTIMIZERS",
    "CHECK_STEPS",
    "TIMED_OPTIMIZER",
    "check_optimizers",
    "TensorCheck",
    "CheckResult",
    "compare",
    "check_tensors",
    "first_divergence",
    "tolerance_for",
    "check_cell",
    "check_model",
    "error_result",
    "ReferenceRun",
]


# The optimizers of the update checks, besides the one each model's train_step times (its spec's,
# checked exactly, as "train_step"): one of each kind in the catalogue, every hyperparameter
# explicit. lr is large enough that k steps move the weights well beyond float32 noise; eps is
# 1e-4, far above the defaults, because for gradients much smaller than eps the step is then
# linear in the gradient, not the sign of float32 noise, and because it makes the placement of eps
# (outside the square root, the reference's rule) show in the result.
CHECK_OPTIMIZERS: dict[str, OptimizerSpec] = {
    "sgd": OptimizerSpec("sgd", lr=0.01, momentum=0.9),
    "sgd_plain": OptimizerSpec("sgd", lr=0.05, momentum=0.0),
    "rmsprop": OptimizerSpec("rmsprop", lr=0.001, rho=0.9, eps=1e-4),
    "adam": OptimizerSpec("adam", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-4),
}
TIMED_OPTIMIZER = "train_step"  # the key of the spec's own optimizer, the one `bench run` times


def check_optimizers(spec: ModelSpec) -> dict[str, OptimizerSpec]:
    """The optimizers a model's updates are checked with: its spec's own (what train_step times,
    with its exact hyperparameters), then CHECK_OPTIMIZERS."""
    return {TIMED_OPTIMIZER: spec.optimizer, **CHECK_OPTIMIZERS}


CHECK_BATCH = 8  # the batch size of the checks, in `bench check` and before timing in `bench run`
CHECK_STEPS = 10  # optimizer steps per optimizer: enough for state that builds up (momentum, Adam's moments)


@dataclass(slots=True)
class CheckResult:
    model: str
    framework: str
    device: str
    dtype: str
    mode: str
    status: str  # 'pass', 'fail', 'skip' or 'error'
    reason: str = ""  # why skipped, or the error
    tensors: list[TensorCheck] = field(default_factory=list)
    first_divergence: str | None = None  # e.g. 'conv1 (forward)'
    deterministic: bool | None = None
    nondeterminism: float = 0.0  # largest difference between the two runs
    seconds: float = 0.0

    @property
    def failures(self) -> list[TensorCheck]:
        return [t for t in self.tensors if not t.passed]

    @property
    def worst(self) -> TensorCheck | None:
        """The tensor with the largest normwise error relative to its tolerance."""
        finite = [t for t in self.tensors if np.isfinite(t.normwise)]
        bad = [t for t in self.tensors if not np.isfinite(t.normwise)]
        if bad:
            return bad[0]
        return max(finite, key=lambda t: t.normwise / t.normwise_tol, default=None)

    @classmethod
    def from_dict(cls, d: dict) -> CheckResult:
        """The inverse of to_dict (a check run in a worker process comes back this way); JSON's
        null for a non-finite error is read back as NaN."""
        def num(v):
            return float("nan") if v is None else float(v)

        tensors = [TensorCheck(t["tensor"], t["stage"], t["layer"], tuple(t["shape"]), num(t["max_abs"]),
                               num(t["normwise"]), num(t["atol"]), num(t["rtol"]), num(t["normwise_tol"]),
                               bool(t["passed"]), t.get("note", "")) for t in d.get("tensors") or []]
        return cls(d["model"], d["framework"], d["device"], d["dtype"], d["mode"], d["status"], d.get("reason", ""),
                   tensors, d.get("first_divergence"), d.get("deterministic"), num(d.get("nondeterminism", 0.0)),
                   num(d.get("seconds", 0.0)))

    def verdict(self) -> dict:
        """What a timed cell stores of its check (CellRecord.check): the status, where it parts from
        the reference, the worst tensor, the reason, and every tensor (for the equivalence plot)."""
        worst = self.worst
        return {"status": self.status, "first_divergence": self.first_divergence,
                "worst_tensor": worst.tensor if worst else None, "worst_normwise": worst.normwise if worst else None,
                "reason": self.reason, "tensors": self.to_dict()["tensors"]}

    def to_dict(self) -> dict:
        return {
            "model": self.model, "framework": self.framework, "device": self.device, "dtype": self.dtype,
            "mode": self.mode, "status": self.status, "reason": self.reason,
            "first_divergence": self.first_divergence, "deterministic": self.deterministic,
            "nondeterminism": self.nondeterminism, "seconds": round(self.seconds, 3),
            "tensors": [
                {"tensor": t.tensor, "stage": t.stage, "layer": t.layer, "shape": list(t.shape),
                 "max_abs": t.max_abs, "normwise": t.normwise, "atol": t.atol, "rtol": t.rtol,
                 "normwise_tol": t.normwise_tol, "passed": t.passed, "note": t.note}
                for t in self.tensors
            ],
        }


# --------------------------------------------------------------------------------------------
# running a cell


def _batches(spec: ModelSpec, weights: dict[str, np.ndarray], batch_size: int, seed: int, steps: int):
    """The check batch, then `steps` training batches, all float64, drawn away from the model's
    kinks (reference_impl.data.kink_margins): near a ReLU's 0 or a max-pooling tie, float32 rounding
    flips which way a gradient goes, and two correct frameworks then differ far beyond rounding."""
    return [ri.data.well_conditioned_batch(spec, weights, batch_size, seed + i) for i in range(steps + 1)]


def _run(model: BuiltModel, weights: dict[str, np.ndarray], batches,
         optimizers: dict[str, OptimizerSpec]) -> dict[str, np.ndarray]:
    """Every tensor the checks compare, from one model, starting from `weights`.

    Updates are kept as steps: '<optimizer>:<param>' is p_k - p_0 after the k training batches,
    p_0 being the model's own starting parameters (float32 ones are the float64 weights rounded), so
    that a step is compared with the reference's step, relative to the step, not to the parameter;
    '<optimizer>:losses' holds the loss train_step returned at each step."""
    model.set_weights(weights)
    x, y = batches[0]
    out: dict[str, np.ndarray] = {"output": model.forward(x)}
    for layer, value in model.layer_outputs(x).items():
        out[f"layer:{layer}"] = value
    loss, grads = model.loss_and_grads(x, y)
    out["loss"] = np.asarray(loss, dtype=np.float64)
    for name, g in grads.items():
        out[f"grad:{name}"] = g
    for layer, g in (model.layer_output_grads(x, y) or {}).items():  # optional in the contract
        out[f"dlayer:{layer}"] = g
    for key, optimizer in optimizers.items():
        model.set_weights(weights)
        start = {name: np.asarray(w, dtype=np.float64) for name, w in model.get_weights().items()}
        model.set_optimizer(optimizer)
        out[f"{key}:losses"] = np.array([float(model.train_step(bx, by)) for bx, by in batches[1:]])
        for name, w in model.get_weights().items():
            step = np.asarray(w, dtype=np.float64) - start[name]  # exact for float32 values
            out[f"{key}:{name}"] = step.astype(np.asarray(w).dtype) if np.asarray(w).dtype.kind == "f" else step
    model.set_weights(weights)
    return out


def _stage_and_layer(key: str) -> tuple[str, str | None]:
    kind, _, name = key.partition(":")
    if kind in ("output", "loss"):
        return "forward", None
    if kind == "layer":
        return "forward", name
    if kind == "dlayer":  # dLoss/d(the layer's output)
        return "gradient", name
    layer = None if name in ("input", "losses") else name.rpartition(".")[0]
    return ("gradient" if kind == "grad" else "update"), layer


class ReferenceRun:
    """The float64 reference's tensors for a model, computed once and shared by every cell.

    optimizers: those the updates are checked with; default check_optimizers(spec), the whole
    catalogue (`bench check`); `bench run` checks only what it times, {TIMED_OPTIMIZER: spec.optimizer}."""

    def __init__(self, spec: ModelSpec, weights: dict[str, np.ndarray], batch_size: int, seed: int, steps: int,
                 optimizers: dict[str, OptimizerSpec] | None = None):
        self.spec, self.weights = spec, weights
        self.optimizers = check_optimizers(spec) if optimizers is None else optimizers
        self.batches = _batches(spec, weights, batch_size, seed, steps)
        model = adapters.get("reference").build(spec, weights, dtype="float64")
        self.tensors = _run(model, weights, self.batches, self.optimizers)


def first_divergence(spec: ModelSpec, checks: list[TensorCheck]) -> str | None:
    failed = [c for c in checks if not c.passed]
    if not failed:
        return None
    order = [layer.name for layer in spec.layers]
    by_stage = {stage: {c.layer for c in failed if c.stage == stage} for stage in ("forward", "gradient", "update")}
    forward = [name for name in order if name in by_stage["forward"]]
    if forward:
        return f"{forward[0]} (forward)"
    if any(c.tensor in ("output", "loss") for c in failed):
        return "loss" if any(c.tensor == "loss" for c in failed) else "output"
    # The backward runs from the last layer to the first: the first wrong gradient in that order is
    # where the error enters. A layer's backward computes its parameters' gradients and the
    # gradient of its input, which is the previous layer's output gradient ('dlayer:'), or the
    # input's for the first layer; the loss's backward computes the last output's gradient.
    gradients = [c for c in failed if c.stage == "gradient"]
    if any(c.tensor.startswith("dlayer:") for c in checks):
        made_by = {f"dlayer:{order[-1]}": "loss", "grad:input": order[0]}
        made_by.update({f"dlayer:{name}": order[i + 1] for i, name in enumerate(order[:-1])})
        makers = {made_by.get(c.tensor, c.layer) for c in gradients}
        if "loss" in makers:
            return "loss (backward)"
        backward = [name for name in reversed(order) if name in makers]
        if backward:
            return f"{backward[0]} (backward)"
    backward = [name for name in reversed(order) if name in by_stage["gradient"]]
    if backward:
        return f"{backward[0]} (backward)"
    if None in by_stage["gradient"]:
        return "input (backward)"
    updated = [c for c in failed if c.stage == "update"]
    if updated:
        # A wrong step of one layer changes the gradients of every later step, so every layer's
        # steps part from the reference after a few: the layer whose step is furthest off, relative
        # to its tolerance, is where the error is (the one-step timed check names it exactly).
        optimizer = updated[0].tensor.partition(":")[0]
        layers = [c for c in updated if c.tensor.startswith(f"{optimizer}:") and c.layer is not None]
        worst = max(layers, key=lambda c: c.normwise / c.normwise_tol if np.isfinite(c.normwise) and c.normwise_tol
                    else np.inf, default=None)
        return f"{worst.layer if worst else 'the losses'} ({optimizer} update)"
    return failed[0].tensor


def check_cell(adapter: Adapter, reference: ReferenceRun, *, device: str = "cpu", dtype: str = "float32",
               mode: str = "eager", repeats: int = 2) -> CheckResult:
    """Check one framework cell against the reference run of its model. Never raises for the
    framework's own failures: they come back as status 'error' with the reason."""
    spec = reference.spec
    if adapter.name == "reference" and dtype == "float64":
        return CheckResult(spec.name, adapter.name, device, dtype, mode, "skip",
                           reason="the float64 reference is the ground truth it would be compared with")
    start = time.perf_counter()
    try:
        reason = adapter.unavailable_reason(device, dtype, mode)
        if reason:
            raise Unavailable(reason)
        model = adapter.build(spec, reference.weights, device=device, dtype=dtype, mode=mode)
    except Unavailable as e:
        return CheckResult(spec.name, adapter.name, device, dtype, mode, "skip", reason=str(e))
    except Exception as e:  # a framework's failure is a result, not a crash of the whole check
        return error_result(CheckResult(spec.name, adapter.name, device, dtype, mode, "error"), e, start)
    result = check_model(model, reference, repeats=repeats, framework=adapter.name, device=device, dtype=dtype,
                         mode=mode)
    result.seconds = time.perf_counter() - start
    return result


def error_result(result: CheckResult, e: Exception, start: float) -> CheckResult:
    result.status = "error"
    result.reason = f"{type(e).__name__}: {e}"
    result.first_divergence = traceback.format_exc(limit=-3).strip().splitlines()[-1]
    result.seconds = time.perf_counter() - start
    return result


def check_model(model: BuiltModel, reference: ReferenceRun, *, repeats: int = 2, framework: str = "?",
                device: str | None = None, dtype: str | None = None, mode: str | None = None) -> CheckResult:
    """Check a model already built (as `bench run` does before timing the same model): every tensor
    of every one of `repeats` runs against the reference (the worst run is reported), and whether
    the runs agree bitwise. The model's weights are restored.

    device, dtype and mode are what the model was asked for: the tolerances are those of the dtype
    asked for, not of the one the model reports, and a model that reports another device, dtype
    or mode, or hands back a tensor of another dtype, fails (it is not what was asked to be timed).
    Left None, the model's own word is taken (a caller that built nothing itself).
    """
    spec = reference.spec
    asked = {"device": device or model.device, "dtype": dtype or model.dtype, "mode": mode or model.mode}
    asked["device"] = "cuda:0" if asked["device"] == "cuda" else asked["device"]
    result = CheckResult(spec.name, framework, asked["device"], asked["dtype"], asked["mode"], "pass")
    start = time.perf_counter()
    reported = {"device": model.device, "dtype": model.dtype, "mode": model.mode}
    wrong = [f"asked for {k} {asked[k]!r}, the model reports {reported[k]!r}" for k in asked if reported[k] != asked[k]]
    try:
        runs = [_run(model, reference.weights, reference.batches, reference.optimizers) for _ in range(repeats)]
    except Exception as e:
        return error_result(result, e, start)
    checks = check_tensors(reference.tensors, runs, asked["dtype"], asked["device"])
    result.tensors = checks
    result.first_divergence = first_divergence(spec, checks)
    result.status = "pass" if all(c.passed for c in checks) and not wrong else "fail"
    result.reason = "; ".join(wrong)
    if repeats > 1:
        worst = 0.0
        for key, first in runs[0].items():
            for other in runs[1:]:
                a, b = np.asarray(first), np.asarray(other.get(key))
                if a.shape != b.shape:
                    worst = float("inf")
                elif not np.array_equal(a, b, equal_nan=True):
                    worst = max(worst, float(np.nanmax(np.abs(a.astype(np.float64) - b))))
        result.deterministic = worst == 0.0
        result.nondeterminism = worst
    result.seconds = time.perf_counter() - start
    return result


def check_tensors(expected: dict[str, np.ndarray], runs: list[dict[str, np.ndarray]], dtype: str,
                  device: str) -> list[TensorCheck]:
    """Every tensor of the reference's `expected` against every run's (the worst run of each is
    kept), under the tolerances of `dtype` on `device`; a tensor a run has that the reference lacks
    fails too."""
    tolerances = tolerance_for(dtype, device)
    if not any(key.startswith("dlayer:") for run in runs for key in run):  # layer_output_grads is optional
        expected = {key: value for key, value in expected.items() if not key.startswith("dlayer:")}
    checks = [_worst_run(key, value, runs, tolerances, dtype) for key, value in expected.items()]
    for key in sorted(set().union(*runs) - set(expected)):
        stage, layer = _stage_and_layer(key)
        found = next(run[key] for run in runs if key in run)
        checks.append(TensorCheck(key, stage, layer, np.shape(found), float("nan"), float("nan"),
                                  float("nan"), 0.0, 0.0, False, "not in the reference (a name the spec lacks)"))
    return checks


def _worst_run(key: str, expected, runs: list[dict], tolerances: dict[str, Tolerance], dtype: str) -> TensorCheck:
    """One tensor of every run against the reference: the first run's check, unless a later run's
    is worse (it fails where the first passes, or its error is larger relative to the tolerance),
    which then says which run it is. A tensor of another dtype than asked for fails."""
    stage, layer = _stage_and_layer(key)
    worst: TensorCheck | None = None
    for i, run in enumerate(runs):
        actual = run.get(key)
        if actual is None:
            return TensorCheck(key, stage, layer, (), float("nan"), float("nan"), float("nan"), 0.0, 0.0, False,
                               "missing from the framework's results")
        check = compare(key, stage, layer, actual, expected, tolerances[stage])
        got = np.asarray(actual).dtype
        # losses come back as Python floats (train_step's too): their dtype says nothing
        if key != "loss" and not key.endswith(":losses") and got.kind == "f" and got != np.dtype(dtype):
            check = dataclasses.replace(check, passed=False, note=f"dtype {got}, asked for {dtype}")
        if i and len(runs) > 1:
            check = dataclasses.replace(check, note=(check.note + "; " if check.note else "") + f"run {i + 1} of "
                                        f"{len(runs)}")
        if worst is None or _worse(check, worst):
            worst = check
    return worst


def _worse(a: TensorCheck, b: TensorCheck) -> bool:
    if a.passed != b.passed:
        return not a.passed
    ra = a.normwise / a.normwise_tol if a.normwise_tol else a.normwise
    rb = b.normwise / b.normwise_tol if b.normwise_tol else b.normwise
    return bool(ra > rb) or (np.isnan(ra) and not np.isnan(rb))
