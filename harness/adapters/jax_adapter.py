"""The `jax` adapter: the spec in plain JAX (jax.numpy and lax), NCHW, op by op ('eager') or
jax.jit-compiled ('jit').

Layouts. lax.conv_general_dilated takes NCHW images and OIHW kernels, which are the canonical
layouts, and a dense layer is `x @ W + b` with W as (in, out): parameters, gradients and images
are canonical as they are, with no conversion anywhere. Padding is always explicit, the pads of
reference_impl.functional's geometry; max pooling is lax.reduce_window of max from -inf, so that
padding never wins a max, as in the reference.

Dtypes. float64 needs JAX's x64 mode, which is switched on (jax_enable_x64) when this adapter first
imports JAX, before any array exists; every array is then created with an explicit dtype, so float32
models stay float32.

Losses are written out in jax.numpy (no library defaults): cross-entropy after a final softmax and
binary cross-entropy after a final sigmoid from the logits, every loss the mean over the batch.
Gradients come from jax.value_and_grad; a timed backward alone from jax.vjp (the forward, which
records the residuals, untimed before each call). Optimizers are the reference's update rules
(harness/adapters/update_rules.py) on jax arrays, functionally: a step returns new parameters and
slots; in 'jit' mode the whole step (loss, gradients, update) is one compiled function.

Asynchronous dispatch. JAX returns from a call once its work is queued, on the CPU as on a GPU:
every timed phase keeps its last result, and its sync blocks until it is ready
(jax.block_until_ready); reading `.numpy()` would also copy it to the host.

Threads. JAX has no thread-count setting (jax-ml/jax#743, #1539): configure_threads restricts the
worker process to `threads` CPUs (os.sched_setaffinity), and for one thread also sets the XLA flags
that turn Eigen's thread pool off; it reports what it did, and "threads" None, since XLA reports no
count to verify.
"""

from __future__ import annotations

import os

import numpy as np

from reference_impl.functional import conv_geometry, pool_geometry
from reference_impl.spec import ModelSpec, OptimizerSpec

from . import update_rules
from .base import Adapter, BuiltModel, layer_ends, output_ends, parse_device
from .jax_phases import kept_result, timing_phase

__all__ = ["JaxAdapter", "JaxModel", "kept_result"]

_ONE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _jax():
    import jax

    # NOTE: before any array is created; float32 arrays stay float32 because every dtype is explicit.
    jax.config.update("jax_enable_x64", True)
    return jax


def _jax_device(device: str):
    jax = _jax()
    kind, index = parse_device(device)
    if kind == "cpu":
        return jax.devices("cpu")[0]
    return jax.devices("gpu")[index or 0]


