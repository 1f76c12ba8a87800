"""Layers as plain classes: forward caches what backward needs, backward fills `grads`.

Images between layers are (C, H, W, N), "CHWN": a convolution of a whole batch is then one GEMM
with no transposes, and every window copy moves long contiguous runs (see functional). Flatten
turns CHWN into the canonical NCHW flattening, and Sequential converts its inputs and outputs, so
that nothing outside the layers ever sees CHWN. Each layer owns a Workspace, so a model called
again and again with one batch size reuses the same large buffers; outputs of `forward` and
`backward` may live in it and stay valid until the layer is called again (Sequential copies what
it hands out).
"""

from __future__ import annotations

import numpy as np

from . import functional as F

__all__ = ["Layer", "Dense", "Conv2D", "MaxPool2D", "Flatten", "ReLU", "Sigmoid", "Tanh", "Softmax"]


class Layer:
    """name; params and grads keyed '<name>.weight' / '<name>.bias'; forward(x); backward(dy)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.workspace = F.Workspace()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def parameters(self) -> dict[str, np.ndarray]:
        return self.params

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """Gradient with respect to the input of the last forward; None when need_dx is False."""
        raise NotImplementedError

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={v.shape}" for k, v in self.params.items())
        return f"{type(self).__name__}({self.name!r}{', ' if shapes else ''}{shapes})"


class _Parametric(Layer):
    def __init__(self, name: str, weight: np.ndarray, bias: np.ndarray | None) -> None:
        super().__init__(name)
        self.params[f"{name}.weight"] = weight
        if bias is not None:
            self.params[f"{name}.bias"] = bias

    @property
    def weight(self) -> np.ndarray:
        return self.params[f"{self.name}.weight"]

    @property
    def bias(self) -> np.ndarray | None:
        return self.params.get(f"{self.name}.bias")

    def _store(self, dw: np.ndarray, db: np.ndarray | None) -> None:
        self.grads[f"{self.name}.weight"] = dw
        if db is not None:
            self.grads[f"{self.name}.bias"] = db


class Dense(_Parametric):
    """y = x @ weight + bias, weight (in, out)."""

    def forward(self, x):
        self._x = x
        w = self.weight
        y = self.workspace.empty("y", (x.shape[0], w.shape[1]), x.dtype)
        np.matmul(x, w, out=y)
        if self.bias is not None:
            y += self.bias
        return y

    def backward(self, dy, need_dx=True):
        dx, dw, db = F.linear_backward(dy, self._x, self.weight, self.bias, need_dx=need_dx)
        self._store(dw, db)
        return dx


class Conv2D(_Parametric):
    """2-D cross-correlation on CHWN images, weight (out, in, kh, kw); stride, padding as F.conv2d."""

    def __init__(self, name, weight, bias, stride=1, padding=0) -> None:
        super().__init__(name, weight, bias)
        self.stride, self.padding = stride, padding
        self._geo: F.ConvGeometry | None = None

    def forward(self, x):
        geo = self._geo
        if geo is None or geo.in_hw != x.shape[1:3]:
            geo = self._geo = F.conv_geometry(x.shape[1:3], self.weight.shape[2:], self.stride, self.padding)
        y, self._cols = F.conv2d_chwn(x, self.weight, self.bias, geo, self.workspace)
        return y

    def backward(self, dy, need_dx=True):
        dx, dw, db = F.conv2d_chwn_backward(dy, self._cols, self.weight.shape[1], self.weight,
                                            self._geo, self.workspace, need_dx=need_dx,
                                            need_db=self.bias is not None)
        self._store(dw, db)
        return dx


class MaxPool2D(Layer):
    """Max pooling of CHWN images; pads are -inf."""

    def __init__(self, name, kernel_size, stride=None, padding=0) -> None:
        super().__init__(name)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self._geo: F.ConvGeometry | None = None

    def forward(self, x):
        geo = self._geo
        if geo is None or geo.in_hw != x.shape[1:3]:
            geo = self._geo = F.pool_geometry(x.shape[1:3], self.kernel_size, self.stride, self.padding)
        self._y, self._windows = F.max_pool2d_windows(x, geo, self.workspace)
        return self._y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        return F.max_pool2d_windows_backward(dy, self._y, self._windows, self._geo, self.workspace)


class Flatten(Layer):
    """CHWN (C, H, W, N) -> (N, C*H*W), the canonical (NCHW) flattening; 2-D passes through."""

    def forward(self, x):
        self._x_shape = x.shape
        if x.ndim == 2:
            return x
        n = x.shape[3]
        flat = self.workspace.empty("y", (n, x.size // n), x.dtype)
        np.copyto(flat, x.reshape(-1, n).T)
        return flat

    def backward(self, dy, need_dx=True):
        if not need_dx or len(self._x_shape) == 2:
            return dy if need_dx else None
        dx = self.workspace.empty("dx", self._x_shape, dy.dtype)
        np.copyto(dx.reshape(-1, dy.shape[0]), dy.T)
        return dx


class ReLU(Layer):
    """max(x, 0). With inplace=True it overwrites its input and the incoming gradient: Sequential
    asks for that only after a layer whose backward does not read its own output (Dense, Conv2D),
    and the incoming gradient is always a buffer of the layer after it."""

    def __init__(self, name: str, inplace: bool = False) -> None:
        super().__init__(name)
        self.inplace = inplace

    def forward(self, x):
        y = x if self.inplace else self.workspace.empty("y", x.shape, x.dtype)
        self._y = F.relu(x, out=y)
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        ws = self.workspace
        mask = ws.empty("mask", dy.shape, np.bool_)
        np.greater(self._y, 0, out=mask)
        dx = dy if self.inplace else ws.empty("dx", dy.shape, dy.dtype)
        np.multiply(dy, mask, out=dx)
        return dx


class _Elementwise(Layer):
    _forward = staticmethod(F.sigmoid)
    _backward = staticmethod(F.sigmoid_backward)

    def forward(self, x):
        self._y = self._forward(x)
        return self._y

    def backward(self, dy, need_dx=True):
        return self._backward(dy, self._y) if need_dx else None


class Sigmoid(_Elementwise):
    _forward = staticmethod(F.sigmoid)
    _backward = staticmethod(F.sigmoid_backward)


class Tanh(_Elementwise):
    _forward = staticmethod(F.tanh)
    _backward = staticmethod(F.tanh_backward)


class Softmax(Layer):
    """Softmax over the last axis (the class axis of a dense layer's output)."""

    def forward(self, x):
        self._y = F.softmax(x, axis=-1)
        return self._y

    def backward(self, dy, need_dx=True):
        return F.softmax_backward(dy, self._y, axis=-1) if need_dx else None
