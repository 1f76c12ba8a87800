"""Keras on JAX: the layers as a function of (variables, x) under keras.StatelessScope, for
jax.value_and_grad and jax.jit; the reference's update rules on jax arrays."""

from __future__ import annotations

import numpy as np

from reference_impl.spec import OptimizerSpec

from .. import update_rules
from ..base import output_ends, phase_readback
from ..jax_phases import kept_result
from ..tensorflow.layout import nhwc_to_nchw
from .model import KerasModel

__all__ = ["KerasJaxModel"]


class KerasJaxModel(KerasModel):
    backend = "jax"

    def __init__(self, spec, weights, *, device="cpu", dtype="float32", mode="eager") -> None:
        import jax

        super().__init__(spec, weights, device=device, dtype=dtype, mode=mode)
        self._jit = jax.jit if mode == "jit" else (lambda f: f)
        self._forward_fn = self._jit(lambda values, x: self._stateless(values, self._steps, x))
        self._grad_fn = self._jit(jax.value_and_grad(self._loss, argnums=(0, 1)))
        self._train_fn = None
        self._layers_fn = self._layer_grads_fn = None  # made at their first call: only the checks use them

    def _values(self) -> list:
        return [v.value for v in self._var_list]

    def _stateless(self, values, steps, x):
        """The layers applied to x with their variables read as `values` (traced, under jax)."""
        with self.keras.StatelessScope(state_mapping=list(zip(self._var_list, values, strict=True))):
            return self._apply(steps, x)

    def _loss(self, values, x, y):
        return self._loss_of(self._stateless(values, self._train_steps, x), y)

    def _forward(self, x):
        return self._forward_fn(self._values(), x)

    def _loss_and_grads(self, x, y):
        loss, (dparams, dx) = self._grad_fn(self._values(), x, y)
        return loss, dparams, dx

    def set_optimizer(self, optimizer: OptimizerSpec) -> None:
        import jax
        import jax.numpy as jnp

        consts, kind = self._consts(optimizer), optimizer.kind

        def step(values, slots, x, y, corrections):
            loss, grads = jax.value_and_grad(self._loss)(values, x, y)
            new = [update_rules.update(kind, p, g, s, consts, corrections, sqrt=jnp.sqrt)
                   for p, g, s in zip(values, grads, slots, strict=True)]
            return loss, [p for p, _ in new], [s for _, s in new]

        self._optimizer, self._steps_taken = optimizer, 0
        # zeros made by NumPy and copied over: jnp.zeros compiles a program per shape
        self._slots = [tuple(self._tensor(np.zeros(v.shape), v.dtype) for _ in update_rules.slot_names(optimizer))
                       for v in self._values()]
        self._train_fn = self._jit(step)

    def _train(self, x, y):
        self._steps_taken += 1
        loss, values, self._slots = self._train_fn(self._values(), self._slots, x, y, self._corrections())
        for var, value in zip(self._var_list, values, strict=True):
            var.assign(value)
        return loss

    def layer_outputs(self, x):
        """Every layer's output from one function of the mode (compiled in 'jit' mode: op by op, each
        operation was compiled on its own); images NCHW, flattened features in the canonical order."""
        if self._layers_fn is None:
            steps = self._steps
            ends = output_ends([layer for layer, _ in steps])

            def outputs(values, h):
                with self.keras.StatelessScope(state_mapping=list(zip(self._var_list, values, strict=True))):
                    kept = []
                    for i, (_, step) in enumerate(steps):
                        h = step(h)
                        if i in ends:
                            kept.append(h)
                    return kept

            self._layers_fn = ([steps[i][0] for i in ends], self._jit(outputs))
        names, fn = self._layers_fn
        return {layer: self._canonical_output(layer, h)
                for layer, h in zip(names, fn(self._values(), self._input(x)), strict=True)}

    def layer_output_grads(self, x, y):
        """The gradient of the loss with respect to a zero added to each layer's output (a probe),
        which is that output's gradient; one function of the mode, as layer_outputs."""
        import jax

        if self._layer_grads_fn is None:
            steps, ends = self._train_steps, self._output_ends()

            def run(probes, values, h):
                with self.keras.StatelessScope(state_mapping=list(zip(self._var_list, values, strict=True))):
                    kept = {}
                    for i, (_, step) in enumerate(steps):
                        h = step(h)
                        if i in probes:
                            h = h + probes[i]
                        if i in ends:
                            kept[i] = h
                    return h, kept

            def shapes(values, h):  # the probed outputs, traced for their shapes, not computed
                return run({}, values, h)[1]

            grad = self._jit(jax.grad(lambda probes, values, h, t: self._loss_of(run(probes, values, h)[0], t)))
            self._layer_grads_fn = (ends, shapes, grad)
        ends, shapes, grad = self._layer_grads_fn
        tx, ty, values = self._input(x), self._target(y), self._values()
        zeros = {i: self._tensor(np.zeros(s.shape), s.dtype) for i, s in jax.eval_shape(shapes, values, tx).items()}
        grads = grad(zeros, values, tx, ty)
        return {self._train_steps[i][0]: self._canonical_output(self._train_steps[i][0], grads[i]) for i in ends}

    def timing_phase(self, phase, x, y):
        import jax

        from harness.timing import Phase

        tx, ty = self._input(x), self._target(y)
        keep, sync = kept_result()

        if phase == "forward":
            return Phase(keep(lambda: self._forward(tx)), sync=sync,
                         how=f"the Keras layers as a function of (variables, x) ({self.mode}), no gradient",
                         readback=phase_readback(self, phase, output=lambda out: nhwc_to_nchw(self._host(out))))
        if phase == "forward_backward":
            fb = self._jit(jax.value_and_grad(self._loss))
            return Phase(keep(lambda: fb(self._values(), tx, ty)), sync=sync,
                         how=f"jax.value_and_grad of the Keras loss: every parameter gradient ({self.mode})",
                         readback=phase_readback(self, phase, grads=lambda r: self._canonical_grads(r[1]),
                                                 loss=lambda r: self._host(r[0])))
        if phase == "backward":
            pending: list = []
            apply = self._jit(lambda vjp_fn, ct: vjp_fn(ct))

            def prepare():
                loss, vjp_fn = jax.vjp(lambda v: self._loss(v, tx, ty), self._values())
                # the cotangent in the loss's own dtype: with x64 on, Keras's cross-entropy of int64
                # labels comes back in float64 even for a float32 model
                pending.append((vjp_fn, jax.numpy.ones_like(loss)))

            return Phase(keep(lambda: apply(*pending.pop())), prepare=prepare, sync=sync,
                         how=f"the loss's vjp alone ({self.mode}); jax.vjp's forward runs untimed before each call",
                         readback=phase_readback(self, phase, grads=lambda cts: self._canonical_grads(cts[0])))
        if phase == "train_step":
            self.set_optimizer(self.spec.optimizer)
            return Phase(keep(lambda: self._train(tx, ty)), sync=sync,
                         how=f"loss, gradients and the reference's {self.spec.optimizer.kind} update ({self.mode})",
                         readback=phase_readback(self, phase, loss=self._host))
        return super().timing_phase(phase, x, y)
