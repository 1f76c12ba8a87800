"""Planted bugs in JAX: the same classic porting mistakes as tests/harness/planted.py, written in JAX.

Every adapter here is the real JaxAdapter whose model overrides one hook of JaxModel (_conv,
_flatten, _dense through the plan, _activation, _reduce, _update), so that a failing check can only
come from that change. The class names are those of planted.py, so test_planted_bugs.py runs the
same assertions against both; the controls (`NhwcFlattenPermutedAdapter`, `CustomAdamAdapter`)
are the machinery without the mistake, and must pass.
"""

from __future__ import annotations

import numpy as np

from harness.adapters.jax_adapter import JaxAdapter, JaxModel

__all__ = [
    "BaseAdapter",
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
]

BaseAdapter = JaxAdapter


class PlantedAdapter(JaxAdapter):
    """JaxAdapter building `model_class`; eager only, as the torch planted adapters."""

    name = "jax_planted"
    modes = ("eager",)
    model_class = JaxModel


# -- 1. true convolution (flipped kernel) -----------------------------------------------------------


class FlippedConvModel(JaxModel):
    @staticmethod
    def _conv(h, w, b, stride, pads):
        return JaxModel._conv(h, w[:, :, ::-1, ::-1], b, stride, pads)


class FlippedConvAdapter(PlantedAdapter):
    name = "jax_flipped_conv"
    model_class = FlippedConvModel


# -- 2. NHWC flatten, and its control with the first dense weight's rows permuted ------------------


class NhwcFlattenModel(JaxModel):
    """Flattens images in (h, w, c) order, as a port from Keras would, and reports the flatten's
    output in the canonical order (so that the check sees the bug at the dense after it)."""

    permute_rows = False

    def _plan(self, spec):
        self._chw = {layer.name: in_shape for layer, in_shape, _ in spec.layer_shapes()
                     if layer.kind == "flatten" and len(in_shape) == 3}
        names = [layer.name for layer in spec.layers]
        self._dense_after = {flatten: next(layer.name for layer in spec.layers[names.index(flatten) + 1:]
                                           if layer.kind == "dense")
                             for flatten in self._chw}
        return super()._plan(spec)

    @staticmethod
    def _flatten(h):
        return h.transpose(0, 2, 3, 1).reshape(h.shape[0], -1) if h.ndim == 4 else h.reshape(h.shape[0], -1)

    def _perm(self, flatten: str) -> np.ndarray:
        c, hh, ww = self._chw[flatten]
        return np.arange(c * hh * ww).reshape(c, hh, ww).transpose(1, 2, 0).ravel()  # NHWC position -> canonical

    def _rows(self, weights: dict, to_native: bool) -> dict:
        if not self.permute_rows:
            return weights
        out = dict(weights)
        for flatten, dense in self._dense_after.items():
            key, perm = f"{dense}.weight", self._perm(flatten)
            if key in out:
                out[key] = out[key][perm] if to_native else out[key][np.argsort(perm)]
        return out

    def set_weights(self, weights):
        super().set_weights(self._rows({k: np.asarray(v) for k, v in weights.items()}, to_native=True))

    def get_weights(self):
        return self._rows(super().get_weights(), to_native=False)

    def loss_and_grads(self, x, y):
        loss, grads = super().loss_and_grads(x, y)
        return loss, self._rows(grads, to_native=False)

    def _canonical_flatten(self, outputs: dict) -> dict:
        """Each flatten's output (or its gradient), NHWC-ordered here, in the canonical order."""
        for flatten in self._chw:
            outputs[flatten] = np.ascontiguousarray(outputs[flatten][:, np.argsort(self._perm(flatten))])
        return outputs

    def layer_outputs(self, x):
        return self._canonical_flatten(super().layer_outputs(x))

    def layer_output_grads(self, x, y):
        return self._canonical_flatten(super().layer_output_grads(x, y))


