"""How one tensor of a framework is compared with the float64 reference's: the one table of
tolerances, per dtype, device kind and stage (docs/equivalence.md gives the measurements behind
every number), and the comparison itself, elementwise and normwise. `checks` runs cells with it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cells import parse_device

__all__ = ["Tolerance", "TOLERANCES", "tolerance_for", "TensorCheck", "compare"]


@dataclass(frozen=True, slots=True)
class Tolerance:
    rtol: float
    atol_scale: float  # atol = atol_scale * max|reference|: the tensor's own magnitude sets it
    normwise: float  # the largest ||a - b|| / ||b|| allowed
    reason: str


# The one table of tolerances, per (dtype, device kind) and per stage. docs/equivalence.md gives the
# measurements behind every number; keep the two in step.
TOLERANCES: dict[tuple[str, str], dict[str, Tolerance]] = {
    ("float64", "cpu"): {
        "forward": Tolerance(1e-9, 1e-12, 1e-12, "float64 rounding; seen <= 1.3e-15 normwise, 2.2e-15*max|b|"),
        "gradient": Tolerance(1e-9, 1e-12, 1e-12, "float64 rounding; seen <= 1.8e-15 normwise, 2.5e-15*max|b|"),
        "update": Tolerance(1e-9, 1e-10, 1e-11, "steps p_k - p_0 of 10 updates; the timed Adam's eps 1e-7 "
                            "amplifies rounding where |g| ~ eps: seen <= 4.8e-13 normwise, 5e-12*max|step| "
                            "(mnist_cnn), others <= 2.1e-14"),
    },
    ("float32", "cpu"): {
        "forward": Tolerance(1e-3, 1e-5, 1e-5, "float32 weights, inputs and sums of up to 576 terms; "
                             "seen <= 6.3e-7 normwise, 7.2e-7*max|b|"),
        "gradient": Tolerance(1e-3, 2e-5, 2e-5, "float32 through the backward; seen <= 1.1e-6 normwise, "
                              "1.3e-6*max|b| at batch 8; the timed part, summed over batch 1024, <= 8.1e-6"),
        "update": Tolerance(1e-3, 3e-2, 2e-3, "steps p_k - p_0 of 10 updates from float32 gradients; "
                            "where |g| ~ eps, Adam's step is about lr whatever the gradient's rounding: the "
                            "timed Adam (eps 1e-7) seen <= 5.5e-4 normwise, 9.8e-3*max|step|; SGD, RMSprop "
                            "and Adam with eps 1e-4 <= 9.6e-5 normwise, 9e-5*max|step|"),
    },
}
# CUDA rows: the same numbers until measured on a GPU (float32 there may use TF32: its own row).
for _dtype in ("float32", "float64"):
    TOLERANCES[(_dtype, "cuda")] = TOLERANCES[(_dtype, "cpu")]


def tolerance_for(dtype: str, device: str) -> dict[str, Tolerance]:
    kind = parse_device(device)[0]
    try:
        return TOLERANCES[(dtype, kind)]
    except KeyError:
        raise KeyError(f"no tolerance for dtype {dtype!r} on {kind!r}; "
                       f"rows: {', '.join(f'{d}/{k}' for d, k in TOLERANCES)}") from None


@dataclass(frozen=True, slots=True)
class TensorCheck:
    """One tensor of a cell against the reference."""

    tensor: str  # 'output', 'loss', 'layer:conv1', 'grad:conv1.weight', 'grad:input', 'sgd:fc1.bias', ...
    stage: str  # 'forward', 'gradient' or 'update'
    layer: str | None  # the spec layer the tensor belongs to, when there is one
    shape: tuple[int, ...]
    max_abs: float
    normwise: float
    atol: float
    rtol: float
    normwise_tol: float
    passed: bool
    note: str = ""  # why it failed when not by tolerance: shape, NaN/Inf


def compare(tensor: str, stage: str, layer: str | None, actual, expected, tol: Tolerance) -> TensorCheck:
    """Compare a framework's tensor with the reference's. NaN or Inf never passes; shapes must match."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    def failed(note: str) -> TensorCheck:
        return TensorCheck(tensor, stage, layer, tuple(a.shape), float("nan"), float("nan"), float("nan"),
                           tol.rtol, tol.normwise, False, note)

    if a.shape != b.shape:
        return failed(f"shape {a.shape} != reference {b.shape}")
    if not np.all(np.isfinite(b)):
        return failed("NaN or Inf in the reference")
    if not np.all(np.isfinite(a)):
        return failed(f"{int(np.sum(~np.isfinite(a)))} NaN or Inf values")
    diff = np.abs(a - b)
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    atol = tol.atol_scale * (scale if scale > 0 else 1.0)
    max_abs = float(diff.max()) if diff.size else 0.0
    ref_norm = float(np.linalg.norm(b))
    normwise = float(np.linalg.norm(a - b)) / ref_norm if ref_norm > 0 else float(np.linalg.norm(a - b))
    passed = bool(np.all(diff <= atol + tol.rtol * np.abs(b))) and normwise <= tol.normwise
    return TensorCheck(tensor, stage, layer, tuple(a.shape), max_abs, normwise, atol, tol.rtol, tol.normwise,
                       passed)