class JaxModel(BuiltModel):
    """The spec as pure functions of (params, x); params are canonical arrays on the device."""

    def __init__(self, spec: ModelSpec, weights: dict[str, np.ndarray], *, device: str = "cpu",
                 dtype: str = "float32", mode: str = "eager") -> None:
        jax = _jax()
        self.spec, self.device, self.dtype, self.mode = spec, device, dtype, mode
        self._np_dtype = np.dtype(dtype)
        self._device = _jax_device(device)
        self._steps = self._plan(spec)
        # The loss sees the logits when it takes them: every step but the final activation.
        self._train_steps = self._steps[:-1] if spec.loss_takes_logits else self._steps
        self.params: dict = {}
        self.set_weights(weights)
        self._compile = jax.jit if mode == "jit" else (lambda f: f)
        self._forward_fn = self._compile(lambda params, x: self._apply(self._steps, params, x))
        self._grad_fn = self._compile(jax.value_and_grad(self._loss, argnums=(0, 1)))
        self._train_fn = None
        self._layers_fn = self._layer_grads_fn = None  # made at their first call: only the checks use them
        self._optimizer: OptimizerSpec | None = None
        self._steps_taken = 0
        self._slots: dict = {}

    # -- the layers ---------------------------------------------------------------------------
    # Each step is (spec layer name, fn(params, h)); a layer with an activation is two steps.
    # The hooks (_conv, _pool, _dense, _flatten, _activation, _reduce) are the one place each
    # operation is written; tests/harness/planted_jax.py plants its bugs there.

    def _plan(self, spec: ModelSpec) -> list[tuple[str, object]]:
        steps: list[tuple[str, object]] = []
        for layer, in_shape, _ in spec.layer_shapes():
            name, kind = layer.name, layer.kind
            if kind == "conv2d":
                pads = conv_geometry(in_shape[1:], layer.kernel_size, layer.stride, layer.padding).pads
                steps.append((name, self._conv_step(name, layer.stride, pads, layer.use_bias)))
            elif kind == "max_pool2d":
                pads = pool_geometry(in_shape[1:], layer.kernel_size, layer.stride, layer.padding).pads
                steps.append((name, lambda p, h, k=layer.kernel_size, s=layer.stride, pads=pads:
                              self._pool(h, k, s, pads)))
            elif kind == "dense":
                steps.append((name, lambda p, h, name=name, bias=layer.use_bias:
                              self._dense(h, p[f"{name}.weight"], p[f"{name}.bias"] if bias else None)))
            elif kind == "flatten":
                steps.append((name, lambda p, h: self._flatten(h)))
            else:
                steps.append((name, lambda p, h, kind=kind: self._activation(kind, h)))
            if layer.activation:
                steps.append((name, lambda p, h, kind=layer.activation: self._activation(kind, h)))
        return steps

    def _conv_step(self, name: str, stride, pads, bias: bool):
        def step(p, h):
            return self._conv(h, p[f"{name}.weight"], p[f"{name}.bias"] if bias else None, stride, pads)
        return step

    @staticmethod
    def _conv(h, w, b, stride, pads):
        from jax import lax

        top, bottom, left, right = pads
        out = lax.conv_general_dilated(h, w, window_strides=tuple(stride), padding=((top, bottom), (left, right)),
                                       dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return out if b is None else out + b[None, :, None, None]

    @staticmethod
    def _pool(h, kernel, stride, pads):
        from jax import lax

        top, bottom, left, right = pads
        # NOTE: a Python -inf, not an array: under jit an array is a tracer, lax then cannot see the max
        # monoid, and falls back to a generic reduce_window that has no gradient
        return lax.reduce_window(h, -np.inf, lax.max, (1, 1, *kernel), (1, 1, *stride),
                                 ((0, 0), (0, 0), (top, bottom), (left, right)))

    @staticmethod
    def _dense(h, w, b):
        out = h @ w
        return out if b is None else out + b

    @staticmethod
    def _flatten(h):
        return h.reshape(h.shape[0], -1)  # NCHW order: the canonical flattening

    @staticmethod
    def _activation(kind: str, h):
        import jax
        import jax.numpy as jnp

        if kind == "relu":
            return jnp.maximum(h, jnp.zeros((), h.dtype))
        if kind == "sigmoid":
            return jax.nn.sigmoid(h)
        if kind == "tanh":
            return jnp.tanh(h)
        return jax.nn.softmax(h, axis=-1)

    @staticmethod
    def _reduce(per_sample):
        """The loss over the batch: its mean."""
        return per_sample.mean()

    @staticmethod
    def _apply(steps, params, h):
        for _, step in steps:
            h = step(params, h)
        return h

    def _loss(self, params, x, y):
        return self._loss_of(self._apply(self._train_steps, params, x), y)

    def _loss_of(self, out, y):
        import jax
        import jax.numpy as jnp

        if self.spec.loss == "sparse_categorical_crossentropy":
            logp = jax.nn.log_softmax(out, axis=1)
            return self._reduce(-jnp.take_along_axis(logp, y[:, None], axis=1)[:, 0])
        if self.spec.loss == "binary_crossentropy":
            zero = jnp.zeros((), out.dtype)
            return self._reduce(jnp.maximum(out, zero) - out * y + jnp.log1p(jnp.exp(-jnp.abs(out))))
        return self._reduce(jnp.square(out - y))

    # -- conversion ---------------------------------------------------------------------------

    def _array(self, a, dtype=None):
        import jax

        return jax.device_put(np.asarray(a, dtype=dtype or self._np_dtype), self._device)

    def _input(self, x):
        x = np.asarray(x)
        if x.shape[1:] != tuple(self.spec.input_shape):
            shape = ", ".join(map(str, self.spec.input_shape))
            raise ValueError(f"model {self.spec.name!r} takes inputs (N, {shape}), got {x.shape}")
        return self._array(x)

    def _target(self, y):
        if self.spec.loss == "sparse_categorical_crossentropy":
            return self._array(y, np.int64)
        return self._array(y)

    @staticmethod
    def _host(a) -> np.ndarray:
        return np.array(a, copy=True)  # the caller's own array, never a view of JAX's buffer

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        expected = self.spec.param_shapes()
        if set(weights) != set(expected):
            missing, extra = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
            raise ValueError(f"weights do not match model {self.spec.name!r}: missing {missing}, unexpected {extra}")
        for name, shape in expected.items():
            if tuple(np.shape(weights[name])) != tuple(shape):
                raise ValueError(f"weight {name!r}: expected {shape} (canonical layout), got {np.shape(weights[name])}")
        self.params = {name: self._array(weights[name]) for name in expected}

    def get_weights(self) -> dict[str, np.ndarray]:
        return {name: self._host(p) for name, p in self.params.items()}

    # -- computation --------------------------------------------------------------------------

    def forward(self, x):
        return self._host(self._forward_fn(self.params, self._input(x)))

    def loss_and_grads(self, x, y):
        loss, (grads, dx) = self._grad_fn(self.params, self._input(x), self._target(y))
        out = {name: self._host(g) for name, g in grads.items()}
        out["input"] = self._host(dx)
        return float(loss), out

    def set_optimizer(self, optimizer: OptimizerSpec) -> None:
        """The reference's update rule (update_rules), functional: a step returns new parameters
        and slots, which this model keeps; in 'jit' mode the whole step is one compiled function."""
        jax = _jax()

        consts = update_rules.constants(optimizer, lambda v: self._array(np.asarray(v, dtype=self._np_dtype)))
        kind = optimizer.kind

        def step(params, slots, x, y, corrections):
            loss, grads = jax.value_and_grad(self._loss)(params, x, y)
            new_params, new_slots = {}, {}
            for name, p in params.items():
                new_params[name], new_slots[name] = self._update(kind, p, grads[name], slots[name], consts, corrections)
            return loss, new_params, new_slots

        self._optimizer, self._steps_taken = optimizer, 0
        # zeros made by NumPy and copied over: jnp.zeros compiles a program per shape
        self._slots = {name: tuple(self._array(np.zeros(p.shape)) for _ in update_rules.slot_names(optimizer))
                       for name, p in self.params.items()}
        self._train_fn = self._compile(step)

    @staticmethod
    def _update(kind: str, p, g, slots: tuple, consts: dict, corrections: tuple):
        """(new p, new slots): the reference's rule (update_rules) on jax arrays."""
        import jax.numpy as jnp

        return update_rules.update(kind, p, g, slots, consts, corrections, sqrt=jnp.sqrt)

    def _corrections(self) -> tuple:
        """Adam's 1 - beta^t for this step, computed in Python as the reference does, in the dtype."""
        return tuple(self._array(np.asarray(c, dtype=self._np_dtype))
                     for c in update_rules.adam_corrections(self._optimizer, self._steps_taken))

    def _train(self, x, y):
        self._steps_taken += 1
        loss, self.params, self._slots = self._train_fn(self.params, self._slots, x, y, self._corrections())
        return loss

    def train_step(self, x, y):
        if self._train_fn is None:
            raise RuntimeError("call set_optimizer before train_step")
        return float(self._train(self._input(x), self._target(y)))

    def layer_outputs(self, x):
        """Every layer's output, from one function of the mode (compiled in 'jit' mode) that hands
        them all back. Op by op, JAX compiled each operation on its own: mnist_cnn's checks in
        float32 and float64 compiled 159 programs that way, and 10 now (AMD EPYC, 2026-12-07)."""
        if self._layers_fn is None:
            steps = self._steps
            ends = output_ends([layer for layer, _ in steps])

            def outputs(params, h):
                kept = []
                for i, (_, step) in enumerate(steps):
                    h = step(params, h)
                    if i in ends:
                        kept.append(h)
                return kept

            self._layers_fn = ([steps[i][0] for i in ends], self._compile(outputs))
        names, fn = self._layers_fn
        return {name: self._host(h) for name, h in zip(names, fn(self.params, self._input(x)), strict=True)}

    def layer_output_grads(self, x, y):
        """The gradient of the loss with respect to a zero added to each layer's output (a probe),
        which is that output's gradient; one function of the mode, as layer_outputs."""
        jax = _jax()

        if self._layer_grads_fn is None:
            steps = self._train_steps
            ends = layer_ends(self.spec, [layer for layer, _ in steps])

            def run(probes, params, h):  # the output, and the probed layers' outputs
                kept = {}
                for i, (_, step) in enumerate(steps):
                    h = step(params, h)
                    if i in probes:
                        h = h + probes[i]
                    if i in ends:
                        kept[i] = h
                return h, kept

            def shapes(params, h):  # the probed outputs, traced for their shapes, not computed
                return run({}, params, h)[1]

            grad = self._compile(jax.grad(lambda probes, params, h, t: self._loss_of(run(probes, params, h)[0], t)))
            self._layer_grads_fn = ([(i, steps[i][0]) for i in ends], shapes, grad)
        probed, shapes, grad = self._layer_grads_fn
        tx, ty = self._input(x), self._target(y)
        zeros = {i: self._array(np.zeros(s.shape), s.dtype) for i, s in jax.eval_shape(shapes, self.params, tx).items()}
        grads = grad(zeros, self.params, tx, ty)
        return {layer: self._host(grads[i]) for i, layer in probed}

    def device_memory(self) -> tuple[int, str] | None:
        """The device allocator's peak (JAX keeps no resettable peak: since the worker started), or
        None on the CPU, where `bench run` reports the worker's peak RSS."""
        if not self.device.startswith("cuda"):
            return None
        stats = self._device.memory_stats() or {}
        peak = stats.get("peak_bytes_in_use")
        return (int(peak), "jax_device_peak") if peak is not None else None

    def knobs(self) -> dict:
        jax = _jax()
        return {"mode": self.mode, "jax.jit": self.mode == "jit", "jax": jax.__version__,
                "jax_enable_x64": bool(jax.config.jax_enable_x64),
                "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
                "XLA_FLAGS": os.environ.get("XLA_FLAGS"), "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS"),
                "cpu_affinity": _affinity()}

    def timing_phase(self, phase, x, y):
        """Native calls on arrays already on the device; each phase's sync blocks on its last result
        (jax_phases.py)."""
        return timing_phase(self, phase, x, y) or super().timing_phase(phase, x, y)


