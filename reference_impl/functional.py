"""The maths of every layer as plain NumPy functions, forward and backward, in the canonical layout.

Layout (ONNX's): activations NCHW, conv weight (out, in, kh, kw), dense weight (in, out), bias (out,).
float32 in gives float32 out, float64 likewise; mixing dtypes is an error, never a silent upcast.

Every function optionally takes a `workspace` (a `Workspace`): then its large temporaries and its
result live in buffers that are reused from call to call, which spares the page faults a fresh
multi-megabyte array costs each time. A result taken from a workspace is overwritten by the next
call that uses the same workspace; without one, every call returns fresh arrays.

Backward functions of activations take the forward *output* `y` (that is all they need); the others
take the forward inputs, as in `conv2d_backward(dy, x, w, b, stride, padding) -> (dx, dw, db)`.

Past 400 lines on purpose: every op with its backward beside it, one function each, as ONNX's
reference keeps its ops; layers.py and model.py build on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Workspace",
    "ConvGeometry",
    "conv_geometry",
    "pool_geometry",
    "conv2d",
    "conv2d_backward",
    "conv2d_chwn",
    "conv2d_chwn_backward",
    "to_chwn",
    "to_nchw",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool2d_windows",
    "max_pool2d_windows_backward",
    "linear",
    "linear_backward",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "softmax",
    "softmax_backward",
    "log_softmax",
    "log_softmax_backward",
]


class Workspace:
    """Named scratch buffers, reused while the requested shape and dtype stay the same."""

    __slots__ = ("_buffers",)

    def __init__(self) -> None:
        self._buffers: dict[object, np.ndarray] = {}

    def empty(self, key: object, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype)
            self._buffers[key] = buf
        return buf

    def zeros_once(self, key: object, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A buffer zeroed when it is made; callers write only the part that must change."""
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.zeros(shape, dtype)
            self._buffers[key] = buf
        return buf

    def clear(self) -> None:
        self._buffers.clear()

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._buffers.values())


