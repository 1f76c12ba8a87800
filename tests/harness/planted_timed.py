"""Planted bugs that the contract methods do not show: torch adapters, each as a third party would
write it, whose mistake lies in the timed path, at large batches, in float64 only, in an update's
size, or in a middle layer's backward; and two correct rewrites that must raise no alarm.

tests/harness/test_planted_timed.py checks each through a `bench run` worker's own code (its
`open`) and, for one, through `bench run` with the adapter registered by FWBENCH_ADAPTERS. The
holes of the float32 model claiming float64 and of state leaking between runs have their planted
models in tests/harness/test_checks.py.
"""

from __future__ import annotations

import copy

import numpy as np

from harness.timing import Phase
from tests.harness.planted import PlantedAdapter, PlantedModel

__all__ = ["ADAPTERS"]


def _torch():
    import torch

    return torch


# -- a timed path that is not the checked one ------------------------------------------------------


class Bfloat16TimedForwardModel(PlantedModel):
    """forward() is right; the timed forward runs a bfloat16 copy of the module (a 'fast path')."""

    def timing_phase(self, phase, x, y):
        if phase != "forward":
            return super().timing_phase(phase, x, y)
        torch = _torch()
        fast = copy.deepcopy(self.module).to(torch.bfloat16)
        tx = self._tensor(x).to(torch.bfloat16)

        def forward():
            with torch.no_grad():
                out = fast(tx).to(self._torch_dtype)
                return self._final(out) if self._final is not None else out

        return Phase(forward, how="module(x) in bfloat16", readback=lambda out: {"output": self._numpy(out)})


class Bfloat16TimedForwardAdapter(PlantedAdapter):
    name = "torch_bf16_timed_forward"
    model_class = Bfloat16TimedForwardModel


class SkippedLayerTimedModel(PlantedModel):
    """The timed forward leaves out the first layer's activation (an 'optimised' graph built by hand)."""

    def timing_phase(self, phase, x, y):
        if phase != "forward":
            return super().timing_phase(phase, x, y)
        torch = _torch()
        modules = [m for name, m in self.module.named_children() if name != f"{self.spec.layers[0].name}_relu"]
        tx = self._tensor(x)

        def forward():
            with torch.no_grad():
                h = tx
                for m in modules:
                    h = m(h)
                return self._final(h) if self._final is not None else h

        return Phase(forward, how="the layers, fused by hand", readback=lambda out: {"output": self._numpy(out)})


class SkippedLayerTimedAdapter(PlantedAdapter):
    name = "torch_skipped_layer_timed"
    model_class = SkippedLayerTimedModel


class NoReadbackModel(PlantedModel):
    """An adapter written before Phase.readback existed: its timed phases hand nothing back."""

    def timing_phase(self, phase, x, y):
        found = super().timing_phase(phase, x, y)
        return Phase(found.run, prepare=found.prepare, sync=found.sync, how=found.how)


class NoReadbackAdapter(PlantedAdapter):
    name = "torch_no_readback"
    model_class = NoReadbackModel


# -- a bug from batch 16 on --------------------------------------------------------------------------


class LargeBatchBugModel(PlantedModel):
    """From batch 16 on, the first layer's inputs are rounded to bfloat16 (a kernel picked by size)."""

    def plant(self):
        torch = _torch()
        dtype = self._torch_dtype

        def round_large(module, args):
            (h,) = args
            return (h.to(torch.bfloat16).to(dtype),) if h.shape[0] >= 16 else None

        getattr(self.module, self.spec.layers[0].name).register_forward_pre_hook(round_large)


class LargeBatchBugAdapter(PlantedAdapter):
    name = "torch_large_batch_bug"
    model_class = LargeBatchBugModel


# -- updates: 10% of one small layer's step; a wrong timed setting; float64 only -------------------------


class OversizedStepModel(PlantedModel):
    """Every optimizer step moves `layer` 10% further than the rule says."""

    layer = "fc1.weight"

    def set_optimizer(self, optimizer):
        super().set_optimizer(optimizer)
        torch, inner = _torch(), self._optimizer
        param = dict(self.module.named_parameters())[self.layer]
        step = inner.step

        def oversized(closure=None):
            before = param.detach().clone()
            step(closure)
            with torch.no_grad():
                param.add_(0.1 * (param - before))

        inner.step = oversized


class OversizedStepAdapter(PlantedAdapter):
    name = "torch_oversized_step"
    model_class = OversizedStepModel


class TutorialLrTimedModel(PlantedModel):
    """set_optimizer is right; the timed train step builds its optimizer with the tutorial's lr=0.1."""

    def timing_phase(self, phase, x, y):
        found = super().timing_phase(phase, x, y)
        if phase == "train_step":
            for group in self._optimizer.param_groups:
                group["lr"] = 0.1
        return found


class TutorialLrTimedAdapter(PlantedAdapter):
    name = "torch_tutorial_lr_timed"
    model_class = TutorialLrTimedModel


