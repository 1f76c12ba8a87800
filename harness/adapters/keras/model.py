"""The Keras model of the spec on this process's backend: layers, layouts, weights, losses, layer outputs;
each backend's gradient and update code in on_jax.py and on_torch.py."""

from __future__ import annotations

import os

import numpy as np

from reference_impl.spec import ModelSpec, OptimizerSpec

from .. import update_rules
from ..base import BuiltModel, Unavailable, layer_ends, output_ends
from ..tensorflow.layout import flatten_layout, from_canonical, native_shape, nchw_to_nhwc, nhwc_to_nchw, to_canonical
from ..tensorflow.model import keras_layers

__all__ = ["KerasModel", "keras_of"]


def keras_of(backend: str):
    """keras, when this process's Keras runs `backend`; Unavailable with the reason otherwise."""
    os.environ.setdefault("KERAS_BACKEND", backend)
    import keras

    found = keras.backend.backend()
    if found != backend:
        raise Unavailable(f"this process's Keras runs the {found!r} backend (KERAS_BACKEND is read once, when keras "
                          f"is first imported); keras-{backend} runs in a process of its own (bench run and bench "
                          "check start one)")
    return keras


class KerasModel(BuiltModel):
    """The spec as Keras layers on this process's backend; the backend's own gradient code below."""

    backend = ""

    def __init__(self, spec: ModelSpec, weights: dict[str, np.ndarray], *, device: str = "cpu",
                 dtype: str = "float32", mode: str = "eager") -> None:
        keras = keras_of(self.backend)
        self.keras = keras
        self.spec, self.device, self.dtype, self.mode = spec, device, dtype, mode
        self._np_dtype = np.dtype(dtype)
        _, self._reorder, nchw_flattens = flatten_layout(spec)
        self._steps, param_layers = keras_layers(spec, dtype, nchw_flattens)
        # The loss sees the logits when it takes them: every step but the final activation.
        self._train_steps = self._steps[:-1] if spec.loss_takes_logits else self._steps
        # The variables built on a symbolic input: shapes only, no computation (on JAX, running the
        # layers once eagerly compiled each operation, seconds a model)
        self._apply(self._steps, keras.KerasTensor((1, *native_shape(spec.input_shape)), dtype=dtype))
        self._vars = {}
        for name in spec.param_shapes():
            layer, _, part = name.rpartition(".")
            self._vars[name] = param_layers[layer].kernel if part == "weight" else param_layers[layer].bias
        self._var_list = list(self._vars.values())
        self.set_weights(weights)
        self._optimizer: OptimizerSpec | None = None
        self._steps_taken = 0

    # -- conversion ---------------------------------------------------------------------------

    def _tensor(self, a, dtype=None):
        return self.keras.ops.convert_to_tensor(np.asarray(a, dtype=dtype or self._np_dtype))

    def _input(self, x):
        x = np.asarray(x)
        if x.shape[1:] != tuple(self.spec.input_shape):
            shape = ", ".join(map(str, self.spec.input_shape))
            raise ValueError(f"model {self.spec.name!r} takes inputs (N, {shape}), got {x.shape}")
        return self._tensor(nchw_to_nhwc(np.asarray(x, dtype=self._np_dtype)))

    def _target(self, y):
        if self.spec.loss == "sparse_categorical_crossentropy":
            return self._tensor(y, np.int64)
        return self._tensor(nchw_to_nhwc(np.asarray(y, dtype=self._np_dtype)))

    def _host(self, t) -> np.ndarray:
        return np.array(self.keras.ops.convert_to_numpy(t), copy=True)

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        cast = {k: np.asarray(v, dtype=self._np_dtype) for k, v in weights.items()}
        for name, value in from_canonical(self.spec, cast).items():
            self._vars[name].assign(value)

    def get_weights(self) -> dict[str, np.ndarray]:
        return to_canonical(self.spec, {n: self._host(v.value) for n, v in self._vars.items()})

    # -- computation --------------------------------------------------------------------------

    @staticmethod
    def _apply(steps, h):
        for _, step in steps:
            h = step(h)
        return h

    def _loss_of(self, out, y):
        # NOTE: from_logits always: the loss sees the logits, the final activation left out when the
        # spec has one, and the raw outputs when it has none (lenet5, mnist_cnn)
        losses, ops = self.keras.losses, self.keras.ops
        if self.spec.loss == "sparse_categorical_crossentropy":
            per = losses.sparse_categorical_crossentropy(y, out, from_logits=True)
        elif self.spec.loss == "binary_crossentropy":
            per = losses.binary_crossentropy(y, out, from_logits=True)
        else:
            per = losses.mean_squared_error(y, out)
        return ops.mean(per)

    def forward(self, x):
        return nhwc_to_nchw(self._host(self._forward(self._input(x))))

    def _canonical_grads(self, dparams) -> dict[str, np.ndarray]:
        """Backend gradients, in the order of the variables, as canonical arrays."""
        return to_canonical(self.spec, {n: self._host(g) for n, g in zip(self._vars, dparams, strict=True)})

    def loss_and_grads(self, x, y):
        loss, dparams, dx = self._loss_and_grads(self._input(x), self._target(y))
        out = self._canonical_grads(dparams)
        out["input"] = nhwc_to_nchw(self._host(dx))
        return float(self._host(loss)), out

    def _consts(self, optimizer: OptimizerSpec) -> dict:
        return update_rules.constants(optimizer, lambda v: self._tensor(np.asarray(v, dtype=self._np_dtype)))

    def _corrections(self) -> tuple:
        return tuple(self._tensor(np.asarray(c, dtype=self._np_dtype))
                     for c in update_rules.adam_corrections(self._optimizer, self._steps_taken))

    def train_step(self, x, y):
        if self._optimizer is None:
            raise RuntimeError("call set_optimizer before train_step")
        return float(self._host(self._train(self._input(x), self._target(y))))

    def layer_outputs(self, x):
        """Layer by layer, op by op (a compiled function has no per-layer outputs); images NCHW,
        flattened features in the canonical order."""
        outputs: dict[str, np.ndarray] = {}
        ends = output_ends([layer for layer, _ in self._steps])
        h = self._input(x)
        for i, (layer, step) in enumerate(self._steps):
            h = step(h)
            if i in ends:
                outputs[layer] = self._canonical_output(layer, h)
        return outputs

    def _canonical_output(self, layer: str, h) -> np.ndarray:
        """A layer's output (or its gradient) as the canonical array: NCHW, flattened features in
        the canonical order."""
        out = nhwc_to_nchw(self._host(h))
        return np.ascontiguousarray(out[:, self._reorder[layer]]) if layer in self._reorder else out

    def _output_ends(self) -> list[int]:
        """The steps of _train_steps where a layer_output_grads layer's output is complete."""
        return layer_ends(self.spec, [layer for layer, _ in self._train_steps])

    def knobs(self) -> dict:
        return {"mode": self.mode, "keras": self.keras.__version__, "keras_backend": self.keras.backend.backend(),
                "KERAS_BACKEND": os.environ.get("KERAS_BACKEND"), "floatx": self.keras.config.floatx()}
