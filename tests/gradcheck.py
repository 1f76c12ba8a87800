"""Central finite differences in float64, to check analytic gradients against the function itself.

Every helper takes `f`, a function of no arguments returning a scalar that reads the arrays being
differentiated, and perturbs those arrays IN PLACE (restoring them afterwards). That way the same
helper serves a functional op (f closes over its inputs) and a model (whose live parameters are
perturbed through model.parameters()).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import numpy as np

EPS = 1e-6
TOL = 1e-6  # normwise relative error ||analytic - numerical|| / ||numerical||
SAMPLE_COORDS = 300
SAMPLE_DIRECTIONS = 3

Scalar = Callable[[], float]


def rel_error(analytic, numerical) -> float:
    """||a - b|| / ||b||, or ||a - b|| when b is exactly zero."""
    a = np.asarray(analytic, dtype=np.float64).ravel()
    b = np.asarray(numerical, dtype=np.float64).ravel()
    diff = float(np.linalg.norm(a - b))
    scale = float(np.linalg.norm(b))
    return diff / scale if scale > 0 else diff


def _flat_view(x: np.ndarray) -> np.ndarray:
    if x.dtype != np.float64:
        raise TypeError(f"finite differences need float64, got {x.dtype}")
    flat = x.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("finite differences perturb in place: pass a contiguous array")
    return flat


def numerical_gradient(f: Scalar, x: np.ndarray, coords=None, eps: float = EPS) -> np.ndarray:
    """(f(x + eps e_i) - f(x - eps e_i)) / 2 eps for every flat index i (or those in coords)."""
    flat = _flat_view(x)
    indices = range(flat.size) if coords is None else coords
    out = np.empty(len(indices))
    for k, i in enumerate(indices):
        original = flat[i]
        flat[i] = original + eps
        up = f()
        flat[i] = original - eps
        down = f()
        flat[i] = original
        out[k] = (up - down) / (2 * eps)
    return out


def directional_derivative(f: Scalar, x: np.ndarray, v: np.ndarray, eps: float = EPS) -> float:
    """(f(x + eps v) - f(x - eps v)) / 2 eps, which should equal <grad f, v>."""
    _flat_view(x)
    original = x.copy()
    x += eps * v
    up = f()
    x[...] = original - eps * v
    down = f()
    x[...] = original
    return (up - down) / (2 * eps)


def gradient_errors(f: Scalar, wrt: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray], *,
                    full_limit: int | None = None, seed: int = 0) -> dict[str, float]:
    """Normwise relative error of grads[name] for every array in wrt.

    Arrays with at most full_limit elements (all when it is None) are checked element by element.
    A larger one is checked on SAMPLE_COORDS random coordinates and, separately, along
    SAMPLE_DIRECTIONS random directions of the whole tensor; its error is the larger of the two.
    """
    rng = np.random.default_rng(seed)
    errors = {}
    for name, x in wrt.items():
        g = np.asarray(grads[name], dtype=np.float64)
        if g.shape != x.shape:
            raise AssertionError(f"{name}: gradient has shape {g.shape}, the array {x.shape}")
        if full_limit is None or x.size <= full_limit:
            errors[name] = rel_error(g, numerical_gradient(f, x))
            continue
        coords = rng.choice(x.size, size=SAMPLE_COORDS, replace=False)
        coord_error = rel_error(g.ravel()[coords], numerical_gradient(f, x, coords))
        # Unnormalised N(0, 1) directions move every element by about eps, as a coordinate step does.
        directions = [rng.standard_normal(x.shape) for _ in range(SAMPLE_DIRECTIONS)]
        analytic = [float(np.vdot(g, v)) for v in directions]
        numerical = [directional_derivative(f, x, v) for v in directions]
        errors[name] = max(coord_error, rel_error(analytic, numerical))
    return errors


def assert_gradients(f: Scalar, wrt: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray], *,
                     tol: float = TOL, full_limit: int | None = None, seed: int = 0) -> None:
    """Fail, listing every array whose gradient is off, when any normwise error exceeds tol."""
    errors = gradient_errors(f, wrt, grads, full_limit=full_limit, seed=seed)
    bad = {name: err for name, err in errors.items() if not err <= tol}
    listed = ", ".join(f"{name}: {err:.3g}" for name, err in bad.items())
    assert not bad, f"gradient check failed (normwise relative error > {tol:g}): {listed}"


_BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def single_threaded_pool() -> Iterator[multiprocessing.pool.Pool]:
    """Worker processes, one per available core, whose BLAS runs on one thread.

    NOTE: on the small matrices of a batch-1 model, BLAS's own threads cost more than they give
    (mnist_cnn's loss: 0.6 ms with 2 threads, 0.3 ms with 1); processes use the cores instead.
    The workers are spawned, not forked, because BLAS reads its thread count when it starts.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    saved = {var: os.environ.get(var) for var in _BLAS_THREAD_VARS}
    os.environ.update({var: "1" for var in _BLAS_THREAD_VARS})
    try:
        pool = multiprocessing.get_context("spawn").Pool(max(1, min(cores, 8)))
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
    with pool:
        yield pool