class WeightDecayModel(PlantedModel):
    """SGD with a weight decay of 1e-5 nobody asked for (a framework default): below float32's
    tolerances, plain in float64."""

    def set_optimizer(self, optimizer):
        super().set_optimizer(optimizer)
        if optimizer.kind == "sgd":
            for group in self._optimizer.param_groups:
                group["weight_decay"] = 1e-5


class WeightDecayAdapter(PlantedAdapter):
    name = "torch_weight_decay"
    model_class = WeightDecayModel


class WeightDecayExcusedAdapter(WeightDecayAdapter):
    """The same float64-only bug, from an adapter that declares it cannot compute float64: the
    declaration may leave the cell unverified, never let it pass."""

    name = "torch_weight_decay_excused"
    float64_limitation = "this framework says it cannot compute float64"


class ExcusedAdapter(PlantedAdapter):
    """A correct adapter that declares a float64 limitation it does not have."""

    name = "torch_excused"
    float64_limitation = "this framework says it cannot compute float64"


class Float32HyperparamsModel(PlantedModel):
    """Hyperparameters held in float32 (as a framework that stores them in float32 variables
    does): lr 0.01 becomes 0.0099999998, a relative error of 2.2e-8 in every step."""

    def set_optimizer(self, optimizer):
        rounded = {k: float(np.float32(v)) for k, v in optimizer.params.items()}
        super().set_optimizer(type(optimizer)(optimizer.kind, **rounded))


class Float32HyperparamsAdapter(PlantedAdapter):
    name = "torch_float32_hyperparams"
    model_class = Float32HyperparamsModel


# -- a wrong input gradient inside a middle layer ---------------------------------------------------------


def _scaled_input_grad(factor: float):
    torch = _torch()

    class ScaleInputGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h):
            return h.view_as(h)

        @staticmethod
        def backward(ctx, grad):
            return grad * factor

    return ScaleInputGrad.apply


class MiddleInputGradModel(PlantedModel):
    """`layer`'s backward hands its input a gradient 5% too large; its own parameters' are right."""

    layer = "conv2"
    output_grads = True

    def plant(self):
        scale = _scaled_input_grad(1.05)
        getattr(self.module, self.layer).register_forward_pre_hook(lambda module, args: (scale(args[0]),))

    def layer_output_grads(self, x, y):
        return super().layer_output_grads(x, y) if self.output_grads else None


class MiddleInputGradAdapter(PlantedAdapter):
    name = "torch_conv2_input_grad"
    model_class = MiddleInputGradModel


class MiddleInputGradNoOutputGradsModel(MiddleInputGradModel):
    output_grads = False


class MiddleInputGradNoOutputGradsAdapter(PlantedAdapter):
    """The same bug in an adapter without layer_output_grads: it can only be blamed one layer early."""

    name = "torch_conv2_input_grad_no_output_grads"
    model_class = MiddleInputGradNoOutputGradsModel


# -- correct rewrites: no false alarms ----------------------------------------------------------------


class SigmoidThroughTanhModel(PlantedModel):
    """sigmoid(x) written as (1 + tanh(x/2)) / 2: the same function, other rounding."""

    def plant(self):
        torch = _torch()

        class TanhSigmoid(torch.nn.Module):
            def forward(self, h):
                return 0.5 * (1.0 + torch.tanh(0.5 * h))

        for name, module in list(self.module.named_children()):
            if isinstance(module, torch.nn.Sigmoid):
                setattr(self.module, name, TanhSigmoid())


class SigmoidThroughTanhAdapter(PlantedAdapter):
    name = "torch_sigmoid_via_tanh"
    model_class = SigmoidThroughTanhModel


class HandFusedCrossEntropyModel(PlantedModel):
    """Softmax cross-entropy by hand from the logits: logsumexp(z) - z[y], averaged."""

    def plant(self):
        torch = _torch()
        if self.spec.loss != "sparse_categorical_crossentropy":
            return

        def cross_entropy(z, target, reduction="mean"):
            per = torch.logsumexp(z, dim=1) - z.gather(1, target[:, None])[:, 0]
            return per.sum() if reduction == "sum" else per.mean()

        self._loss_fn = cross_entropy


class HandFusedCrossEntropyAdapter(PlantedAdapter):
    name = "torch_hand_fused_ce"
    model_class = HandFusedCrossEntropyModel


ADAPTERS = {cls.name: cls for cls in (
    Bfloat16TimedForwardAdapter, SkippedLayerTimedAdapter, NoReadbackAdapter, LargeBatchBugAdapter,
    OversizedStepAdapter, TutorialLrTimedAdapter, WeightDecayAdapter, WeightDecayExcusedAdapter, ExcusedAdapter,
    Float32HyperparamsAdapter, MiddleInputGradAdapter,
    MiddleInputGradNoOutputGradsAdapter, SigmoidThroughTanhAdapter, HandFusedCrossEntropyAdapter)}
