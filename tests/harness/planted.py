"""Planted bugs: torch adapters that each reproduce one classic porting mistake.

Every adapter here is the real TorchAdapter with one thing changed, so that a failing check can
only come from that change. tests/harness/test_planted_bugs.py asserts that `bench check` fails
on each of them and names the right tensor and layer; the controls (`NhwcFlattenAdapter` with the
row permutation, `CustomAdamAdapter` with eps outside the square root) are the same machinery
without the mistake, and must pass.

The adapters are importable as `tests.harness.planted:<Class>`, which is how the tests register
them as entry points of the group 'harness.adapters'.
"""

from __future__ import annotations

import numpy as np

from harness.adapters.base import Unavailable
from harness.adapters.torch_adapter import TorchAdapter, TorchModel

__all__ = [
    "PlantedModel",
    "PlantedAdapter",
    "FlippedConvAdapter",
    "NhwcFlattenAdapter",
    "NhwcFlattenPermutedAdapter",
    "DroppedBiasZerosAdapter",
    "DroppedBiasMissingAdapter",
    "SoftmaxOverBatchAdapter",
    "SummedGradientsAdapter",
    "EpsInsideSqrtAdamAdapter",
    "CustomAdamAdapter",
    "ADAPTERS",
]


def _torch():
    import torch

    return torch


class PlantedModel(TorchModel):
    """A TorchModel whose `plant()` changes the built module; the weights are loaded again after."""

    def __init__(self, spec, weights, device, dtype, mode):
        super().__init__(spec, weights, device, dtype, mode)
        self.plant()
        self.module.to(device=device, dtype=self._torch_dtype)
        self.set_weights(weights)

    def plant(self) -> None:  # the unchanged model by default
        pass


class PlantedAdapter(TorchAdapter):
    """TorchAdapter building `model_class`; eager only (the planted modules are not compiled)."""

    name = "torch_planted"
    modes = ("eager",)
    model_class: type[TorchModel] = PlantedModel

    def build(self, spec, weights, *, device="cpu", dtype="float32", mode="eager"):
        reason = self.unavailable_reason(device, dtype, mode)
        if reason:
            raise Unavailable(reason)
        if device == "cuda":
            device = "cuda:0"
        return self.model_class(spec, weights, device, dtype, mode)


# -- 1. true convolution instead of cross-correlation, in conv1 -------------------------------


def _flipped_conv2d(conv):
    """A Conv2d like `conv` that flips its kernel spatially: convolution in the textbook sense."""
    nn = _torch().nn

    class FlippedConv2d(nn.Conv2d):
        def forward(self, x):
            return self._conv_forward(x, self.weight.flip((-2, -1)), self.bias)

    return FlippedConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         bias=conv.bias is not None)


class FlippedConvModel(PlantedModel):
    layer = "conv1"

    def plant(self):
        setattr(self.module, self.layer, _flipped_conv2d(getattr(self.module, self.layer)))


class FlippedConvAdapter(PlantedAdapter):
    name = "torch_flipped_conv"
    model_class = FlippedConvModel


# -- 2. NHWC flatten (as a channels-last framework does) without permuting the dense rows ----


def _flatten_geometry(spec):
    """(flatten layer, its (c, h, w) input, the first dense layer after it)."""
    shapes = spec.layer_shapes()
    for i, (layer, in_shape, _) in enumerate(shapes):
        if layer.kind == "flatten" and len(in_shape) == 3:
            dense = next(later.name for later, _, _ in shapes[i + 1:] if later.kind == "dense")
            return layer.name, in_shape, dense
    raise ValueError(f"model {spec.name!r} has no flatten of an image")


class NhwcFlattenModel(PlantedModel):
    """Activations permuted to NHWC before the Flatten, so features come in (h, w, c) order.

    layer_outputs reports the flatten's output back in the canonical (c, h, w) order, as a
    channels-last adapter must. With `permute_rows`, the first dense weight's rows are permuted
    to match (the correct port); without, the canonical weight is loaded as is (the bug).
    """

    permute_rows = False

    def plant(self):
        torch = _torch()

        class NhwcFlatten(torch.nn.Module):
            def forward(self, x):
                return x.permute(0, 2, 3, 1).flatten(1)

        self._flatten, (c, h, w), self._dense = _flatten_geometry(self.spec)
        self._chw = (c, h, w)
        # perm[j] = the canonical (c, h, w) index of NHWC feature j
        self._perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()
        self._inv = np.argsort(self._perm)
        setattr(self.module, self._flatten, NhwcFlatten())

    def _rows_in(self, a):  # canonical rows -> the NHWC model's rows
        return a[self._perm] if self.permute_rows else a

    def _rows_out(self, a):  # the inverse
        return np.ascontiguousarray(a[self._inv]) if self.permute_rows else a

    def set_weights(self, weights):
        key = f"{getattr(self, '_dense', '')}.weight"
        if key in weights:
            weights = {**weights, key: self._rows_in(np.asarray(weights[key]))}
        super().set_weights(weights)

    def get_weights(self):
        weights = super().get_weights()
        key = f"{self._dense}.weight"
        weights[key] = self._rows_out(weights[key])
        return weights

    def loss_and_grads(self, x, y):
        loss, grads = super().loss_and_grads(x, y)
        key = f"{self._dense}.weight"
        grads[key] = self._rows_out(grads[key])
        return loss, grads

    def _canonical_flatten(self, outputs: dict) -> dict:
        """The flatten's output (or its gradient), NHWC-ordered here, in the canonical order."""
        c, h, w = self._chw
        flat = outputs[self._flatten]
        outputs[self._flatten] = np.ascontiguousarray(
            flat.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(len(flat), -1))
        return outputs

    def layer_outputs(self, x):
        return self._canonical_flatten(super().layer_outputs(x))

    def layer_output_grads(self, x, y):
        return self._canonical_flatten(super().layer_output_grads(x, y))


