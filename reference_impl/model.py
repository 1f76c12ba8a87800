"""Sequential: a ModelSpec made runnable, with forward, loss, gradients and training steps."""

from __future__ import annotations

import numpy as np

from . import functional as F
from . import losses
from .layers import Conv2D, Dense, Flatten, Layer, MaxPool2D, ReLU, Sigmoid, Softmax, Tanh
from .optim import Optimizer, from_spec
from .spec import LayerSpec, ModelSpec
from .weights import check_weights

__all__ = ["Sequential", "build"]

_ACTIVATION_LAYERS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh, "softmax": Softmax}


def _make_layers(layer: LayerSpec, weights: dict[str, np.ndarray]) -> list[Layer]:
    """The layer objects for one LayerSpec: the layer itself, then its activation if it has one.

    A ReLU straight after Dense or Conv2D works in place: their backward never reads their output.
    """
    kind, name = layer.kind, layer.name
    if kind == "dense":
        made: list[Layer] = [Dense(name, weights[f"{name}.weight"], weights.get(f"{name}.bias"))]
    elif kind == "conv2d":
        made = [Conv2D(name, weights[f"{name}.weight"], weights.get(f"{name}.bias"),
                       stride=layer.stride, padding=layer.padding)]
    elif kind == "max_pool2d":
        made = [MaxPool2D(name, layer.kernel_size, layer.stride, layer.padding)]
    elif kind == "flatten":
        made = [Flatten(name)]
    else:
        made = [_ACTIVATION_LAYERS[kind](name)]
    if layer.activation == "relu":
        made.append(ReLU(name, inplace=True))
    elif layer.activation:
        made.append(_ACTIVATION_LAYERS[layer.activation](name))
    return made


def _to_internal(x: np.ndarray) -> np.ndarray:
    """NCHW -> CHWN, the layout layers keep images in (a contiguous copy); others pass through."""
    return np.ascontiguousarray(F.to_chwn(x)) if x.ndim == 4 else x


def _to_canonical(a: np.ndarray) -> np.ndarray:
    """A copy the caller owns, images back in NCHW."""
    return F.to_nchw(a) if a.ndim == 4 else a.copy()


def _fast_plan(layers: list[Layer]) -> list[Layer]:
    """The layers in the order they run for forward and training: ReLU then MaxPool2D becomes
    MaxPool2D then ReLU, on a tensor KH*KW times smaller.

    NOTE: the two give the same outputs and the same gradients. max is monotone, so
    max(relu(x)) = relu(max(x)). Backward: when the window's max m is > 0, relu changes no value
    >= m, so both orders route dy to the same first maximum; when m <= 0, relu's gradient is 0 at
    the routed element in one order and at the output in the other, so every input gets 0.
    layer_outputs keeps the spec's order, so each layer's own output can still be compared.
    """
    plan: list[Layer] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, ReLU) and i + 1 < len(layers) and isinstance(layers[i + 1], MaxPool2D):
            # A fresh ReLU: after the pool it must not work in place (the pool's backward reads y).
            plan += [layers[i + 1], ReLU(layer.name)]
            i += 2
        else:
            plan.append(layer)
            i += 1
    return plan


