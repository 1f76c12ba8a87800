"""Keras on PyTorch: the variables are torch Parameters; gradients from torch.autograd, the reference's
update rules under torch.no_grad()."""

from __future__ import annotations

from reference_impl.spec import OptimizerSpec

from .. import update_rules
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

        if phase == "forward":
            return Phase(lambda: self._forward(tx), sync=self.sync, how="the Keras layers on x under torch.no_grad()")
        if phase == "forward_backward":
            return Phase(forward_backward, sync=self.sync,
                         how="zero grads, the Keras loss, loss.backward(): every parameter gradient")
        if phase == "backward":
            pending: list = []

            def prepare():
                for p in params:
                    p.grad = None
                pending.append(self._loss(tx, ty))

            return Phase(lambda: pending.pop().backward(), prepare=prepare, sync=self.sync,
                         how="loss.backward() alone; the forward under autograd runs untimed before each call")
        if phase == "train_step":
            self.set_optimizer(self.spec.optimizer)
            return Phase(lambda: self._train(tx, ty), sync=self.sync,
                         how=f"loss, torch.autograd.grad and the reference's {self.spec.optimizer.kind} update")
        return super().timing_phase(phase, x, y)
