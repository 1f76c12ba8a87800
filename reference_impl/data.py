"""Deterministic synthetic batches (inputs and targets) that fit a spec's input and loss."""

from __future__ import annotations

import numpy as np

from .spec import ModelSpec

__all__ = ["random_batch"]


def random_batch(spec: ModelSpec, batch_size: int, seed: int = 0, dtype=np.float32):
    """(x, y) for `spec`: x ~ N(0, 1); y class labels (int64), {0, 1} floats or values in [0, 1].

    float32 inputs are the float64 ones rounded, so the two dtypes see the same data.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, *spec.input_shape)).astype(dtype)
    out = spec.output_shape
    if spec.loss == "sparse_categorical_crossentropy":
        y = rng.integers(0, out[0], size=batch_size, dtype=np.int64)
    elif spec.loss == "binary_crossentropy":
        y = rng.integers(0, 2, size=(batch_size, *out)).astype(dtype)
    else:
        y = rng.uniform(0.0, 1.0, size=(batch_size, *out)).astype(dtype)
    return x, y