class _Fresh:
    """The workspace used when none is given: every request is a new array."""

    @staticmethod
    def empty(key: object, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.empty(shape, dtype)

    @staticmethod
    def zeros_once(key: object, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.zeros(shape, dtype)


_FRESH = _Fresh()


def _ws(workspace: Workspace | None) -> Workspace | _Fresh:
    return _FRESH if workspace is None else workspace


# --------------------------------------------------------------------------------------------
# argument checking


def _pair(value: int | tuple[int, int], what: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    else:
        pair = tuple(int(v) for v in value)
        if len(pair) != 2:
            raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")
    return pair  # type: ignore[return-value]


def _check_float(name: str, a: np.ndarray, dtype: np.dtype | None = None) -> None:
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} is {a.dtype} but the input is {dtype}: cast one so both match")


def _check_ndim(name: str, a: np.ndarray, ndim: int, layout: str) -> None:
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {a.shape}")


@dataclass(frozen=True, slots=True)
class ConvGeometry:
    """Everything about a sliding window over an NCHW input that does not depend on its values."""

    in_hw: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, bottom, left, right
    out_hw: tuple[int, int]

    @property
    def padded_hw(self) -> tuple[int, int]:
        top, bottom, left, right = self.pads
        return self.in_hw[0] + top + bottom, self.in_hw[1] + left + right

    def window(self, i: int, j: int) -> tuple[slice, slice]:
        """Rows and columns of the padded input that kernel offset (i, j) touches."""
        (sh, sw), (oh, ow) = self.stride, self.out_hw
        return slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw)


def _geometry(in_hw, kernel, stride, padding, what: str) -> ConvGeometry:
    kernel = _pair(kernel, f"{what} kernel_size")
    stride = _pair(stride, f"{what} stride")
    if min(kernel) < 1 or min(stride) < 1:
        raise ValueError(f"{what}: kernel_size and stride must be >= 1, got {kernel} and {stride}")
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0, 0, 0)
        elif padding == "same":
            # TensorFlow's rule: out = ceil(in / stride); the odd pixel of padding goes at the end.
            pads_hw = []
            for size, k, s in zip(in_hw, kernel, stride, strict=True):
                out = -(-size // s)
                total = max((out - 1) * s + k - size, 0)
                pads_hw += [total // 2, total - total // 2]
            pads = tuple(pads_hw)
        else:
            raise ValueError(f"{what} padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    else:
        ph, pw = _pair(padding, f"{what} padding")
        if ph < 0 or pw < 0:
            raise ValueError(f"{what} padding must be >= 0, got {padding!r}")
        pads = (ph, ph, pw, pw)
    top, bottom, left, right = pads
    out_h = (in_hw[0] + top + bottom - kernel[0]) // stride[0] + 1
    out_w = (in_hw[1] + left + right - kernel[1]) // stride[1] + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"{what}: a {kernel} window with stride {stride} and padding {padding!r} does not fit an "
            f"input of {in_hw[0]}x{in_hw[1]}"
        )
    return ConvGeometry(tuple(in_hw), kernel, stride, pads, (out_h, out_w))


def conv_geometry(in_hw, kernel_size, stride=1, padding=0) -> ConvGeometry:
    """Output size and padding of a convolution; padding is an int, a pair, 'valid' or 'same'."""
    return _geometry(tuple(in_hw), kernel_size, stride, padding, "conv2d")


def pool_geometry(in_hw, kernel_size, stride=None, padding=0) -> ConvGeometry:
    """Like conv_geometry; stride defaults to the kernel size, as in every framework."""
    return _geometry(tuple(in_hw), kernel_size, kernel_size if stride is None else stride, padding,
                     "max_pool2d")


# --------------------------------------------------------------------------------------------
# conv2d and max_pool2d work on a batch-last core: (C, H, W, N), "CHWN"
#
# NOTE: with channels first and the batch last, the im2col matrix (C*KH*KW, OH*OW*N) of a whole
# batch meets the weight (O, C*KH*KW) in one large GEMM whose result (O, OH*OW*N) is already the
# CHWN output, so a stack of conv, relu and pool layers needs no transpose at all. Every window
# copy (im2col, col2im, pooling) then moves runs of at least N contiguous values, instead of OW
# values (NCHW) or single values every `stride` (strided pooling on NCHW was ~4x slower here).
# cuda-convnet used the same layout for the same reason. The public NCHW functions below
# transpose at their ends; Sequential keeps images CHWN between its layers.


def to_chwn(x: np.ndarray) -> np.ndarray:
    """NCHW -> CHWN, as a view."""
    return x.transpose(1, 2, 3, 0)


def to_nchw(x: np.ndarray) -> np.ndarray:
    """CHWN -> NCHW, as a new contiguous array (always a copy, even when N = 1 makes it a view)."""
    return np.array(x.transpose(3, 0, 1, 2), order="C", copy=True)


def _im2col(xc: np.ndarray, geo: ConvGeometry, ws, key: object) -> np.ndarray:
    """(C, H, W, N) -> columns (C*KH*KW, OH*OW*N); a loop over kernel offsets only."""
    c, n = xc.shape[0], xc.shape[3]
    (kh, kw), (oh, ow), (top, _, left, _) = geo.kernel, geo.out_hw, geo.pads
    h, w = geo.in_hw
    if any(geo.pads):
        xp = ws.zeros_once((key, "xpad", geo.pads), (c, *geo.padded_hw, n), xc.dtype)
        xp[:, top:top + h, left:left + w] = xc  # the border stays zero from the first call
    else:
        xp = xc
    cols = ws.empty((key, "cols"), (c, kh, kw, oh, ow, n), xc.dtype)
    for i in range(kh):
        for j in range(kw):
            rows, columns = geo.window(i, j)
            cols[:, i, j] = xp[:, rows, columns]
    return cols.reshape(c * kh * kw, oh * ow * n)


def _col2im(dcols: np.ndarray, c: int, n: int, geo: ConvGeometry, ws, key: object) -> np.ndarray:
    """The adjoint of _im2col: columns -> (C, H, W, N), adding where windows overlap."""
    (kh, kw), (oh, ow), (top, _, left, _) = geo.kernel, geo.out_hw, geo.pads
    h, w = geo.in_hw
    dxp = ws.empty((key, "dxpad"), (c, *geo.padded_hw, n), dcols.dtype)
    dxp.fill(0)
    d6 = dcols.reshape(c, kh, kw, oh, ow, n)
    for i in range(kh):
        for j in range(kw):
            rows, columns = geo.window(i, j)
            dxp[:, rows, columns] += d6[:, i, j]
    return dxp[:, top:top + h, left:left + w] if any(geo.pads) else dxp


def conv2d_chwn(xc: np.ndarray, w: np.ndarray, b: np.ndarray | None, geo: ConvGeometry,
                workspace: Workspace | None = None, key: object = "conv"):
    """conv2d on a CHWN input: returns (y in CHWN, the im2col matrix the backward reuses)."""
    ws = _ws(workspace)
    o, n = w.shape[0], xc.shape[3]
    cols = _im2col(xc, geo, ws, key)
    y = ws.empty((key, "y"), (o, *geo.out_hw, n), xc.dtype)
    y2 = y.reshape(o, -1)
    np.matmul(w.reshape(o, -1), cols, out=y2)
    if b is not None:
        y2 += b[:, None]
    return y, cols


def conv2d_chwn_backward(dyc: np.ndarray, cols: np.ndarray, in_channels: int, w: np.ndarray,
                         geo: ConvGeometry, workspace: Workspace | None = None, key: object = "conv",
                         need_dx: bool = True, need_db: bool = True):
    """Gradients from a CHWN dy and the forward's columns: (dx in CHWN or None, dw, db or None).

    With Y2 = W2 @ cols (W2 = w reshaped to (O, C*KH*KW)): dW2 = dY2 @ cols^T; db sums dY over
    pixels and batch; dcols = W2^T @ dY2, scattered back onto the input by col2im.
    """
    o, n = w.shape[0], dyc.shape[3]
    dy2 = dyc.reshape(o, -1)
    # NOTE: cols @ dy2^T, transposed after, is the same product as dy2 @ cols^T; OpenBLAS runs it
    # 1.2-2.4x faster here for these long, thin operands (the transpose copies only O*C*KH*KW).
    dw = np.ascontiguousarray((cols @ dy2.T).T).reshape(w.shape)
    db = dy2.sum(axis=1) if need_db else None
    dx = None
    if need_dx:
        ws = _ws(workspace)
        dcols = ws.empty((key, "dcols"), cols.shape, dyc.dtype)
        np.matmul(w.reshape(o, -1).T, dy2, out=dcols)
        dx = _col2im(dcols, in_channels, n, geo, ws, key)
    return dx, dw, db


def _check_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> None:
    _check_ndim("conv2d input", x, 4, "NCHW")
    _check_ndim("conv2d weight", w, 4, "(out, in, kh, kw)")
    _check_float("conv2d input", x)
    _check_float("conv2d weight", w, x.dtype)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"conv2d weight {w.shape} expects {w.shape[1]} input channels, "
                         f"input {x.shape} has {x.shape[1]}")
    if b is not None:
        _check_float("conv2d bias", b, x.dtype)
        if b.shape != (w.shape[0],):
            raise ValueError(f"conv2d bias must have shape ({w.shape[0]},), got {b.shape}")


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride=1, padding=0, *,
           workspace: Workspace | None = None) -> np.ndarray:
    """2-D cross-correlation (what every framework calls convolution) of an NCHW input.

    padding: an int, a pair (ph, pw) applied on both sides, 'valid' (none) or 'same' (TensorFlow's
    rule: output size ceil(in / stride), any odd pixel of padding at the bottom/right).
    """
    _check_conv(x, w, b)
    geo = conv_geometry(x.shape[2:], w.shape[2:], stride, padding)
    return to_nchw(conv2d_chwn(to_chwn(x), w, b, geo, workspace)[0])


