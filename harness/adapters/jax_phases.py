"""The jax adapter's timing phases: native calls on arrays already on the device, each phase's sync
blocking on its last result (JAX dispatches asynchronously, on the CPU too).

This is JaxModel.timing_phase, kept apart: it reads that model's internals (its compiled
functions, parameters and loss), and only JaxModel (and Keras on JAX, for kept_result) calls it.
"""

from __future__ import annotations

import numpy as np

from .base import phase_readback

__all__ = ["timing_phase", "kept_result"]


def timing_phase(model, phase: str, x, y):
    """A harness.timing.Phase that runs `phase` of this JaxModel on (x, y), or None for a phase it
    has no native form of."""
    import jax

    from harness.timing import Phase

    tx, ty = model._input(x), model._target(y)
    keep, sync = kept_result()

    def host_grads(grads):
        return {name: model._host(g) for name, g in grads.items()}

    if phase == "forward":
        return Phase(keep(lambda: model._forward_fn(model.params, tx)), sync=sync,
                     how=f"the model's function of (params, x) ({model.mode}), no gradient",
                     readback=phase_readback(model, phase, output=model._host))
    if phase == "forward_backward":
        fb = model._compile(jax.value_and_grad(model._loss))
        return Phase(keep(lambda: fb(model.params, tx, ty)), sync=sync,
                     how=f"jax.value_and_grad of the loss: every parameter gradient ({model.mode})",
                     readback=phase_readback(model, phase, grads=lambda r: host_grads(r[1]), loss=lambda r: r[0]))
    if phase == "backward":
        pending: list = []
        apply = model._compile(lambda vjp_fn, ct: vjp_fn(ct))
        one = model._array(np.asarray(1.0, dtype=model._np_dtype))

        def prepare():
            _, vjp_fn = jax.vjp(lambda p: model._loss(p, tx, ty), model.params)
            jax.block_until_ready(vjp_fn)
            pending.append(vjp_fn)

        return Phase(keep(lambda: apply(pending.pop(), one)), prepare=prepare, sync=sync,
                     how=f"the loss's vjp alone ({model.mode}); jax.vjp's forward runs untimed before each call",
                     readback=phase_readback(model, phase, grads=lambda cotangents: host_grads(cotangents[0])))
    if phase == "train_step":
        model.set_optimizer(model.spec.optimizer)
        return Phase(keep(lambda: model._train(tx, ty)), sync=sync,
                     how=f"loss, gradients and the reference's {model.spec.optimizer.kind} update in jax.numpy "
                         f"({model.mode})",
                     readback=phase_readback(model, phase, loss=lambda loss: loss))
    return None  # a phase of the contract's own: BuiltModel.timing_phase


def kept_result():
    """(keep, sync) for a timed JAX phase: keep(fn) is a call of fn that keeps (and returns, for the
    phase's readback) its result, and sync blocks until the last kept result is ready (JAX
    dispatches asynchronously, on the CPU too)."""
    import jax

    last: list = [None]

    def sync() -> None:
        if last[0] is not None:
            jax.block_until_ready(last[0])

    def keep(fn):
        def run():
            last[0] = fn()
            return last[0]
        return run

    return keep, sync
