"""What `bench run` verifies of a timed cell: the model it times, the code it times, and float64.

A cell's timings are worth something only if the code that was timed computes the reference's
function. Before a cell is timed, its worker checks three things against the float64 reference
(docs/equivalence.md, "What verified means for a timed cell"):

- contract: a model built as the timed one is (once per model, device, dtype and mode, made ahead
  in every worker at once: worker_main's prepare), through the adapter contract, at
  checks.CHECK_BATCH in the timed dtype: outputs, every layer's output, the loss, every gradient,
  and CHECK_STEPS updates of the optimizer that train_step times (`bench check` runs the whole
  optimizer catalogue);
- timed: what the timed phase itself computed on its first call (Phase.readback), at the cell's
  own batch, on the very batch it is timed on: the outputs of a forward, the loss and gradients of
  a forward_backward or backward, the step and loss of a train_step;
- float64: the same framework, device and mode built in float64 and checked as the contract part,
  since float32's tolerances hide bugs of 1e-4 and less (a small weight decay, a hyperparameter
  stored in float32).

The cell is verified when every part passes; a phase with no readback leaves its cell unverified,
and says so. The timed batch is drawn away from kinks (checks._batches) at every size, and the
reference's results on it are computed once per model and batch and shared, through a folder
of the run's, by every framework's worker.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import reference_impl as ri
from reference_impl.spec import ModelSpec

from . import adapters
from .cells import CHECK_FAULTS
from .checks import TIMED_OPTIMIZER, CheckResult, check_tensors, first_divergence

__all__ = ["TIMED_SEED", "timed_batch", "PhaseReference", "check_timed", "cell_verdict", "timed_optimizers"]

TIMED_SEED = 100  # added to the run's seed for the timed batch, so that it is not the check's batch


def timed_optimizers(spec: ModelSpec) -> dict:
    """What `bench run`'s contract check updates with: the optimizer train_step times, only."""
    return {TIMED_OPTIMIZER: spec.optimizer}


def _cached(cache_dir: str | None, name: str, compute) -> dict[str, np.ndarray]:
    """compute()'s arrays, from cache_dir/name.npz when a worker of this run already wrote them; a
    file is written whole (a temporary name, then a rename), so a reader never sees half of one."""
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"{name}.npz"
    if path.exists():
        with np.load(path) as stored:
            return {k: stored[k] for k in stored.files}
    arrays = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return arrays