def conv2d_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                    stride=1, padding=0, *, workspace: Workspace | None = None):
    """Gradients of conv2d with respect to x, w and b: (dx, dw, db), db None when b is None."""
    _check_conv(x, w, b)
    geo = conv_geometry(x.shape[2:], w.shape[2:], stride, padding)
    if dy.shape != (x.shape[0], w.shape[0], *geo.out_hw):
        raise ValueError(f"conv2d_backward: dy has shape {dy.shape}, "
                         f"the output has {(x.shape[0], w.shape[0], *geo.out_hw)}")
    _check_float("conv2d dy", dy, x.dtype)
    ws = _ws(workspace)
    cols = _im2col(to_chwn(x), geo, ws, "conv")
    dx, dw, db = conv2d_chwn_backward(to_chwn(dy), cols, x.shape[1], w, geo, workspace,
                                      need_db=b is not None)
    return to_nchw(dx), dw, db


def max_pool2d_windows(xc: np.ndarray, geo: ConvGeometry, workspace: Workspace | None = None,
                       key: object = "pool"):
    """Max pooling of a CHWN input; returns (y, windows), windows[k] = kernel offset k's inputs.

    The windows are gathered into one contiguous (KH*KW, C, OH, OW, N) array so that the max and,
    in the backward, the comparisons run on contiguous memory. np.maximum propagates NaN, as the
    frameworks do.
    """
    ws = _ws(workspace)
    c, n = xc.shape[0], xc.shape[3]
    h, w = geo.in_hw
    (kh, kw), (top, _, left, _) = geo.kernel, geo.pads
    if any(geo.pads):
        # Padding never wins: it is -inf, as in PyTorch and TensorFlow.
        xp = ws.empty((key, "xpad"), (c, *geo.padded_hw, n), xc.dtype)
        xp.fill(-np.inf)
        xp[:, top:top + h, left:left + w] = xc
    else:
        xp = xc
    windows = ws.empty((key, "windows"), (kh * kw, c, *geo.out_hw, n), xc.dtype)
    for i in range(kh):
        for j in range(kw):
            rows, columns = geo.window(i, j)
            np.copyto(windows[i * kw + j], xp[:, rows, columns])
    y = ws.empty((key, "y"), windows.shape[1:], xc.dtype)
    np.copyto(y, windows[0])
    for k in range(1, kh * kw):
        np.maximum(y, windows[k], out=y)
    return y, windows


