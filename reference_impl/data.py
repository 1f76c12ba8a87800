"""Deterministic synthetic batches (inputs and targets) that fit a spec's input and loss."""

from __future__ import annotations

import numpy as np

from .spec import ModelSpec

__all__ = ["random_batch", "kink_margins", "well_conditioned_batch"]


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


def kink_margins(spec: ModelSpec, weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Per sample, how close the forward pass comes to a point where the model is not
    differentiable, relative to the size of the values there: the smallest |input| of a ReLU, and
    the smallest gap between the two largest values of a max-pooling window, each divided by the
    largest magnitude in that layer. Computed in float64 with the functional (NCHW) ops.

    Near such a point, float32 rounding can flip which side of the kink a value falls on: a ReLU
    that passes its gradient or not, a pooling window that routes its gradient to another input.
    That moves whole gradient entries, so two correct implementations then disagree far beyond
    rounding. Equivalence checks draw their batches away from these points.
    """
    from . import functional as F

    acts = {"relu": F.relu, "sigmoid": F.sigmoid, "tanh": F.tanh, "softmax": F.softmax}
    h = np.asarray(x, dtype=np.float64)
    n = len(h)
    margins = np.full(n, np.inf)

    def relu_margin(z: np.ndarray) -> np.ndarray:
        return np.abs(z).reshape(n, -1).min(axis=1) / (np.abs(z).max() or 1.0)

    for layer in spec.layers:
        w, b = (weights.get(f"{layer.name}.{part}") for part in ("weight", "bias"))
        w, b = (None if a is None else np.asarray(a, dtype=np.float64) for a in (w, b))
        if layer.kind == "dense":
            z = F.linear(h, w, b)
        elif layer.kind == "conv2d":
            z = F.conv2d(h, w, b, layer.stride, layer.padding)
        elif layer.kind == "max_pool2d":
            geo = F.pool_geometry(h.shape[2:], layer.kernel_size, layer.stride, layer.padding)
            top, bottom, left, right = geo.pads
            hp = np.pad(h, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=-np.inf)
            offsets = [geo.window(i, j) for i in range(geo.kernel[0]) for j in range(geo.kernel[1])]
            ranked = np.sort(np.stack([hp[:, :, rows, cols] for rows, cols in offsets]), axis=0)
            # Windows of ReLU zeros tie exactly, harmlessly: the ReLU's gradient there is zero anyway.
            gap = np.where(ranked[-1] > 0, ranked[-1] - ranked[-2], np.inf)
            margins = np.minimum(margins, gap.reshape(n, -1).min(axis=1) / (np.abs(h).max() or 1.0))
            z = ranked[-1]
        elif layer.kind == "flatten":
            z = h.reshape(n, -1)
        else:  # a standalone activation
            if layer.kind == "relu":
                margins = np.minimum(margins, relu_margin(h))
            z = acts[layer.kind](h)
        if layer.activation == "relu":
            margins = np.minimum(margins, relu_margin(z))
        h = acts[layer.activation](z) if layer.activation else z
    return margins


def well_conditioned_batch(spec: ModelSpec, weights: dict[str, np.ndarray], batch_size: int, seed: int = 0,
                           dtype=np.float64, margin: float = 1e-6, max_draws: int = 50):
    """Like random_batch, but every sample keeps kink_margins >= margin: redrawn (deterministically
    for a seed) until it does. Raises ValueError when max_draws rounds of draws cannot fill the batch."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(max_draws):
        x, y = random_batch(spec, batch_size, int(rng.integers(2**31)), np.float64)
        good = kink_margins(spec, weights, x) >= margin
        xs.append(x[good])
        ys.append(y[good])
        if sum(len(a) for a in xs) >= batch_size:
            x, y = np.concatenate(xs)[:batch_size], np.concatenate(ys)[:batch_size]
            return x.astype(dtype), (y if y.dtype.kind == "i" else y.astype(dtype))
    raise ValueError(f"{spec.name}: could not draw {batch_size} samples {margin:g} away from every kink "
                     f"in {max_draws} rounds; lower the margin")
