"""The `tensorflow` adapter: the spec as Keras 3 layers on the TensorFlow backend, NHWC, run eagerly,
in a tf.function ('function') or in a tf.function(jit_compile=True) ('xla').

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

Padding. Keras 'valid' and 'same' are used where they give exactly the reference's pads (TF's
'same' rule is the reference's 'same'); any other padding is explicit: a ZeroPadding2D before a
convolution, a tf.pad with -inf before max pooling (padding never wins a max, as in the reference).

Losses. Cross-entropy after a final softmax, or binary cross-entropy after a final sigmoid, is
computed from the logits (tf.nn.sparse_softmax_cross_entropy_with_logits, sigmoid_cross_entropy_
with_logits) and forward() still returns the probabilities; with no final activation the outputs
are the logits. Every loss is the mean over the batch (over every element for mse and bce).

Optimizers. Not keras.optimizers: Keras's Adam adds epsilon to sqrt(v) with the bias correction
folded into the step size (the paper's rule with eps scaled by sqrt(1 - beta2^t)), and its SGD
momentum keeps v = momentum * v - lr * g (equal to PyTorch's form only in exact arithmetic). The
rules of reference_impl.optim are written out with tf ops on the adapter's own slot variables,
operation for operation in the reference's order, every constant rounded to the model's dtype as
the reference rounds it. Adam's bias corrections (1 - beta^t) are computed on the host in Python,
exactly as the reference does, and passed to the step as scalars, so a compiled step is traced once.
In 'function' and 'xla' modes the whole step (loss, gradients, update) is one tf.function.

layer_outputs() always runs the layers eagerly, also in 'function' and 'xla' modes: a traced or
XLA-compiled graph has no per-layer outputs to hand back (XLA fuses layers).

TensorFlow and Keras are imported lazily, inside functions. TF_CPP_MIN_LOG_LEVEL defaults to 2
and KERAS_BACKEND to 'tensorflow' before the first import (both only when not already set).
TF_ENABLE_ONEDNN_OPTS is left as the user set it; `knobs()` reports it for the timing code.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from functools import cache
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from reference_impl.functional import conv_geometry, pool_geometry
from reference_impl.spec import ModelSpec, OptimizerSpec

from .base import Adapter, Availability, BuiltModel, Unavailable, parse_device

__all__ = ["TensorFlowAdapter", "TensorFlowModel", "to_canonical", "from_canonical", "knobs"]

# The distributions that provide the `tensorflow` module, and how to install one.
_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly", "tf-nightly-cpu")
_INSTALL_HINT = "pip install -e '.[tensorflow]' (or '.[tensorflow-cpu]')"

# Environment variables that change what TF runs on the CPU (or how it logs); reported by knobs().
_ENV_KNOBS = ("TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
              "TF_XLA_FLAGS", "XLA_FLAGS", "KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")


def _dist_version(*dists: str) -> str | None:
    for dist in dists:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def knobs() -> dict:
    """The settings that change TensorFlow's speed or numerics here, for the timing code's record.

    From the environment and package metadata: never imports TensorFlow. TF_ENABLE_ONEDNN_OPTS None
    means TF's default (oneDNN on for x86 Linux builds). When TF is already imported, its thread pool
    sizes (0 = TF's choice) are added.
    """
    found = {name: os.environ.get(name) for name in _ENV_KNOBS}
    found["tensorflow"] = _dist_version(*_DISTRIBUTIONS)
    found["keras"] = _dist_version("keras")
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        try:
            found["intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
            found["inter_op_threads"] = tf.config.threading.get_inter_op_parallelism_threads()
        except Exception:  # a half-imported or unusual build: the environment is still worth reporting
            pass
    return found


# ------------------------------------------------------------------------------------------------
# lazy imports


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    return tf


def _keras():
    _tf()
    import keras

    return keras


@cache
def _import_problem() -> str | None:
    """Why TensorFlow or Keras cannot be used although installed, or None."""
    try:
        _tf()
        keras = _keras()
    except Exception as e:  # ImportError, but also a broken native library
        return f"tensorflow is installed but cannot be imported: {type(e).__name__}: {e}"
    if int(keras.__version__.split(".")[0]) < 3:
        return f"the tensorflow adapter needs Keras 3 (tensorflow>=2.16), found keras {keras.__version__}"
    backend = keras.backend.backend()
    if backend != "tensorflow":
        return (f"Keras runs on its {backend!r} backend (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r} or "
                "~/.keras/keras.json); the tensorflow adapter needs KERAS_BACKEND=tensorflow, set before "
                "keras is first imported")
    return None


def _tf_device(device: str) -> str:
    """'cpu' -> '/CPU:0'; 'cuda' and 'cuda:N' -> '/GPU:0' and '/GPU:N'."""
    kind, index = parse_device(device)
    return "/CPU:0" if kind == "cpu" else f"/GPU:{index or 0}"


@cache
def _xla_problem(device: str, dtype: str) -> str | None:
    """Why XLA cannot compile on this device in this dtype, from a tiny compiled function; or None."""
    tf = _tf()
    try:
        with tf.device(_tf_device(device)):
            probe = tf.function(lambda a: tf.reduce_sum(tf.nn.relu(a) * a), jit_compile=True)
            probe(tf.ones((2, 2), dtype=dtype)).numpy()
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return (f"XLA (tf.function(jit_compile=True)) cannot compile on {device} in {dtype} here: "
                f"{type(e).__name__}: {first}")
    return None


# ------------------------------------------------------------------------------------------------
# layouts: the one conversion pair


def _flatten_layout(spec: ModelSpec):
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
    rows = _flatten_layout(spec)[0]
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
    rows = _flatten_layout(spec)[0]
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


def _nchw_to_nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if a.ndim == 4 else a


def _nhwc_to_nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if a.ndim == 4 else a


def _host(t) -> np.ndarray:
    """A TF tensor as a NumPy array of the caller's own (EagerTensor.numpy() may share TF's buffer)."""
    return np.array(t.numpy(), copy=True)


# ------------------------------------------------------------------------------------------------
# the model


_LOGIT_LOSSES = {("sparse_categorical_crossentropy", "softmax"), ("binary_crossentropy", "sigmoid")}


class _NegInfPad:
    """Pads NHWC images with -inf (for max pooling; keras.layers.ZeroPadding2D pads with zeros)."""

    def __init__(self, pads: tuple[int, int, int, int]) -> None:
        top, bottom, left, right = pads
        self.paddings = [[0, 0], [top, bottom], [left, right], [0, 0]]

    def __call__(self, h):
        tf = _tf()
        return tf.pad(h, self.paddings, constant_values=tf.constant(float("-inf"), h.dtype))


def _steps(spec: ModelSpec, dtype: str, nchw_flattens: frozenset[str]):
    """[(spec layer name, callable)] in order; Keras layers are named after the spec's layers.

    Also returns {spec layer name: its Conv2D or Dense} for the parameters.
    """
    keras = _keras()
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
                    steps.append((name, _NegInfPad(pads)))
                padding = "valid"
            if kind == "conv2d":
                conv = L.Conv2D(layer.out_channels, layer.kernel_size, strides=layer.stride, padding=padding,
                                data_format="channels_last", use_bias=layer.use_bias, dtype=dtype, name=name)
                steps.append((name, conv))
                param_layers[name] = conv
            else:
                steps.append((name, L.MaxPooling2D(layer.kernel_size, strides=layer.stride, padding=padding,
                                                   data_format="channels_last", dtype=dtype, name=name)))
        elif kind == "dense":
            dense = L.Dense(layer.out_features, use_bias=layer.use_bias, dtype=dtype, name=name)
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


class TensorFlowModel(BuiltModel):
    def __init__(self, spec: ModelSpec, weights: dict[str, np.ndarray], device: str, dtype: str,
                 mode: str) -> None:
        tf = _tf()
        self.spec, self.device, self.dtype, self.mode = spec, device, dtype, mode
        self._np_dtype = np.dtype(dtype)
        self._tf_dtype = getattr(tf, dtype)
        self._tf_device = _tf_device(device)
        _, self._reorder, nchw_flattens = _flatten_layout(spec)
        self._fused = (spec.loss, spec.final_activation) in _LOGIT_LOSSES
        with tf.device(self._tf_device):
            self._steps, param_layers = _steps(spec, dtype, nchw_flattens)
            # The loss sees the logits when it takes them: every step but the final activation.
            self._train_steps = self._steps[:-1] if self._fused else self._steps
            # Build every layer's variables with one sample of zeros.
            self._apply(self._steps, tf.zeros((1, *self._native_shape(spec.input_shape)), self._tf_dtype))
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
        compiled = _tf().function(f, jit_compile=self.mode == "xla", autograph=False)
        # TF counts traces per Python code object, across all the models built from this class, and
        # warns of "retracing" after five models although each model traces its functions once.
        compiled._omit_frequent_tracing_warning = True
        return compiled

    # -- conversion ---------------------------------------------------------------------------

    @staticmethod
    def _native_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*shape[1:], shape[0]) if len(shape) == 3 else tuple(shape)

    def _input(self, x):
        x = np.asarray(x, dtype=self._np_dtype)
        if x.shape[1:] != tuple(self.spec.input_shape):
            shape = ", ".join(map(str, self.spec.input_shape))
            raise ValueError(f"model {self.spec.name!r} takes inputs (N, {shape}), got {x.shape}")
        return _tf().convert_to_tensor(_nchw_to_nhwc(x))

    def _target(self, y):
        tf = _tf()
        if self.spec.loss == "sparse_categorical_crossentropy":
            return tf.convert_to_tensor(np.asarray(y, dtype=np.int64))
        return tf.convert_to_tensor(_nchw_to_nhwc(np.asarray(y, dtype=self._np_dtype)))

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
        tf = _tf()
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = self._loss(x, y)
        grads = tape.gradient(loss, [x, *self._var_list])
        return loss, grads

    def forward(self, x):
        tf = _tf()
        with tf.device(self._tf_device):
            out = _host(self._forward_fn(self._input(x)))
        return _nhwc_to_nchw(out)

    def loss_and_grads(self, x, y):
        tf = _tf()
        with tf.device(self._tf_device):
            loss, grads = self._loss_and_grads_fn(self._input(x), self._target(y))
            dx, *dparams = (_host(g) for g in grads)
        out = to_canonical(self.spec, dict(zip(self._vars, dparams, strict=True)))
        out["input"] = _nhwc_to_nchw(dx)
        return float(loss.numpy()), out

    def set_optimizer(self, optimizer: OptimizerSpec) -> None:
        """The update rules of reference_impl.optim, op for op (see the module docstring)."""
        tf = _tf()
        hp, dt = optimizer.params, self._tf_dtype

        def const(v: float):
            return tf.constant(v, dtype=dt)  # rounded from the Python float, as the reference's t(v)

        def slots(what: str):
            with tf.device(self._tf_device):
                return [tf.Variable(tf.zeros_like(v), trainable=False, name=f"{what}/{n}")
                        for n, v in self._vars.items()]

        if optimizer.kind == "sgd":
            lr, momentum = const(hp["lr"]), const(hp["momentum"])
            bufs = slots("momentum_buffer") if hp["momentum"] else None

            def update(grads, corrections):
                for i, (p, g) in enumerate(zip(self._var_list, grads, strict=True)):
                    if bufs is not None:
                        # buf = momentum * buf + g; from zeros, the first step gives exactly buf = g.
                        g = bufs[i] * momentum + g
                        bufs[i].assign(g)
                    p.assign(p - lr * g)

        elif optimizer.kind == "rmsprop":
            lr, rho, one_minus_rho, eps = const(hp["lr"]), const(hp["rho"]), const(1 - hp["rho"]), const(hp["eps"])
            square_avg = slots("square_avg")

            def update(grads, corrections):
                for p, g, v in zip(self._var_list, grads, square_avg, strict=True):
                    v_new = v * rho + one_minus_rho * g * g
                    v.assign(v_new)
                    p.assign(p - lr * g / (tf.sqrt(v_new) + eps))

        else:
            lr, eps = const(hp["lr"]), const(hp["eps"])
            beta1, beta2 = const(hp["beta1"]), const(hp["beta2"])
            one_minus_b1, one_minus_b2 = const(1 - hp["beta1"]), const(1 - hp["beta2"])
            exp_avg, exp_avg_sq = slots("exp_avg"), slots("exp_avg_sq")

            def update(grads, corrections):
                bias1, bias2 = corrections  # 1 - beta1^t and 1 - beta2^t, from the host
                for p, g, m, v in zip(self._var_list, grads, exp_avg, exp_avg_sq, strict=True):
                    m_new = m * beta1 + one_minus_b1 * g
                    v_new = v * beta2 + one_minus_b2 * g * g
                    m.assign(m_new)
                    v.assign(v_new)
                    m_hat = m_new / bias1
                    v_hat = v_new / bias2
                    p.assign(p - lr * m_hat / (tf.sqrt(v_hat) + eps))

        def step(x, y, corrections):
            with tf.GradientTape() as tape:
                loss = self._loss(x, y)
            update(tape.gradient(loss, self._var_list), corrections)
            return loss

        self._optimizer, self._steps_taken = optimizer, 0
        self._train_fn = self._compile(step)

    def _corrections(self) -> tuple:
        """Adam's 1 - beta^t for this step, computed in Python as the reference does, in the dtype."""
        if self._optimizer is None or self._optimizer.kind != "adam":
            return ()
        tf, hp, t = _tf(), self._optimizer.params, self._steps_taken
        return (tf.constant(1 - hp["beta1"] ** t, self._tf_dtype), tf.constant(1 - hp["beta2"] ** t, self._tf_dtype))

    def train_step(self, x, y):
        if self._train_fn is None:
            raise RuntimeError("call set_optimizer before train_step")
        tf = _tf()
        self._steps_taken += 1
        with tf.device(self._tf_device):
            loss = self._train_fn(self._input(x), self._target(y), self._corrections())
            return float(loss.numpy())

    def layer_outputs(self, x):
        """Eagerly, layer by layer, also in 'function' and 'xla' modes (a compiled graph has no
        per-layer outputs); images NCHW, flattened features in the canonical order."""
        tf = _tf()
        outputs: dict[str, np.ndarray] = {}
        with tf.device(self._tf_device):
            h = self._input(x)
            for i, (layer, step) in enumerate(self._steps):
                h = step(h)
                if i + 1 == len(self._steps) or self._steps[i + 1][0] != layer:
                    out = _nhwc_to_nchw(_host(h))
                    if layer in self._reorder:
                        out = np.ascontiguousarray(out[:, self._reorder[layer]])
                    outputs[layer] = out
        return outputs

    def knobs(self) -> dict:
        return {**knobs(), "mode": self.mode, "tf.function": self.mode in ("function", "xla"),
                "jit_compile": self.mode == "xla"}

    def timing_phase(self, phase, x, y):
        """Native calls on tensors already on the device; the batch is moved there once."""
        from harness.timing import Phase

        tf = _tf()
        with tf.device(self._tf_device):
            tx, ty = tf.identity(self._input(x)), tf.identity(self._target(y))

        def run_on_device(fn):
            def run():
                with tf.device(self._tf_device):
                    return fn()
            return run

        if phase == "forward":
            return Phase(run_on_device(lambda: self._forward_fn(tx)), sync=self.sync,
                         how=f"the model's layers on x ({self.mode}), no gradient tape")
        if phase == "forward_backward":
            def loss_and_param_grads(x, y):
                with tf.GradientTape() as tape:
                    loss = self._loss(x, y)
                return loss, tape.gradient(loss, self._var_list)

            fb = self._compile(loss_and_param_grads)
            return Phase(run_on_device(lambda: fb(tx, ty)), sync=self.sync,
                         how=f"loss and every parameter gradient under one GradientTape ({self.mode})")
        if phase == "backward":
            if self.mode != "eager":
                raise Unavailable(f"a backward pass cannot be timed apart from its forward inside one "
                                  f"tf.function ({self.mode}); time forward_backward and forward instead")
            pending = []

            def prepare():
                with tf.device(self._tf_device):
                    with tf.GradientTape() as tape:
                        loss = self._loss(tx, ty)
                pending.append((tape, loss))

            def backward():
                tape, loss = pending.pop()
                return tape.gradient(loss, self._var_list)

            return Phase(run_on_device(backward), prepare=prepare, sync=self.sync,
                         how="tape.gradient alone; the forward under the tape runs untimed before each call")
        if phase == "train_step":
            self.set_optimizer(self.spec.optimizer)

            def train_step():
                self._steps_taken += 1
                return self._train_fn(tx, ty, self._corrections())

            return Phase(run_on_device(train_step), sync=self.sync,
                         how=f"loss, gradients and the reference's {self.spec.optimizer.kind} update as tf ops "
                             f"({self.mode})")
        return super().timing_phase(phase, x, y)

    def sync(self) -> None:
        if self._tf_device.startswith("/GPU"):
            experimental = getattr(_tf().test, "experimental", None)
            sync_devices = getattr(experimental, "sync_devices", None)
            if sync_devices is not None:
                sync_devices()


