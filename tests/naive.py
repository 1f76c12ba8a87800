"""Loop-by-loop oracles for conv2d and max_pool2d, forward and backward: slow, plain, obviously right.

Every function takes and returns the canonical layout (activations NCHW, conv weight (out, in, kh, kw))
and walks batch, channel, output pixel and kernel offset one at a time, accumulating in Python floats
(float64). Nothing here is shared with reference_impl, so the fast paths are checked against an
independent statement of the same maths.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "same_pads",
    "resolve_pads",
    "conv2d",
    "conv2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
]


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding along one axis: (before, after).

    The output has ceil(size / stride) pixels; the padding is whatever the last window needs to fit,
    split in two with the odd pixel after (at the bottom or the right).
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before = total // 2
    return before, total - before


def resolve_pads(in_hw, kernel, stride, padding) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) for padding given as an int, a pair, 'valid' or 'same'."""
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride)
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        top, bottom = same_pads(in_hw[0], kh, sh)
        left, right = same_pads(in_hw[1], kw, sw)
        return top, bottom, left, right
    ph, pw = _pair(padding)
    return ph, ph, pw, pw


def _out_size(size: int, before: int, after: int, kernel: int, stride: int) -> int:
    return (size + before + after - kernel) // stride + 1


def _geometry(x_shape, kernel, stride, padding):
    h, w = x_shape[2:]
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride)
    top, bottom, left, right = resolve_pads((h, w), (kh, kw), (sh, sw), padding)
    oh = _out_size(h, top, bottom, kh, sh)
    ow = _out_size(w, left, right, kw, sw)
    return (kh, kw), (sh, sw), (top, left), (oh, ow)


# ------------------------------------------------------------------------------------------------
# conv2d: y[n, o, p, q] = b[o] + sum over c, i, j of x[n, c, p*sh + i - top, q*sw + j - left] * w[o, c, i, j]
# (terms whose input pixel falls in the zero padding are left out)


def conv2d(x, w, b=None, stride=1, padding=0):
    n_batch, channels, h, wd = x.shape
    out_channels = w.shape[0]
    (kh, kw), (sh, sw), (top, left), (oh, ow) = _geometry(x.shape, w.shape[2:], stride, padding)
    y = np.zeros((n_batch, out_channels, oh, ow), dtype=x.dtype)
    for n in range(n_batch):
        for o in range(out_channels):
            for p in range(oh):
                for q in range(ow):
                    acc = 0.0 if b is None else float(b[o])
                    for c in range(channels):
                        for i in range(kh):
                            for j in range(kw):
                                r, s = p * sh + i - top, q * sw + j - left
                                if 0 <= r < h and 0 <= s < wd:
                                    acc += float(x[n, c, r, s]) * float(w[o, c, i, j])
                    y[n, o, p, q] = acc
    return y


def conv2d_backward(dy, x, w, b=None, stride=1, padding=0):
    """(dx, dw, db): each forward product x[...] * w[...] that fed y[n, o, p, q] sends dy[n, o, p, q]
    times the other factor back to each of its two factors; db[o] adds up dy over n, p, q."""
    n_batch, channels, h, wd = x.shape
    out_channels = w.shape[0]
    (kh, kw), (sh, sw), (top, left), (oh, ow) = _geometry(x.shape, w.shape[2:], stride, padding)
    dx = np.zeros(x.shape, dtype=np.float64)
    dw = np.zeros(w.shape, dtype=np.float64)
    db = np.zeros(out_channels, dtype=np.float64)
    for n in range(n_batch):
        for o in range(out_channels):
            for p in range(oh):
                for q in range(ow):
                    g = float(dy[n, o, p, q])
                    db[o] += g
                    for c in range(channels):
                        for i in range(kh):
                            for j in range(kw):
                                r, s = p * sh + i - top, q * sw + j - left
                                if 0 <= r < h and 0 <= s < wd:
                                    dx[n, c, r, s] += g * float(w[o, c, i, j])
                                    dw[o, c, i, j] += g * float(x[n, c, r, s])
    return dx.astype(x.dtype), dw.astype(x.dtype), (None if b is None else db.astype(x.dtype))


# ------------------------------------------------------------------------------------------------
# max_pool2d: padding pixels are -inf, so they never win against a real input


def _window(x, n, c, p, q, geometry):
    """The window of output (p, q) as [((r, s) or None for a pad, value)], in row-major order."""
    (kh, kw), (sh, sw), (top, left), _ = geometry
    h, wd = x.shape[2:]
    cells = []
    for i in range(kh):
        for j in range(kw):
            r, s = p * sh + i - top, q * sw + j - left
            if 0 <= r < h and 0 <= s < wd:
                cells.append(((r, s), float(x[n, c, r, s])))
            else:
                cells.append((None, -math.inf))
    return cells


def _first_max(cells):
    """(position, value) of the window's maximum: NaN if any value is NaN, else the FIRST largest."""
    for position, value in cells:
        if math.isnan(value):
            return position, value
    best_position, best = cells[0]
    for position, value in cells[1:]:
        if value > best:  # strictly greater: a later equal value never replaces the first
            best_position, best = position, value
    return best_position, best


def max_pool2d(x, kernel_size, stride=None, padding=0):
    geometry = _geometry(x.shape, kernel_size, kernel_size if stride is None else stride, padding)
    oh, ow = geometry[3]
    y = np.zeros((*x.shape[:2], oh, ow), dtype=x.dtype)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for p in range(oh):
                for q in range(ow):
                    y[n, c, p, q] = _first_max(_window(x, n, c, p, q, geometry))[1]
    return y


def max_pool2d_backward(dy, x, kernel_size, stride=None, padding=0):
    """Each output's gradient goes to the first maximum of its window (row-major), PyTorch's rule."""
    geometry = _geometry(x.shape, kernel_size, kernel_size if stride is None else stride, padding)
    oh, ow = geometry[3]
    dx = np.zeros(x.shape, dtype=np.float64)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for p in range(oh):
                for q in range(ow):
                    position, _ = _first_max(_window(x, n, c, p, q, geometry))
                    if position is not None:
                        dx[n, c, position[0], position[1]] += float(dy[n, c, p, q])
    return dx.astype(x.dtype)
