"""Keras on PyTorch: the variables are torch Parameters; gradients from torch.autograd, the reference's
update rules under torch.no_grad()."""

from __future__ import annotations

from reference_impl.spec import OptimizerSpec

from .. import update_rules
from ..base import phase_readback
from ..tensorflow.layout import nhwc_to_nchw
from .model import KerasModel

__all__ = ["KerasTorchModel"]


class KerasTorchModel(KerasModel):
    backend = "torch"

    def _params(self) -> list:
        return [v.value for v in self._var_list]  # torch Parameters

    def _forward(self, x):
        import torch

        with torch.no_grad():
            return self._apply(self._steps, x)

    def _loss(self, x, y):
        return self._loss_of(self._apply(self._train_steps, x), y)

    def _loss_and_grads(self, x, y):
        import torch

        x = x.detach().requires_grad_(True)
        loss = self._loss(x, y)
        *dparams, dx = torch.autograd.grad(loss, [*self._params(), x])
        return loss.detach(), dparams, dx

    def set_optimizer(self, optimizer: OptimizerSpec) -> None:
        import torch

        self._optimizer, self._steps_taken, self._consts_now = optimizer, 0, self._consts(optimizer)
        self._slots = [tuple(torch.zeros_like(p) for _ in update_rules.slot_names(optimizer)) for p in self._params()]

    def _train(self, x, y):
        import torch

        self._steps_taken += 1
        params = self._params()
        loss = self._loss(x, y)
        grads = torch.autograd.grad(loss, params)
        corrections = self._corrections()
        with torch.no_grad():
            for i, (p, g) in enumerate(zip(params, grads, strict=True)):
                new, self._slots[i] = update_rules.update(self._optimizer.kind, p, g, self._slots[i], self._consts_now,
                                                          corrections, sqrt=torch.sqrt)
                p.copy_(new)
        return loss.detach()

    def layer_output_grads(self, x, y):
        """Layer by layer, each layer's output kept with retain_grad()."""
        steps, ends = self._train_steps, set(self._output_ends())
        h, kept = self._input(x), {}
        for i, (layer, step) in enumerate(steps):
            h = step(h)
            if i in ends:
                h.retain_grad()
                kept[layer] = h
        self._loss_of(h, self._target(y)).backward()
        for p in self._params():
            p.grad = None
        return {layer: self._canonical_output(layer, t.grad) for layer, t in kept.items()}

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def timing_phase(self, phase, x, y):

        from harness.timing import Phase

        tx, ty = self._input(x), self._target(y)
        params = self._params()

        def forward_backward():
            for p in params:
                p.grad = None
            loss = self._loss(tx, ty)
            loss.backward()
            return loss

        def param_grads(_):
            return self._canonical_grads([p.grad for p in params])

        if phase == "forward":
            return Phase(lambda: self._forward(tx), sync=self.sync, how="the Keras layers on x under torch.no_grad()",
                         readback=phase_readback(self, phase, output=lambda out: nhwc_to_nchw(self._host(out))))
        if phase == "forward_backward":
            return Phase(forward_backward, sync=self.sync,
                         how="zero grads, the Keras loss, loss.backward(): every parameter gradient",
                         readback=phase_readback(self, phase, grads=param_grads, loss=self._host))
        if phase == "backward":
            pending: list = []

            def prepare():
                for p in params:
                    p.grad = None
                pending.append(self._loss(tx, ty))

            return Phase(lambda: pending.pop().backward(), prepare=prepare, sync=self.sync,
                         how="loss.backward() alone; the forward under autograd runs untimed before each call",
                         readback=phase_readback(self, phase, grads=param_grads))
        if phase == "train_step":
            self.set_optimizer(self.spec.optimizer)
            return Phase(lambda: self._train(tx, ty), sync=self.sync,
                         how=f"loss, torch.autograd.grad and the reference's {self.spec.optimizer.kind} update",
                         readback=phase_readback(self, phase, loss=self._host))
        return super().timing_phase(phase, x, y)