def timed_batch(spec: ModelSpec, weights: dict[str, np.ndarray], batch_size: int, seed: int,
                cache_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The float64 batch a cell is timed on: random, drawn away from ReLU kinks and pooling ties,
    so that the timed phase's result can be compared with the reference's at the same batch."""
    def draw():
        x, y = ri.data.well_conditioned_batch(spec, weights, batch_size, seed + TIMED_SEED)
        return {"x": x, "y": y}

    arrays = _cached(cache_dir, f"batch-{spec.name}-b{batch_size}-s{seed}", draw)
    return arrays["x"], arrays["y"]


class PhaseReference:
    """The float64 reference's result of every timed phase on one timed batch.

    tensors: 'output' (forward); 'loss' and 'grad:<param>' (forward_backward, backward);
    'train_step:<param>', the step p_1 - p_0 of one update of the spec's optimizer from fresh state
    (train_step)."""

    def __init__(self, spec: ModelSpec, weights: dict[str, np.ndarray], batch_size: int, seed: int,
                 cache_dir: str | None = None) -> None:
        self.spec, self.batch_size = spec, batch_size
        self.x, self.y = timed_batch(spec, weights, batch_size, seed, cache_dir)

        def compute() -> dict[str, np.ndarray]:
            model = adapters.get("reference").build(spec, weights, dtype="float64")
            tensors = {"output": model.forward(self.x)}
            loss, grads = model.loss_and_grads(self.x, self.y)
            tensors["loss"] = np.asarray(loss, dtype=np.float64)
            tensors.update({f"grad:{name}": g for name, g in grads.items() if name != "input"})
            model.set_optimizer(spec.optimizer)
            model.train_step(self.x, self.y)
            tensors.update({f"{TIMED_OPTIMIZER}:{name}": w - weights[name] for name, w in model.get_weights().items()})
            return tensors

        self.tensors = _cached(cache_dir, f"reference-{spec.name}-b{batch_size}-s{seed}", compute)

    def expected(self, phase: str) -> dict[str, np.ndarray]:
        """The tensors a `phase` computes."""
        kinds = {"forward": ("output",), "forward_backward": ("loss", "grad"), "backward": ("grad",),
                 "train_step": ("loss", TIMED_OPTIMIZER)}[phase]
        return {k: v for k, v in self.tensors.items() if k.partition(":")[0] in kinds}


def check_timed(captured: dict | None, reference: PhaseReference, phase: str, start: dict[str, np.ndarray] | None,
                *, dtype: str, device: str) -> dict:
    """What a timed phase computed (Timer.readback) against the reference's result of that phase
    on the same batch, under the tolerances of the dtype asked for. A train step hands back its
    parameters ('param:<name>'); the step taken from `start`, the model's own parameters before
    the call, is compared with the reference's step, relative to the step. Its loss is compared when
    the phase hands it back. Returns the part `timed` of a cell's check (cell_verdict)."""
    verdict = {"phase": phase, "batch": reference.batch_size, "status": "pass", "first_divergence": None,
               "reason": "", "tensors": []}
    if captured is None:
        return {**verdict, "status": "unverified",
                "reason": f"the timed {phase} has no readback (Phase.readback): what it computes cannot be compared"}
    got: dict[str, np.ndarray] = {}
    for key, value in captured.items():
        kind, _, name = key.partition(":")
        if kind == "param" and start is not None and name in start:
            value = np.asarray(value)
            step = value.astype(np.float64) - np.asarray(start[name], dtype=np.float64)  # exact for float32
            got[f"{TIMED_OPTIMIZER}:{name}"] = step.astype(value.dtype) if value.dtype.kind == "f" else step
        else:
            got[key] = value
    expected = reference.expected(phase)
    if phase == "train_step" and "loss" not in got:
        expected.pop("loss")  # a train step need not return its loss
    checks = check_tensors(expected, [got], dtype, device)
    failed = [c for c in checks if not c.passed]
    verdict["tensors"] = [_tensor_dict(c) for c in checks]
    if failed:
        where = first_divergence(reference.spec, checks)
        verdict.update(status="fail", first_divergence=f"{where}, in the timed {phase} at batch {reference.batch_size}")
    return verdict


def _tensor_dict(c) -> dict:
    return {"tensor": c.tensor, "stage": c.stage, "layer": c.layer, "shape": list(c.shape), "max_abs": c.max_abs,
            "normwise": c.normwise, "atol": c.atol, "rtol": c.rtol, "normwise_tol": c.normwise_tol,
            "passed": c.passed, "note": c.note}


def _summary(result: CheckResult) -> dict:
    """A check's verdict with only its failing tensors (the float64 part: the timed dtype's part
    keeps every tensor, for the equivalence plot)."""
    verdict = result.verdict()
    verdict["tensors"] = [t for t in verdict["tensors"] if not t["passed"]]
    return verdict


def cell_verdict(contract: CheckResult, timed: dict | None, float64: CheckResult | None,
                 float64_limitation: str | None = None) -> dict:
    """What a timed cell stores of its verification (CellRecord.check): the contract part's verdict
    as before (status, first_divergence, worst_tensor, worst_normwise, reason, tensors), with
    status, first_divergence and reason now those of the whole, and the parts beside it:
    contract_status, timed (check_timed) and float64 (None for a float64 cell or the reference).

    status: 'fail' or 'error' when a part fails or errs (the first, in the order contract, timed,
    float64, names the place), else 'unverified' when the timed phase could not hand its result
    back, or when the float64 part fails for a framework that declares it cannot compute float64
    (Adapter.float64_limitation: its reason is the cell's, and float64's `limitation`), else 'pass'.
    A float64 part that was skipped (no float64 on that device) decides nothing."""
    verdict = contract.verdict()
    verdict["contract_status"] = contract.status
    verdict["timed"] = timed
    verdict["float64"] = None if float64 is None else _summary(float64)
    parts = [("", contract.status, contract.first_divergence, contract.reason)]
    if timed is not None:
        parts.append(("timed", timed["status"], timed["first_divergence"], timed["reason"]))
    if float64 is not None:
        status, reason = float64.status, float64.reason
        if status == "fail" and float64_limitation:
            verdict["float64"]["limitation"] = float64_limitation
            status = "unverified"
            reason = "; ".join(r for r in (float64_limitation, reason) if r)  # the place: first_divergence
        parts.append(("float64", status, float64.first_divergence, reason))
    deciding = [p for p in parts if p[1] in CHECK_FAULTS] or [p for p in parts if p[1] == "unverified"]
    if deciding:
        name, status, where, _ = deciding[0]
        verdict["status"] = status
        verdict["first_divergence"] = f"{where} in float64" if name == "float64" and where else where
    verdict["reason"] = "; ".join(f"{name}: {reason}" if name else reason for name, _, _, reason in parts if reason)
    return verdict