def _affinity() -> list[int] | None:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


class JaxAdapter(Adapter):
    name = "jax"
    modes = ("eager", "jit")
    idiomatic_mode = "jit"  # JAX is written to be jit-compiled; op-by-op dispatch is its debugging mode
    package = "jax"
    install_hint = "pip install -e '.[jax]' (CPU; on a CUDA machine pip install 'jax[cuda12]')"
    model_class = JaxModel

    def devices(self) -> list[str]:
        if not self.availability().available:
            return []
        jax = _jax()
        try:
            gpus = jax.devices("gpu")
        except RuntimeError:  # no GPU backend in this jaxlib, or no device
            gpus = []
        return ["cpu"] + [f"cuda:{i}" for i in range(len(gpus))]

    def configure_threads(self, threads: int) -> dict:
        """Before JAX starts its runtime (a fresh worker): `threads` CPUs by affinity, and Eigen's pool
        off for one thread; "threads" is None, as XLA reports no count (see the module docstring)."""
        applied: dict = {"threads": None}
        cpus = _affinity()
        if cpus is not None and threads < len(cpus):
            os.sched_setaffinity(0, cpus[:threads])
        if threads == 1 and _ONE_THREAD_FLAGS not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_ONE_THREAD_FLAGS}".strip()
        applied.update(cpu_affinity=_affinity(), XLA_FLAGS=os.environ.get("XLA_FLAGS"))
        return applied

    def unavailable_reason(self, device, dtype, mode):
        reason = super().unavailable_reason(device, dtype, mode)
        if reason is None and parse_device(device)[0] == "cuda":
            try:
                _jax_device(device)
            except (RuntimeError, IndexError) as e:
                return f"jax has no device {device!r} here: {e}"
        return reason