class Sequential:
    """Layers applied in order, plus the spec's loss.

    Cross-entropy after a final softmax (or sigmoid) is computed from the logits, which is the
    same function evaluated stably; `forward` still returns the probabilities.
    Arrays handed out (outputs, gradients) are the caller's: none is overwritten by a later call.
    """

    def __init__(self, spec: ModelSpec, weights: dict[str, np.ndarray], copy: bool = True) -> None:
        check_weights(spec, weights)
        self.spec = spec
        self.dtype = np.asarray(next(iter(weights.values()))).dtype
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"weights must be float32 or float64, got {self.dtype}")
        weights = {k: np.array(v, copy=copy) for k, v in weights.items()}
        self.layers: list[Layer] = []
        self._ends: list[tuple[str, int]] = []  # (spec layer name, index of its last layer object)
        for layer in spec.layers:
            self.layers.extend(_make_layers(layer, weights))
            self._ends.append((layer.name, len(self.layers) - 1))
        self._fused = spec.loss_takes_logits
        if spec.loss == "sparse_categorical_crossentropy":
            self._loss = (losses.sparse_softmax_cross_entropy, losses.sparse_softmax_cross_entropy_backward)
        elif spec.loss == "binary_crossentropy":
            self._loss = (losses.sigmoid_binary_crossentropy, losses.sigmoid_binary_crossentropy_backward)
        else:
            self._loss = (losses.mse, losses.mse_backward)
        self._plan = _fast_plan(self.layers)
        # The layers the loss sees: without the final activation when the loss takes logits.
        self._train_layers = self._plan[:-1] if self._fused else self._plan

    # -- parameters -------------------------------------------------------------------------

    def parameters(self) -> dict[str, np.ndarray]:
        """The live parameter arrays, keyed '<layer>.weight' / '<layer>.bias' (updated in place)."""
        params: dict[str, np.ndarray] = {}
        for layer in self.layers:
            params.update(layer.params)
        return params

    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.parameters().items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        check_weights(self.spec, weights)
        for k, p in self.parameters().items():
            p[...] = weights[k]

    # -- computation ------------------------------------------------------------------------

    def _input(self, x) -> np.ndarray:
        """The batch as the layers take it: the model's dtype, images CHWN."""
        x = np.asarray(x, dtype=self.dtype)
        expected = self.spec.input_shape
        if x.shape[1:] != expected:
            shape = ", ".join(map(str, expected))
            raise ValueError(f"model {self.spec.name!r} takes inputs (N, {shape}), got {x.shape}")
        return _to_internal(x)

    def _run(self, layers: list[Layer], x: np.ndarray) -> np.ndarray:
        for layer in layers:
            x = layer.forward(x)
        return x

    def forward(self, x) -> np.ndarray:
        """The model's outputs (probabilities after a final softmax/sigmoid, else raw values)."""
        return _to_canonical(self._run(self._plan, self._input(x)))

    __call__ = forward

    def layer_outputs(self, x) -> dict[str, np.ndarray]:
        """Each spec layer's output (after its activation), in order, for localising differences."""
        x = self._input(x)
        outputs, ends = {}, dict((i, name) for name, i in self._ends)
        for i, layer in enumerate(self.layers):
            x = layer.forward(x)
            if i in ends:
                outputs[ends[i]] = _to_canonical(x)
        return outputs

    def loss(self, x, y):
        out = self._run(self._train_layers, self._input(x))
        return self._loss[0](_to_canonical(out), self._target(y))

    def _target(self, y) -> np.ndarray:
        if self.spec.loss == "sparse_categorical_crossentropy":
            return np.asarray(y)
        return np.asarray(y, dtype=self.dtype)

    def loss_and_grads(self, x, y, input_grad: bool = False):
        """(loss, {name: gradient}) for a batch; with input_grad, grads['input'] is dloss/dx too.

        Gradients are in the canonical layout and names, of the mean loss over the batch.
        """
        loss = self.forward_loss(x, y)
        return loss, self.backward(input_grad)

    def forward_loss(self, x, y):
        """The loss of a batch, keeping what `backward` needs: the two halves of loss_and_grads,
        apart so that a backward pass can be timed on its own."""
        target = self._target(y)
        out = self._run(self._train_layers, self._input(x))
        if out.ndim == 4:
            out = F.to_nchw(out)
        loss = self._loss[0](out, target)
        self._dy = _to_internal(self._loss[1](out, target))
        return loss

    def backward(self, input_grad: bool = False) -> dict[str, np.ndarray]:
        """The gradients of the last forward_loss (once: it consumes what the forward kept)."""
        dy, self._dy = getattr(self, "_dy", None), None
        if dy is None:
            raise RuntimeError("backward needs a forward_loss first (and each forward_loss serves one backward)")
        grads: dict[str, np.ndarray] = {}
        for i in range(len(self._train_layers) - 1, -1, -1):
            layer = self._train_layers[i]
            dy = layer.backward(dy, need_dx=i > 0 or input_grad)
            grads.update(layer.grads)
        if input_grad:
            grads["input"] = _to_canonical(dy)
        return grads

    def layer_output_grads(self, x, y) -> dict[str, np.ndarray]:
        """dLoss/d(each spec layer's output, after its activation), canonical layout, for
        localising a backward error at its own layer. The last layer is left out when the loss
        takes logits: the loss then sees the layer before its final activation, not its output.
        Runs the layers in the spec's order (not the fused plan), so each output is the layer's own."""
        layers = self.layers[:-1] if self._fused else self.layers
        target = self._target(y)
        out = self._run(layers, self._input(x))
        if out.ndim == 4:
            out = F.to_nchw(out)
        dy = _to_internal(self._loss[1](out, target))
        ends = {i: name for name, i in self._ends}
        grads: dict[str, np.ndarray] = {}
        for i in range(len(layers) - 1, -1, -1):
            if i in ends:
                grads[ends[i]] = _to_canonical(dy)
            dy = layers[i].backward(dy, need_dx=i > 0)
        return dict(reversed(grads.items()))

    def train_step(self, x, y, optimizer: Optimizer):
        """One optimizer update from the gradients of this batch; returns the loss before it."""
        loss, grads = self.loss_and_grads(x, y)
        optimizer.step(self.parameters(), grads)
        return loss

    def default_optimizer(self) -> Optimizer:
        return from_spec(self.spec.optimizer)

    def __repr__(self) -> str:
        return f"Sequential({self.spec.name!r}, {self.dtype}, {len(self.layers)} layers)"


def build(spec: ModelSpec, weights: dict[str, np.ndarray]) -> Sequential:
    """The reference model for `spec` with (a copy of) `weights`: forward, loss_and_grads, ..."""
    return Sequential(spec, weights)
