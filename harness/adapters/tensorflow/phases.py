"""The tensorflow adapter's timing phases: native calls on a batch moved to the device once.

This is TensorFlowModel.timing_phase, kept apart: it reads that model's internals (its device,
compiled functions, variables and loss), and only TensorFlowModel calls it.
"""

from __future__ import annotations

from ..base import PHASES, Unavailable, phase_readback
from .layout import nhwc_to_nchw, to_canonical
from .runtime import import_tf

__all__ = ["timing_phase"]


def timing_phase(model, phase: str, x, y):
    """A harness.timing.Phase that runs `phase` ('forward', 'forward_backward', 'backward' or
    'train_step') of this TensorFlowModel on (x, y), which it moves to the device first."""
    from harness.timing import Phase

    tf = import_tf()
    device = model._tf_device
    with tf.device(device):
        tx, ty = tf.identity(model._input(x)), tf.identity(model._target(y))

    def run_on_device(fn):
        def run():
            with tf.device(device):
                return fn()
        return run

    def param_grads(grads):
        return to_canonical(model.spec, {n: g.numpy() for n, g in zip(model._vars, grads, strict=True)})

    if phase == "forward":
        return Phase(run_on_device(lambda: model._forward_fn(tx)), sync=model.sync,
                     how=f"the model's layers on x ({model.mode}), no gradient tape",
                     readback=phase_readback(model, phase, output=lambda out: nhwc_to_nchw(out.numpy())))
    if phase == "forward_backward":
        def loss_and_param_grads(x, y):
            with tf.GradientTape() as tape:
                loss = model._loss(x, y)
            return loss, tape.gradient(loss, model._var_list)

        fb = model._compile(loss_and_param_grads)
        return Phase(run_on_device(lambda: fb(tx, ty)), sync=model.sync,
                     how=f"loss and every parameter gradient under one GradientTape ({model.mode})",
                     readback=phase_readback(model, phase, grads=lambda r: param_grads(r[1]),
                                             loss=lambda r: r[0].numpy()))
    if phase == "backward":
        if model.mode != "eager":
            raise Unavailable(f"a backward pass cannot be timed apart from its forward inside one "
                              f"tf.function ({model.mode}); time forward_backward and forward instead")
        pending = []

        def prepare():
            with tf.device(device):
                with tf.GradientTape() as tape:
                    loss = model._loss(tx, ty)
            pending.append((tape, loss))

        def backward():
            tape, loss = pending.pop()
            return tape.gradient(loss, model._var_list)

        return Phase(run_on_device(backward), prepare=prepare, sync=model.sync,
                     how="tape.gradient alone; the forward under the tape runs untimed before each call",
                     readback=phase_readback(model, phase, grads=param_grads))
    if phase == "train_step":
        model.set_optimizer(model.spec.optimizer)

        def train_step():
            model._steps_taken += 1
            return model._train_fn(tx, ty, model._corrections())

        return Phase(run_on_device(train_step), sync=model.sync,
                     how=f"loss, gradients and the reference's {model.spec.optimizer.kind} update as tf ops "
                         f"({model.mode})",
                     readback=phase_readback(model, phase, loss=lambda loss: loss.numpy()))
    raise ValueError(f"unknown phase {phase!r}; valid: {', '.join(PHASES)}")
