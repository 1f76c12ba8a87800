"""The spec as Keras 3 layers (any backend), and TensorFlowModel: those layers run by TensorFlow.

Padding. Keras 'valid' and 'same' are used where they give exactly the reference's pads (TF's
'same' rule is the reference's 'same'); any other padding is explicit: a ZeroPadding2D before a
convolution, a keras.ops.pad with -inf before max pooling (padding never wins a max, as in the
reference).

Losses. Cross-entropy after a final softmax, or binary cross-entropy after a final sigmoid, is
computed from the logits (tf.nn.sparse_softmax_cross_entropy_with_logits, sigmoid_cross_entropy_
with_logits) and forward() still returns the probabilities; with no final activation the outputs
are the logits. Every loss is the mean over the batch (over every element for mse and bce).

In 'function' and 'xla' modes the whole step (loss, gradients, update) is one tf.function.

layer_outputs() always runs the layers eagerly, also in 'function' and 'xla' modes: a traced or
XLA-compiled graph has no per-layer outputs to hand back (XLA fuses layers).

keras_layers() and NegInfPad use Keras alone, so that Keras on another backend can build the same
layers; TensorFlowModel holds what is TensorFlow's: devices, tf.function, GradientTape, tf.nn
losses, tf.Variable slots.
"""

from __future__ import annotations

import numpy as np

from reference_impl.functional import conv_geometry, pool_geometry
from reference_impl.spec import ModelSpec, OptimizerSpec

from .. import update_rules as optim
from ..base import BuiltModel, layer_ends, output_ends
from .layout import flatten_layout, from_canonical, native_shape, nchw_to_nhwc, nhwc_to_nchw, to_canonical
from .phases import timing_phase
from .runtime import import_keras, import_tf, knobs, tf_device

__all__ = ["NegInfPad", "keras_layers", "TensorFlowModel"]


def _host(t) -> np.ndarray:
    """A TF tensor as a NumPy array of the caller's own (EagerTensor.numpy() may share TF's buffer)."""
    return np.array(t.numpy(), copy=True)


# ------------------------------------------------------------------------------------------------
# the layers, on any Keras backend


class NegInfPad:
    """Pads NHWC images with -inf (for max pooling; keras.layers.ZeroPadding2D pads with zeros)."""

    def __init__(self, pads: tuple[int, int, int, int]) -> None:
        top, bottom, left, right = pads
        self.pad_width = ((0, 0), (top, bottom), (left, right), (0, 0))

    def __call__(self, h):
        import keras

        return keras.ops.pad(h, self.pad_width, constant_values=float("-inf"))


# The kernels' initial values, overwritten by the spec's weights before any use. Keras's default,
# glorot_uniform, draws them through the backend's random numbers, which on JAX compiled a program
# per kernel shape: 2.7 of mnist_cnn's 2.8 s build (AMD EPYC, 2026-12-07).
_PLACEHOLDER = "zeros"


def keras_layers(spec: ModelSpec, dtype: str, nchw_flattens: frozenset[str]):
    """[(spec layer name, callable)] in order, channels_last; Keras layers are named after the
    spec's layers. Also returns {spec layer name: its Conv2D or Dense} for the parameters.

    Keras alone: the caller has chosen the backend (KERAS_BACKEND) before keras is first imported.
    `nchw_flattens` is layout.flatten_layout(spec)'s third item.
    """
    import keras

    L = keras.layers
    steps: list[tuple[str, object]] = []
    param_layers: dict[str, object] = {}
    for layer, in_shape, _ in spec.layer_shapes():
        name, kind = layer.name, layer.kind
        if kind in ("conv2d", "max_pool2d"):
            geometry = conv_geometry if kind == "conv2d" else pool_geometry
            pads = geometry(in_shape[1:], layer.kernel_size, layer.stride, layer.padding).pads
            if not any(pads):
                padding = "valid"
            elif pads == geometry(in_shape[1:], layer.kernel_size, layer.stride, "same").pads:
                padding = "same"  # TF's own rule gives exactly these pads
            else:
                top, bottom, left, right = pads
                if kind == "conv2d":
                    steps.append((name, L.ZeroPadding2D(((top, bottom), (left, right)), data_format="channels_last",
                                                        dtype=dtype, name=f"{name}_pad")))
                else:
                    steps.append((name, NegInfPad(pads)))
                padding = "valid"
            if kind == "conv2d":
                conv = L.Conv2D(layer.out_channels, layer.kernel_size, strides=layer.stride, padding=padding,
                                data_format="channels_last", use_bias=layer.use_bias, dtype=dtype, name=name,
                                kernel_initializer=_PLACEHOLDER)
                steps.append((name, conv))
                param_layers[name] = conv
            else:
                steps.append((name, L.MaxPooling2D(layer.kernel_size, strides=layer.stride, padding=padding,
                                                   data_format="channels_last", dtype=dtype, name=name)))
        elif kind == "dense":
            dense = L.Dense(layer.out_features, use_bias=layer.use_bias, dtype=dtype, name=name,
                            kernel_initializer=_PLACEHOLDER)
            steps.append((name, dense))
            param_layers[name] = dense
        elif kind == "flatten":
            if name in nchw_flattens:
                steps.append((name, L.Permute((3, 1, 2), dtype=dtype, name=f"{name}_nchw")))
            steps.append((name, L.Flatten(data_format="channels_last", dtype=dtype, name=name)))
        else:
            steps.append((name, L.Activation(kind, dtype=dtype, name=name)))
        if layer.activation:
            steps.append((name, L.Activation(layer.activation, dtype=dtype, name=f"{name}_{layer.activation}")))
    return steps, param_layers