class TensorFlowAdapter(Adapter):
    name = "tensorflow"
    modes = ("eager", "function", "xla")

    def availability(self) -> Availability:
        """From package metadata and find_spec only: TensorFlow is not imported (that takes seconds)."""
        found = importlib.util.find_spec("tensorflow") is not None
        for dist in _DISTRIBUTIONS:
            try:
                ver = version(dist)
            except PackageNotFoundError:
                continue
            if found:
                return Availability(True, ver)
            return Availability(False, ver, f"{dist} {ver} is installed but module 'tensorflow' is not importable; "
                                            f"reinstall: {_INSTALL_HINT}")
        if found:  # a build from source, or an install without metadata
            return Availability(True, None)
        return Availability(False, None, f"not installed: {_INSTALL_HINT}")

    def devices(self) -> list[str]:
        if not self.availability().available or _import_problem():
            return []
        gpus = _tf().config.list_physical_devices("GPU")
        return ["cpu"] + [f"cuda:{i}" for i in range(len(gpus))]

    def configure_threads(self, threads: int) -> dict:
        """intra-op = threads, inter-op = 1 (these models are chains of ops: nothing runs beside
        them). TF accepts this only before its runtime starts, as in a fresh worker."""
        tf = _tf()
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError as e:  # the runtime already started: report what it has
            return {"error": str(e), "threads": tf.config.threading.get_intra_op_parallelism_threads() or None,
                    "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                    "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
        intra = tf.config.threading.get_intra_op_parallelism_threads()
        return {"threads": intra, "intra_op": intra,
                "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}

    def unavailable_reason(self, device, dtype, mode):
        # Availability, mode and dtype first: those need no import of TensorFlow.
        reason = super().unavailable_reason("cpu", dtype, mode)
        if reason:
            return reason
        parse_device(device)  # ValueError for a malformed device, as in the base
        reason = _import_problem() or super().unavailable_reason(device, dtype, mode)
        if reason is None and mode == "xla":
            reason = _xla_problem("cuda:0" if device == "cuda" else device, dtype)
        return reason

    def build(self, spec, weights, *, device="cpu", dtype="float32", mode="eager") -> TensorFlowModel:
        reason = self.unavailable_reason(device, dtype, mode)
        if reason:
            raise Unavailable(reason)
        if device == "cuda":
            device = "cuda:0"
        return TensorFlowModel(spec, weights, device, dtype, mode)