class NhwcFlattenAdapter(PlantedAdapter):
    name = "torch_nhwc_flatten"
    model_class = NhwcFlattenModel


class NhwcFlattenPermutedModel(NhwcFlattenModel):
    permute_rows = True


class NhwcFlattenPermutedAdapter(PlantedAdapter):
    """The control of bug 2: the same NHWC model with the rows permuted. Must pass."""

    name = "torch_nhwc_flatten_permuted"
    model_class = NhwcFlattenPermutedModel


# -- 3. a dropped bias ------------------------------------------------------------------------


class DroppedBiasModel(PlantedModel):
    """`layer` built with bias=False; the canonical bias is ignored on set_weights.

    report_zeros: get_weights and the gradients report the bias as zeros (what a port that keeps
    the name but not the parameter would do); else the key is missing from both.
    """

    layer = "fc2"
    report_zeros = True

    def plant(self):
        old = getattr(self.module, self.layer)
        setattr(self.module, self.layer, _torch().nn.Linear(old.in_features, old.out_features, bias=False))
        self._bias_shape = (old.out_features,)

    def set_weights(self, weights):
        params = dict(self.module.named_parameters())
        super().set_weights({k: v for k, v in weights.items() if k in params})

    def _with_bias(self, tensors):
        if self.report_zeros:
            tensors[f"{self.layer}.bias"] = np.zeros(self._bias_shape, dtype=self.dtype)
        return tensors

    def get_weights(self):
        return self._with_bias(super().get_weights())

    def loss_and_grads(self, x, y):
        loss, grads = super().loss_and_grads(x, y)
        return loss, self._with_bias(grads)


class DroppedBiasZerosAdapter(PlantedAdapter):
    name = "torch_dropped_bias"
    model_class = DroppedBiasModel


class DroppedBiasMissingModel(DroppedBiasModel):
    report_zeros = False


class DroppedBiasMissingAdapter(PlantedAdapter):
    name = "torch_dropped_bias_missing"
    model_class = DroppedBiasMissingModel


# -- 4. softmax over the batch axis ------------------------------------------------------------


class SoftmaxOverBatchModel(PlantedModel):
    """The final softmax over dim=0. The loss is taken from the logits, so only outputs change."""

    def plant(self):
        if self._final is None:
            raise ValueError(f"model {self.spec.name!r} has no final softmax fused into its loss")
        self._final = _torch().nn.Softmax(dim=0)


class SoftmaxOverBatchAdapter(PlantedAdapter):
    name = "torch_softmax_dim0"
    model_class = SoftmaxOverBatchModel


# -- 5. gradients of the summed loss, the mean loss reported -----------------------------------


class SummedGradientsModel(PlantedModel):
    """The loss's value is the batch mean, its gradient that of the sum (reduction='sum')."""

    def plant(self):
        mean_fn = self._loss_fn

        def loss_fn(out, target):
            total = mean_fn(out, target, reduction="sum")
            return mean_fn(out, target).detach() + (total - total.detach())

        self._loss_fn = loss_fn


class SummedGradientsAdapter(PlantedAdapter):
    name = "torch_summed_grads"
    model_class = SummedGradientsModel


# -- 6. Adam with eps inside the square root ---------------------------------------------------


def _custom_adam(params, *, lr, betas, eps, eps_inside_sqrt):
    torch = _torch()

    class CustomAdam(torch.optim.Optimizer):
        """Adam by hand; eps_inside_sqrt gives p -= lr*m_hat/sqrt(v_hat + eps) (the bug)."""

        def __init__(self, params):
            super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                beta1, beta2 = group["betas"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state[p]
                    if not state:
                        state["step"] = 0
                        state["m"] = torch.zeros_like(p)
                        state["v"] = torch.zeros_like(p)
                    state["step"] += 1
                    t, m, v = state["step"], state["m"], state["v"]
                    m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                    v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                    m_hat = m / (1 - beta1 ** t)
                    v_hat = v / (1 - beta2 ** t)
                    if eps_inside_sqrt:
                        denom = torch.sqrt(v_hat + group["eps"])
                    else:
                        denom = torch.sqrt(v_hat) + group["eps"]
                    p.sub_(group["lr"] * m_hat / denom)

    return CustomAdam(params)


class CustomAdamModel(PlantedModel):
    eps_inside_sqrt = False

    def set_optimizer(self, optimizer):
        if optimizer.kind != "adam":
            return super().set_optimizer(optimizer)
        hp = optimizer.params
        self._optimizer = _custom_adam(self.module.parameters(), lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]),
                                       eps=hp["eps"], eps_inside_sqrt=self.eps_inside_sqrt)


class CustomAdamAdapter(PlantedAdapter):
    """The control of bug 6: the same hand-written Adam with eps outside the root. Must pass."""

    name = "torch_custom_adam"
    model_class = CustomAdamModel


class EpsInsideSqrtAdamModel(CustomAdamModel):
    eps_inside_sqrt = True


class EpsInsideSqrtAdamAdapter(PlantedAdapter):
    name = "torch_adam_eps_inside"
    model_class = EpsInsideSqrtAdamModel


ADAPTERS = {
    cls.name: cls
    for cls in (PlantedAdapter, FlippedConvAdapter, NhwcFlattenAdapter, NhwcFlattenPermutedAdapter,
                DroppedBiasZerosAdapter, DroppedBiasMissingAdapter, SoftmaxOverBatchAdapter,
                SummedGradientsAdapter, EpsInsideSqrtAdamAdapter, CustomAdamAdapter)
}