def max_pool2d_windows_backward(dy: np.ndarray, y: np.ndarray, windows: np.ndarray,
                                geo: ConvGeometry, workspace: Workspace | None = None,
                                key: object = "pool") -> np.ndarray:
    """CHWN gradient of max pooling. Each output's gradient goes to the first maximum of its window
    in row-major order (PyTorch's rule); the other tied inputs get none."""
    ws = _ws(workspace)
    h, w = geo.in_hw
    (kh, kw), (top, _, left, _) = geo.kernel, geo.pads
    c, n = y.shape[0], y.shape[3]
    dxp = ws.empty((key, "dxpad"), (c, *geo.padded_hw, n), dy.dtype)
    dxp.fill(0)
    hit = ws.empty((key, "hit"), y.shape, np.bool_)
    taken = ws.empty((key, "taken"), y.shape, np.bool_)
    taken.fill(False)
    part = ws.empty((key, "part"), y.shape, dy.dtype)
    disjoint = geo.stride[0] >= kh and geo.stride[1] >= kw
    for i in range(kh):
        for j in range(kw):
            np.equal(windows[i * kw + j], y, out=hit)
            np.greater(hit, taken, out=hit)  # hit and not taken: only the first maximum
            np.logical_or(taken, hit, out=taken)
            np.multiply(dy, hit, out=part)
            rows, columns = geo.window(i, j)
            if disjoint:
                np.copyto(dxp[:, rows, columns], part)
            else:
                dxp[:, rows, columns] += part
    return dxp[:, top:top + h, left:left + w] if any(geo.pads) else dxp


def max_pool2d(x: np.ndarray, kernel_size, stride=None, padding=0, *,
               workspace: Workspace | None = None) -> np.ndarray:
    """Max pooling over NCHW; stride defaults to kernel_size; padding as for conv2d (pads are -inf)."""
    _check_ndim("max_pool2d input", x, 4, "NCHW")
    _check_float("max_pool2d input", x)
    geo = pool_geometry(x.shape[2:], kernel_size, stride, padding)
    return to_nchw(max_pool2d_windows(to_chwn(x), geo, workspace)[0])


