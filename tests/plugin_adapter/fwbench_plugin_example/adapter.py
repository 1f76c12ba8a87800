"""`numpy_plugin`: a small NumPy implementation of fully connected models, as a third party writes one.

It shares no code with reference_impl's layers: forward, backward, losses and optimizers are its
own, written from docs/adapters.md alone (canonical layout, mean losses computed from logits
after a final softmax or sigmoid, the reference's update rules). Models with convolutions or
pooling are reported Unavailable, which `bench check` shows as skipped cells with the reason.

For the test suite, FWBENCH_PLUGIN_CORRUPT=<param>[,<param>...] (e.g. 'fc2.bias') plants a bug:
the first element of each of those parameters is offset by 0.5 whenever weights are loaded.
"""

from __future__ import annotations

import os

import numpy as np

from harness.adapters.base import Adapter, Availability, BuiltModel, Unavailable

__all__ = ["NumpyPluginAdapter", "NumpyPluginModel", "CORRUPT_ENV"]

CORRUPT_ENV = "FWBENCH_PLUGIN_CORRUPT"
_SUPPORTED = ("dense", "flatten", "relu", "sigmoid", "tanh", "softmax")


def _sigmoid(z):
    # exp of a non-positive number only: no overflow either side
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _act_forward(kind, z):
    if kind == "relu":
        return np.maximum(z, 0)
    if kind == "sigmoid":
        return _sigmoid(z)
    if kind == "tanh":
        return np.tanh(z)
    return _softmax(z)


def _act_backward(kind, z, a, da):
    if kind == "relu":
        return da * (z > 0)
    if kind == "sigmoid":
        return da * a * (1 - a)
    if kind == "tanh":
        return da * (1 - a * a)
    return a * (da - np.sum(da * a, axis=1, keepdims=True))