class NhwcFlattenAdapter(PlantedAdapter):
    name = "jax_nhwc_flatten"
    model_class = NhwcFlattenModel


class NhwcFlattenPermutedModel(NhwcFlattenModel):
    permute_rows = True


class NhwcFlattenPermutedAdapter(PlantedAdapter):
    name = "jax_nhwc_flatten_permuted"
    model_class = NhwcFlattenPermutedModel


# -- 3. a dropped bias (fc2) ---------------------------------------------------------------------------


class DroppedBiasModel(JaxModel):
    """fc2 computes without its bias; its key stays (the port reports zeros' updates: none)."""

    dropped = "fc2"

    def _plan(self, spec):
        steps = super()._plan(spec)
        i = next(i for i, (name, _) in enumerate(steps) if name == self.dropped)  # the dense op, before its activation
        steps[i] = (self.dropped, lambda p, h: self._dense(h, p[f"{self.dropped}.weight"], None))
        return steps


class DroppedBiasZerosAdapter(PlantedAdapter):
    name = "jax_dropped_bias_zeros"
    model_class = DroppedBiasModel


class DroppedBiasMissingModel(DroppedBiasModel):
    """The port drops the key too: no fc2.bias in its weights, gradients or updates."""

    def set_weights(self, weights):
        kept = [k for k in self.spec.param_shapes() if k != f"{self.dropped}.bias"]
        self.params = {name: self._array(weights[name]) for name in kept}


class DroppedBiasMissingAdapter(PlantedAdapter):
    name = "jax_dropped_bias_missing"
    model_class = DroppedBiasMissingModel


# -- 4. softmax over the batch axis ------------------------------------------------------------------------


class SoftmaxOverBatchModel(JaxModel):
    @staticmethod
    def _activation(kind, h):
        import jax

        return jax.nn.softmax(h, axis=0) if kind == "softmax" else JaxModel._activation(kind, h)


class SoftmaxOverBatchAdapter(PlantedAdapter):
    name = "jax_softmax_dim0"
    model_class = SoftmaxOverBatchModel


# -- 5. gradients of the summed loss -------------------------------------------------------------------


class SummedGradientsModel(JaxModel):
    """Differentiates the loss summed over the batch; reports the mean, as the port printed it."""

    @staticmethod
    def _reduce(per_sample):
        return per_sample.sum()

    def loss_and_grads(self, x, y):
        loss, grads = super().loss_and_grads(x, y)
        return loss / len(x), grads

    def train_step(self, x, y):
        return super().train_step(x, y) / len(x)


class SummedGradientsAdapter(PlantedAdapter):
    name = "jax_summed_grads"
    model_class = SummedGradientsModel


# -- 6. Adam's eps inside the square root, and its control ---------------------------------------------


class CustomAdamModel(JaxModel):
    """Adam written out by hand in the port, eps outside the root (the reference's rule) or inside."""

    eps_inside_sqrt = False

    def _update(self, kind, p, g, slots, c, corrections):
        import jax.numpy as jnp

        if kind != "adam":
            return JaxModel._update(kind, p, g, slots, c, corrections)
        m, v = slots
        bias1, bias2 = corrections
        m = m * c["beta1"] + c["one_minus_beta1"] * g
        v = v * c["beta2"] + c["one_minus_beta2"] * g * g
        m_hat, v_hat = m / bias1, v / bias2
        denominator = jnp.sqrt(v_hat + c["eps"]) if self.eps_inside_sqrt else jnp.sqrt(v_hat) + c["eps"]
        return p - c["lr"] * m_hat / denominator, (m, v)


class CustomAdamAdapter(PlantedAdapter):
    name = "jax_custom_adam"
    model_class = CustomAdamModel


class EpsInsideSqrtAdamModel(CustomAdamModel):
    eps_inside_sqrt = True


class EpsInsideSqrtAdamAdapter(PlantedAdapter):
    name = "jax_adam_eps_inside"
    model_class = EpsInsideSqrtAdamModel
