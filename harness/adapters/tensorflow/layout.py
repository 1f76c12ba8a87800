"""Keras's channels-last layouts and the canonical ones: the one conversion pair. Pure NumPy.

Layouts. The model runs channels_last (NHWC), as TF users run these models on the CPU; inputs are
transposed NCHW -> NHWC with NumPy before they enter TF, and image outputs and the input gradient
NHWC -> NCHW on the way out, so every graph is exactly what a TF user would run on NHWC data.
Keras's Conv2D kernel is (kh, kw, in, out) against the canonical (out, in, kh, kw); a Dense kernel
is (in, out) as in the canonical layout, EXCEPT the first Dense after the Flatten of an image:
Keras flattens NHWC in (h, w, c) order and the canonical flattening is NCHW's (c, h, w), so that
kernel's rows are permuted (the permutation is computed from spec.layer_shapes()). `to_canonical`
and `from_canonical` are the one place that converts, for weights and gradients alike. A flattened
image that reaches the output without a Dense (no such model in the catalogue) is flattened in
NCHW order instead (Permute then Flatten), so that the outputs themselves stay canonical.

Nothing here imports TensorFlow or Keras: these are Keras's layouts on every backend.
"""

from __future__ import annotations

import numpy as np

from reference_impl.spec import ModelSpec

__all__ = ["flatten_layout", "to_canonical", "from_canonical", "nchw_to_nhwc", "nhwc_to_nchw", "native_shape"]


def flatten_layout(spec: ModelSpec):
    """How Keras's NHWC flattening relates to the canonical NCHW one, for this spec.

    Returns (rows, reorder, nchw_flattens):
      rows: dense layer name -> perm, for each first Dense after the Flatten of an image:
            keras_kernel = canonical_kernel[perm] (perm[i] is the canonical index of Keras feature i);
      reorder: spec layer name -> inverse perm, for the layers whose (2-D) outputs are in Keras's
            order (the flatten and the activations between it and the Dense): canonical = out[:, inv];
      nchw_flattens: flatten layers whose output reaches the model's output with no Dense after:
            those flatten in NCHW order (and then have no entry in reorder).
    """
    rows: dict[str, np.ndarray] = {}
    reorder: dict[str, np.ndarray] = {}
    nchw: set[str] = set()
    pending: tuple[str, np.ndarray, list[str]] | None = None  # (flatten, perm, layers in Keras order)
    for layer, in_shape, _ in spec.layer_shapes():
        if layer.kind == "flatten" and len(in_shape) == 3:
            c, h, w = in_shape
            perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()
            pending = None if (c == 1 or h * w == 1) else (layer.name, perm, [layer.name])
        elif pending is not None and layer.kind == "dense":
            rows[layer.name] = pending[1]
            inv = np.argsort(pending[1])
            reorder.update((name, inv) for name in pending[2])
            pending = None
        elif pending is not None:
            # A flatten of a flat vector or an activation: elementwise (softmax is permutation-
            # equivariant), so the features stay in Keras's order until the Dense.
            pending[2].append(layer.name)
    if pending is not None:
        nchw.add(pending[0])
    return rows, reorder, frozenset(nchw)


def _check_keys(spec: ModelSpec, arrays: dict, what: str) -> dict[str, tuple[int, ...]]:
    expected = spec.param_shapes()
    if set(arrays) != set(expected):
        missing = [k for k in expected if k not in arrays]
        extra = [k for k in arrays if k not in expected]
        raise ValueError(f"{what} do not match model {spec.name!r}: missing {missing}, unexpected {extra}")
    return expected


def to_canonical(spec: ModelSpec, weights_native: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keras parameters (or their gradients), keyed by canonical name, as canonical arrays.

    Conv kernels (kh, kw, in, out) -> (out, in, kh, kw); the rows of the first Dense kernel after
    the Flatten of an image go from Keras's (h, w, c) order back to the canonical (c, h, w) order;
    biases and other Dense kernels are unchanged. Every array returned is a new one.
    """
    expected = _check_keys(spec, weights_native, "keras weights")
    rows = flatten_layout(spec)[0]
    canonical: dict[str, np.ndarray] = {}
    for name in expected:
        layer, _, part = name.rpartition(".")
        a = np.asarray(weights_native[name])
        if part == "weight" and a.ndim == 4:
            a = a.transpose(3, 2, 0, 1)
        elif part == "weight" and layer in rows:
            a = a[np.argsort(rows[layer])]
        a = np.array(a, order="C", copy=True)
        if a.shape != expected[name]:
            raise ValueError(f"keras weight {name!r} gives canonical shape {a.shape}, expected {expected[name]}")
        canonical[name] = a
    return canonical


def from_canonical(spec: ModelSpec, canonical: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inverse of to_canonical: canonical arrays -> Keras's layouts, same names, new arrays."""
    expected = _check_keys(spec, canonical, "weights")
    rows = flatten_layout(spec)[0]
    native: dict[str, np.ndarray] = {}
    for name in expected:
        layer, _, part = name.rpartition(".")
        a = np.asarray(canonical[name])
        if a.shape != expected[name]:
            raise ValueError(f"weight {name!r}: expected {expected[name]} (canonical layout), got {a.shape}")
        if part == "weight" and a.ndim == 4:
            a = a.transpose(2, 3, 1, 0)
        elif part == "weight" and layer in rows:
            a = a[rows[layer]]
        native[name] = np.array(a, order="C", copy=True)
    return native


def nchw_to_nhwc(a: np.ndarray) -> np.ndarray:
    """A batch of images NCHW -> NHWC (a new array); anything that is not 4-D as it is."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if a.ndim == 4 else a


def nhwc_to_nchw(a: np.ndarray) -> np.ndarray:
    """A batch of images NHWC -> NCHW (a new array); anything that is not 4-D as it is."""
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if a.ndim == 4 else a


def native_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A sample's canonical shape in Keras's layout: (c, h, w) -> (h, w, c); others unchanged."""
    return (*shape[1:], shape[0]) if len(shape) == 3 else tuple(shape)