class NumpyPluginModel(BuiltModel):
    """A fully connected model in NumPy. Steps are (spec layer, op, argument)."""

    def __init__(self, spec, weights, dtype: str) -> None:
        self.spec, self.device, self.dtype, self.mode = spec, "cpu", dtype, "eager"
        self._dt = np.dtype(dtype)
        self._steps: list[tuple[str, str, str | None]] = []
        for layer in spec.layers:
            if layer.kind == "dense":
                self._steps.append((layer.name, "dense", layer.name))
                if layer.activation:
                    self._steps.append((layer.name, "act", layer.activation))
            elif layer.kind == "flatten":
                self._steps.append((layer.name, "flatten", None))
            else:
                self._steps.append((layer.name, "act", layer.kind))
        final = self._steps[-1]
        logit_losses = {("sparse_categorical_crossentropy", "softmax"), ("binary_crossentropy", "sigmoid")}
        self._fused = final[1] == "act" and (spec.loss, final[2]) in logit_losses
        self._names = list(spec.param_shapes())
        self._params: dict[str, np.ndarray] = {}
        self._optimizer = None
        self.set_weights(weights)

    # -- parameters -----------------------------------------------------------------------------

    def set_weights(self, weights):
        if set(weights) != set(self._names):
            raise ValueError(f"numpy_plugin: expected weights {self._names}, got {sorted(weights)}")
        corrupt = {k for k in os.environ.get(CORRUPT_ENV, "").split(",") if k}
        for name in self._names:
            w = np.array(weights[name], dtype=self._dt, copy=True)
            if name in corrupt:
                # One element, not all: a constant offset of every logit's bias would be invisible
                # through the softmax, which is shift-invariant.
                w.flat[0] += self._dt.type(0.5)
            self._params[name] = w

    def get_weights(self):
        return {k: v.copy() for k, v in self._params.items()}

    # -- computation ----------------------------------------------------------------------------

    def _forward(self, x, steps):
        """The output and, per step, (input, output) for the backward."""
        h = np.asarray(x, dtype=self._dt)
        tape = []
        for _, op, arg in steps:
            if op == "dense":
                b = self._params.get(f"{arg}.bias")
                out = h @ self._params[f"{arg}.weight"]
                if b is not None:
                    out = out + b
            elif op == "flatten":
                out = h.reshape(len(h), -1)
            else:
                out = _act_forward(arg, h)
            tape.append((h, out))
            h = out
        return h, tape

    def forward(self, x):
        return self._forward(x, self._steps)[0].copy()

    def layer_outputs(self, x):
        _, tape = self._forward(x, self._steps)
        outputs = {}
        for (layer, _, _), (_, out) in zip(self._steps, tape, strict=True):
            outputs[layer] = out.copy()  # the last step of each layer wins: after its activation
        return outputs

    def _loss_and_dout(self, out, y):
        n = len(out)
        loss_kind = self.spec.loss
        if loss_kind == "sparse_categorical_crossentropy":
            # `out` are logits: the final softmax was left out (fused), or the model has none.
            labels = np.asarray(y)
            shifted = out - out.max(axis=1, keepdims=True)
            logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            dout = np.exp(logp)
            loss = -logp[np.arange(n), labels].mean()
            dout[np.arange(n), labels] -= 1
            return loss, dout / n
        target = np.asarray(y, dtype=self._dt)
        if loss_kind == "binary_crossentropy":  # always fused: the spec requires a final sigmoid
            loss = np.mean(np.maximum(out, 0) - out * target + np.log1p(np.exp(-np.abs(out))))
            return loss, (_sigmoid(out) - target) / out.size
        diff = out - target
        return np.mean(diff * diff), 2 * diff / out.size

    def loss_and_grads(self, x, y):
        steps = self._steps[:-1] if self._fused else self._steps
        out, tape = self._forward(x, steps)
        loss, d = self._loss_and_dout(out, y)
        grads = {}
        for (_, op, arg), (h, o) in zip(reversed(steps), reversed(tape), strict=True):
            if op == "dense":
                grads[f"{arg}.weight"] = h.T @ d
                if f"{arg}.bias" in self._params:
                    grads[f"{arg}.bias"] = d.sum(axis=0)
                d = d @ self._params[f"{arg}.weight"].T
            elif op == "flatten":
                d = d.reshape(h.shape)
            else:
                d = _act_backward(arg, h, o, d)
        grads["input"] = d
        return float(loss), {k: np.array(v, dtype=self._dt, copy=True) for k, v in grads.items()}

    # -- training -------------------------------------------------------------------------------

    def set_optimizer(self, optimizer):
        self._optimizer = (optimizer.kind, optimizer.params, {"t": 0})

    def train_step(self, x, y):
        if self._optimizer is None:
            raise RuntimeError("call set_optimizer before train_step")
        kind, hp, state = self._optimizer
        loss, grads = self.loss_and_grads(x, y)
        state["t"] += 1
        t = state["t"]
        for name, p in self._params.items():
            g = grads[name]
            s = state.setdefault(name, {})
            if kind == "sgd":
                if hp["momentum"]:
                    s["buf"] = g.copy() if "buf" not in s else hp["momentum"] * s["buf"] + g
                    g = s["buf"]
                p -= hp["lr"] * g
            elif kind == "rmsprop":
                s["v"] = hp["rho"] * s.get("v", 0) + (1 - hp["rho"]) * g * g
                p -= hp["lr"] * g / (np.sqrt(s["v"]) + hp["eps"])
            else:
                s["m"] = hp["beta1"] * s.get("m", 0) + (1 - hp["beta1"]) * g
                s["v"] = hp["beta2"] * s.get("v", 0) + (1 - hp["beta2"]) * g * g
                m_hat = s["m"] / (1 - hp["beta1"] ** t)
                v_hat = s["v"] / (1 - hp["beta2"] ** t)
                p -= hp["lr"] * m_hat / (np.sqrt(v_hat) + hp["eps"])
        return loss


class NumpyPluginAdapter(Adapter):
    name = "numpy_plugin"
    modes = ("eager",)

    def availability(self) -> Availability:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return Availability(True, f"plugin {version('fwbench-plugin-example')}")
        except PackageNotFoundError:  # imported from a source tree, not installed
            return Availability(True, None)

    def devices(self) -> list[str]:
        return ["cpu"]

    def build(self, spec, weights, *, device="cpu", dtype="float32", mode="eager") -> NumpyPluginModel:
        reason = self.unavailable_reason(device, dtype, mode)
        if reason:
            raise Unavailable(reason)
        unsupported = sorted({layer.kind for layer in spec.layers if layer.kind not in _SUPPORTED})
        if unsupported or len(spec.input_shape) != 1:
            what = ", ".join(unsupported) or f"input shape {spec.input_shape}"
            raise Unavailable(f"numpy_plugin runs fully connected models only; {spec.name} has {what}")
        return NumpyPluginModel(spec, weights, dtype)