# ------------------------------------------------------------------------------------------------
# the model, on TensorFlow


class TensorFlowModel(BuiltModel):
    def __init__(self, spec: ModelSpec, weights: dict[str, np.ndarray], device: str, dtype: str,
                 mode: str) -> None:
        tf = import_tf()
        import_keras()  # on the TensorFlow backend, before keras_layers imports it
        self.spec, self.device, self.dtype, self.mode = spec, device, dtype, mode
        self._np_dtype = np.dtype(dtype)
        self._tf_dtype = getattr(tf, dtype)
        self._tf_device = tf_device(device)
        _, self._reorder, nchw_flattens = flatten_layout(spec)
        self._fused = spec.loss_takes_logits
        with tf.device(self._tf_device):
            self._steps, param_layers = keras_layers(spec, dtype, nchw_flattens)
            # The loss sees the logits when it takes them: every step but the final activation.
            self._train_steps = self._steps[:-1] if self._fused else self._steps
            # Build every layer's variables with one sample of zeros.
            self._apply(self._steps, tf.zeros((1, *native_shape(spec.input_shape)), self._tf_dtype))
        self._vars = {}
        for name in spec.param_shapes():
            layer, _, part = name.rpartition(".")
            self._vars[name] = param_layers[layer].kernel if part == "weight" else param_layers[layer].bias
        self._var_list = list(self._vars.values())
        self.set_weights(weights)
        self._loss_fn = {
            "sparse_categorical_crossentropy": lambda out, y: tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=out)),
            "binary_crossentropy": lambda out, y: tf.reduce_mean(
                tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=out)),
            "mse": lambda out, y: tf.reduce_mean(tf.square(out - y)),
        }[spec.loss]
        self._compile = (lambda f: f) if mode == "eager" else self._tf_function
        self._forward_fn = self._compile(lambda x: self._apply(self._steps, x))
        self._loss_and_grads_fn = self._compile(self._loss_and_grads_graph)
        self._train_fn = None
        self._optimizer: OptimizerSpec | None = None

    def _tf_function(self, f):
        """f as a tf.function, XLA-compiled in 'xla' mode (jit_compile=False in 'function' mode, so
        that no TF_XLA_FLAGS auto-clustering turns it into XLA either)."""
        # autograph=False: the traced code has no tensor-dependent Python control flow to convert.
        compiled = import_tf().function(f, jit_compile=self.mode == "xla", autograph=False)
        # TF counts traces per Python code object, across all the models built from this class, and
        # warns of "retracing" after five models although each model traces its functions once.
        compiled._omit_frequent_tracing_warning = True
        return compiled

    # -- conversion ---------------------------------------------------------------------------

    def _input(self, x):
        x = np.asarray(x, dtype=self._np_dtype)
        if x.shape[1:] != tuple(self.spec.input_shape):
            shape = ", ".join(map(str, self.spec.input_shape))
            raise ValueError(f"model {self.spec.name!r} takes inputs (N, {shape}), got {x.shape}")
        return import_tf().convert_to_tensor(nchw_to_nhwc(x))

    def _target(self, y):
        tf = import_tf()
        if self.spec.loss == "sparse_categorical_crossentropy":
            return tf.convert_to_tensor(np.asarray(y, dtype=np.int64))
        return tf.convert_to_tensor(nchw_to_nhwc(np.asarray(y, dtype=self._np_dtype)))

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        cast = {k: np.asarray(v, dtype=self._np_dtype) for k, v in weights.items()}
        for name, value in from_canonical(self.spec, cast).items():
            self._vars[name].assign(value)

    def get_weights(self) -> dict[str, np.ndarray]:
        return to_canonical(self.spec, {n: v.numpy() for n, v in self._vars.items()})

    # -- computation --------------------------------------------------------------------------

    @staticmethod
    def _apply(steps, h):
        for _, step in steps:
            h = step(h)
        return h

    def _loss(self, x, y):
        return self._loss_fn(self._apply(self._train_steps, x), y)

    def _loss_and_grads_graph(self, x, y):
        tf = import_tf()
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = self._loss(x, y)
        grads = tape.gradient(loss, [x, *self._var_list])
        return loss, grads

    def forward(self, x):
        tf = import_tf()
        with tf.device(self._tf_device):
            out = _host(self._forward_fn(self._input(x)))
        return nhwc_to_nchw(out)

    def loss_and_grads(self, x, y):
        tf = import_tf()
        with tf.device(self._tf_device):
            loss, grads = self._loss_and_grads_fn(self._input(x), self._target(y))
            dx, *dparams = (_host(g) for g in grads)
        out = to_canonical(self.spec, dict(zip(self._vars, dparams, strict=True)))
        out["input"] = nhwc_to_nchw(dx)
        return float(loss.numpy()), out

    def set_optimizer(self, optimizer: OptimizerSpec) -> None:
        """The update rules of reference_impl.optim, op for op (optim.py), on slot variables of
        this model's own; the whole step is compiled in 'function' and 'xla' modes."""
        tf = import_tf()
        consts = optim.constants(optimizer, lambda v: tf.constant(v, dtype=self._tf_dtype))
        with tf.device(self._tf_device):
            slots = [tuple(tf.Variable(tf.zeros_like(v), trainable=False, name=f"{what}/{n}")
                           for what in optim.slot_names(optimizer))
                     for n, v in self._vars.items()]

        def update(grads, corrections):
            for p, g, state in zip(self._var_list, grads, slots, strict=True):
                p_new, state_new = optim.update(optimizer.kind, p, g, state, consts, corrections, sqrt=tf.sqrt)
                for var, value in zip(state, state_new, strict=True):
                    var.assign(value)
                p.assign(p_new)

        def step(x, y, corrections):
            with tf.GradientTape() as tape:
                loss = self._loss(x, y)
            update(tape.gradient(loss, self._var_list), corrections)
            return loss

        self._optimizer, self._steps_taken = optimizer, 0
        self._train_fn = self._compile(step)

    def _corrections(self) -> tuple:
        """Adam's 1 - beta^t for this step, computed in Python as the reference does, in the dtype."""
        if self._optimizer is None:
            return ()
        tf = import_tf()
        return tuple(tf.constant(c, self._tf_dtype) for c in optim.adam_corrections(self._optimizer, self._steps_taken))

    def train_step(self, x, y):
        if self._train_fn is None:
            raise RuntimeError("call set_optimizer before train_step")
        tf = import_tf()
        self._steps_taken += 1
        with tf.device(self._tf_device):
            loss = self._train_fn(self._input(x), self._target(y), self._corrections())
            return float(loss.numpy())

    def layer_outputs(self, x):
        """Eagerly, layer by layer, also in 'function' and 'xla' modes (a compiled graph has no
        per-layer outputs); images NCHW, flattened features in the canonical order."""
        tf = import_tf()
        outputs: dict[str, np.ndarray] = {}
        with tf.device(self._tf_device):
            ends = output_ends([layer for layer, _ in self._steps])
            h = self._input(x)
            for i, (layer, step) in enumerate(self._steps):
                h = step(h)
                if i in ends:
                    out = nhwc_to_nchw(_host(h))
                    if layer in self._reorder:
                        out = np.ascontiguousarray(out[:, self._reorder[layer]])
                    outputs[layer] = out
        return outputs

    def layer_output_grads(self, x, y):
        """Eagerly, layer by layer under one GradientTape (also in 'function' and 'xla' modes);
        images NCHW, flattened features in the canonical order, as layer_outputs."""
        tf = import_tf()
        steps = self._train_steps
        ends = set(layer_ends(self.spec, [layer for layer, _ in steps]))
        kept: dict[str, object] = {}
        with tf.device(self._tf_device):
            with tf.GradientTape() as tape:
                h = self._input(x)
                for i, (layer, step) in enumerate(steps):
                    h = step(h)
                    if i in ends:
                        tape.watch(h)
                        kept[layer] = h
                loss = self._loss_fn(h, self._target(y))
            grads = tape.gradient(loss, list(kept.values()))
        outputs = {}
        for layer, g in zip(kept, grads, strict=True):
            out = nhwc_to_nchw(_host(g))
            if layer in self._reorder:
                out = np.ascontiguousarray(out[:, self._reorder[layer]])
            outputs[layer] = out
        return outputs

    def knobs(self) -> dict:
        return {**knobs(), "mode": self.mode, "tf.function": self.mode in ("function", "xla"),
                "jit_compile": self.mode == "xla"}

    def timing_phase(self, phase, x, y):
        """Native calls on tensors already on the device; the batch is moved there once (phases.py)."""
        return timing_phase(self, phase, x, y)

    def sync(self) -> None:
        if self._tf_device.startswith("/GPU"):
            experimental = getattr(import_tf().test, "experimental", None)
            sync_devices = getattr(experimental, "sync_devices", None)
            if sync_devices is not None:
                sync_devices()