def max_pool2d_backward(dy: np.ndarray, x: np.ndarray, kernel_size, stride=None, padding=0, *,
                        workspace: Workspace | None = None) -> np.ndarray:
    """Gradient of max_pool2d: each output's gradient goes to the first maximum of its window."""
    _check_ndim("max_pool2d input", x, 4, "NCHW")
    _check_float("max_pool2d input", x)
    geo = pool_geometry(x.shape[2:], kernel_size, stride, padding)
    if dy.shape != (*x.shape[:2], *geo.out_hw):
        raise ValueError(f"max_pool2d_backward: dy has shape {dy.shape}, "
                         f"the output has {(*x.shape[:2], *geo.out_hw)}")
    _check_float("max_pool2d dy", dy, x.dtype)
    y, windows = max_pool2d_windows(to_chwn(x), geo, workspace)
    return to_nchw(max_pool2d_windows_backward(to_chwn(dy), y, windows, geo, workspace))


# --------------------------------------------------------------------------------------------
# linear


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """y = x @ w + b with w of shape (in, out), ONNX Gemm's B and Keras's kernel."""
    _check_ndim("linear input", x, 2, "(batch, in)")
    _check_ndim("linear weight", w, 2, "(in, out)")
    _check_float("linear input", x)
    _check_float("linear weight", w, x.dtype)
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"linear weight {w.shape} expects {w.shape[0]} input features, "
                         f"input {x.shape} has {x.shape[1]}")
    y = x @ w
    if b is not None:
        _check_float("linear bias", b, x.dtype)
        if b.shape != (w.shape[1],):
            raise ValueError(f"linear bias must have shape ({w.shape[1]},), got {b.shape}")
        y += b
    return y


def linear_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                    need_dx: bool = True):
    """Returns (dx, dw, db): dx = dy @ w^T, dw = x^T @ dy, db = sum of dy over the batch."""
    _check_float("linear input", x)
    _check_float("linear weight", w, x.dtype)
    _check_float("linear dy", dy, x.dtype)
    if dy.shape != (x.shape[0], w.shape[1]):
        raise ValueError(f"linear_backward: dy has shape {dy.shape}, the output has {(x.shape[0], w.shape[1])}")
    dx = dy @ w.T if need_dx else None
    return dx, x.T @ dy, (dy.sum(axis=0) if b is not None else None)


# --------------------------------------------------------------------------------------------
# activations: each backward takes the forward output y


def relu(x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    return np.maximum(x, 0, out=out)


def _check_backward(name: str, dy: np.ndarray, y: np.ndarray) -> None:
    _check_float(f"{name} y", y)
    _check_float(f"{name} dy", dy, y.dtype)
    if dy.shape != y.shape:
        raise ValueError(f"{name}: dy has shape {dy.shape}, the output y has {y.shape}")


def relu_backward(dy: np.ndarray, y: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    # y > 0 exactly where x > 0; the subgradient at 0 is 0, as in every framework.
    _check_backward("relu_backward", dy, y)
    if out is None:
        return np.where(y > 0, dy, 0).astype(dy.dtype, copy=False)
    np.multiply(dy, y > 0, out=out)
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    # exp(-|x|) never overflows, and each branch is the accurate one for its sign.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    _check_backward("sigmoid_backward", dy, y)
    return dy * y * (1 - y)


def tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


def tanh_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    _check_backward("tanh_backward", dy, y)
    return dy * (1 - y * y)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def softmax_backward(dy: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """dx = y * (dy - sum(dy * y)) along axis: the Jacobian-vector product without the Jacobian."""
    _check_backward("softmax_backward", dy, y)
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def log_softmax_backward(dy: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """y is log_softmax's output: dx = dy - softmax * sum(dy)."""
    _check_backward("log_softmax_backward", dy, y)
    return dy - np.exp(y) * dy.sum(axis=axis, keepdims=True)
