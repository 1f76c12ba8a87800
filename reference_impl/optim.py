"""Optimizers that update a dict of parameters in place from a dict of gradients, keyed by name.

Every hyperparameter is a required keyword: frameworks' defaults differ, so none is assumed here.
The update rules are PyTorch's (and the papers'); where Keras differs, the adapter translates.
"""

from __future__ import annotations

import numpy as np

from .spec import OptimizerSpec

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "from_spec"]


class Optimizer:
    """Base: `step(params, grads)` updates every params[name] in place using grads[name]."""

    def __init__(self) -> None:
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.steps = 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        missing = [k for k in params if k not in grads]
        if missing:
            raise KeyError(f"no gradient for {', '.join(missing)}")
        self.steps += 1
        for name, p in params.items():
            g = grads[name]
            if g.shape != p.shape:
                raise ValueError(f"gradient {name!r}: expected {p.shape}, got {g.shape}")
            self._update(name, p, g.astype(p.dtype, copy=False), self.state.setdefault(name, {}))

    def _update(self, name: str, p: np.ndarray, g: np.ndarray, state: dict) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """buf = momentum * buf + g (buf = g at the first step); p -= lr * buf. PyTorch's form, dampening 0.

    Keras's form (v = momentum * v - lr * g; p += v) gives the same parameters while lr is constant.
    """

    def __init__(self, *, lr: float, momentum: float) -> None:
        super().__init__()
        self.lr, self.momentum = lr, momentum

    def _update(self, name, p, g, state):
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= p.dtype.type(self.momentum)
                buf += g
            g = buf
        p -= p.dtype.type(self.lr) * g


class RMSprop(Optimizer):
    """v = rho * v + (1 - rho) * g^2; p -= lr * g / (sqrt(v) + eps). PyTorch's form (eps outside)."""

    def __init__(self, *, lr: float, rho: float, eps: float) -> None:
        super().__init__()
        self.lr, self.rho, self.eps = lr, rho, eps

    def _update(self, name, p, g, state):
        t = p.dtype.type
        v = state.setdefault("square_avg", np.zeros_like(p))
        v *= t(self.rho)
        v += t(1 - self.rho) * g * g
        p -= t(self.lr) * g / (np.sqrt(v) + t(self.eps))


class Adam(Optimizer):
    """Adam as in the paper and PyTorch: p -= lr * m_hat / (sqrt(v_hat) + eps).

    NOTE: Keras adds eps to sqrt(v) before the bias correction is folded into the step size, which
    is this rule with eps_keras = eps * sqrt(1 - beta2^t); adapters must convert, not assume.
    """

    def __init__(self, *, lr: float, beta1: float, beta2: float, eps: float) -> None:
        super().__init__()
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps

    def _update(self, name, p, g, state):
        t = p.dtype.type
        m = state.setdefault("exp_avg", np.zeros_like(p))
        v = state.setdefault("exp_avg_sq", np.zeros_like(p))
        m *= t(self.beta1)
        m += t(1 - self.beta1) * g
        v *= t(self.beta2)
        v += t(1 - self.beta2) * g * g
        m_hat = m / t(1 - self.beta1 ** self.steps)
        v_hat = v / t(1 - self.beta2 ** self.steps)
        p -= t(self.lr) * m_hat / (np.sqrt(v_hat) + t(self.eps))


_KINDS = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam}


def from_spec(spec: OptimizerSpec) -> Optimizer:
    return _KINDS[spec.kind](**spec.params)
