"""Weights in the canonical layout: deterministic initialisation and .npz files keyed '<layer>.weight'."""

from __future__ import annotations

import os
from math import prod, sqrt

import numpy as np

from .spec import ModelSpec

__all__ = ["init_weights", "save_weights", "load_weights", "check_weights", "WeightsError"]


class WeightsError(ValueError):
    """Weights that do not fit a spec: a missing or extra key, a wrong shape or dtype."""


def init_weights(spec: ModelSpec, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """Deterministic weights for `spec`: the same seed gives the same arrays on every machine.

    Every weight and bias is drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default for
    Linear and Conv2d (fan_in = in_features, or in_channels * kh * kw). Biases are not zero on
    purpose: a framework that drops a bias must show up in the checks. Draws are made in float64
    and rounded, so the float32 weights are the float64 ones rounded.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    shapes = spec.param_shapes()
    for name, shape in shapes.items():
        weight_shape = shapes[f"{name.rsplit('.', 1)[0]}.weight"]
        # dense (in, out): fan_in is in; conv (out, in, kh, kw): fan_in is in * kh * kw
        fan_in = weight_shape[0] if len(weight_shape) == 2 else prod(weight_shape[1:])
        bound = 1.0 / sqrt(fan_in)
        weights[name] = rng.uniform(-bound, bound, size=shape).astype(dtype)
    return weights


def check_weights(spec: ModelSpec, weights: dict[str, np.ndarray], source: str = "weights") -> None:
    """Raise WeightsError naming the key and both shapes when `weights` does not fit `spec`."""
    expected = spec.param_shapes()
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(repr(k) for k in missing)}")
        if extra:
            parts.append(f"unexpected {', '.join(repr(k) for k in extra)}")
        raise WeightsError(f"{source} do not match model {spec.name!r}: {'; '.join(parts)} "
                           f"(expected keys: {', '.join(expected)})")
    dtypes = set()
    for key, shape in expected.items():
        got = tuple(np.shape(weights[key]))
        if got != shape:
            hint = ""
            if len(shape) == 4 and sorted(got) == sorted(shape):
                hint = ": conv weights are (out, in, kh, kw); convert from the framework's layout first"
            elif len(shape) == 2 and got == shape[::-1]:
                hint = ": dense weights are (in, out), the transpose of torch's Linear.weight"
            raise WeightsError(f"{source}: weight {key!r}: expected {shape}, got {got}{hint}")
        dtypes.add(np.asarray(weights[key]).dtype)
    if len(dtypes) > 1:
        raise WeightsError(f"{source}: mixed dtypes {sorted(map(str, dtypes))}; use one dtype for all weights")


def save_weights(path: str | os.PathLike, weights: dict[str, np.ndarray]) -> None:
    """Write an .npz whose keys are exactly the weight names (atomically: temp file, then rename)."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        np.savez(f, **weights)
    os.replace(tmp, path)


def load_weights(path: str | os.PathLike, spec: ModelSpec | None = None) -> dict[str, np.ndarray]:
    """Read an .npz of weights; with a spec, check every key and shape against it."""
    with np.load(path, allow_pickle=False) as data:
        weights = {key: data[key] for key in data.files}
    if spec is not None:
        check_weights(spec, weights, source=f"weights file {os.fspath(path)!r}")
    return weights
