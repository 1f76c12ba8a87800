"""A catalogue model's forward pass composed from reference_impl.functional, one op per spec layer, in
NCHW throughout: an independent route to what Sequential computes with its own layers and layout."""

from __future__ import annotations

import numpy as np

from reference_impl import functional as F
from reference_impl.spec import ModelSpec
from tests import naive

_ACTIVATIONS = {"relu": F.relu, "sigmoid": F.sigmoid, "tanh": F.tanh, "softmax": F.softmax}


def layer_values(spec: ModelSpec, weights: dict[str, np.ndarray], x: np.ndarray):
    """[(layer name, its input, its value before the activation, its output)] for every spec layer."""
    values = []
    h = x
    for layer in spec.layers:
        w, b = weights.get(f"{layer.name}.weight"), weights.get(f"{layer.name}.bias")
        if layer.kind == "dense":
            z = F.linear(h, w, b)
        elif layer.kind == "conv2d":
            z = F.conv2d(h, w, b, layer.stride, layer.padding)
        elif layer.kind == "max_pool2d":
            z = F.max_pool2d(h, layer.kernel_size, layer.stride, layer.padding)
        elif layer.kind == "flatten":
            z = h.reshape(h.shape[0], -1)  # NCHW order: the canonical flattening
        else:
            z = _ACTIVATIONS[layer.kind](h)
        out = _ACTIVATIONS[layer.activation](z) if layer.activation else z
        values.append((layer.name, h, z, out))
        h = out
    return values


def forward(spec: ModelSpec, weights: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
    """Each spec layer's output, by name, in order."""
    return {name: out for name, _, _, out in layer_values(spec, weights, x)}


def kink_margin(spec: ModelSpec, weights: dict[str, np.ndarray], x: np.ndarray) -> float:
    """How far the forward pass is from a point where the loss is not differentiable: the smallest
    |input| of a ReLU, and the smallest gap between the two largest values of a pooling window.
    A finite-difference step that moves a value by more than this may cross the kink."""
    margins = [np.inf]
    for layer, (_, h, z, _) in zip(spec.layers, layer_values(spec, weights, x), strict=True):
        if layer.activation == "relu":
            margins.append(float(np.abs(z).min()))
        elif layer.kind == "relu":
            margins.append(float(np.abs(h).min()))
        elif layer.kind == "max_pool2d":
            margins.append(_pool_margin(h, layer.kernel_size, layer.stride, layer.padding))
    return min(margins)


def _pool_margin(h, kernel, stride, padding) -> float:
    top, bottom, left, right = naive.resolve_pads(h.shape[2:], kernel, stride, padding)
    hp = np.pad(h, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=-np.inf)
    out_h, out_w = F.max_pool2d(h, kernel, stride, padding).shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(hp, kernel, axis=(2, 3))
    windows = windows[:, :, ::stride[0], ::stride[1]][:, :, :out_h, :out_w]
    ranked = np.sort(windows.reshape(*windows.shape[:4], -1), axis=-1)
    gap = ranked[..., -1] - ranked[..., -2]
    # Windows of ReLU zeros tie exactly, but moving any of them also moves it away from the kink
    # the ReLU margin already covers, so they do not count here.
    return float(np.where(ranked[..., -1] > 0, gap, np.inf).min())
