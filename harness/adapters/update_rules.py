"""The reference's update rules (reference_impl.optim) over the tensors of any framework (TF, JAX, Keras).

Optimizers. Not keras.optimizers: Keras's Adam adds epsilon to sqrt(v) with the bias correction
folded into the step size (the paper's rule with eps scaled by sqrt(1 - beta2^t)), and its SGD
momentum keeps v = momentum * v - lr * g (equal to PyTorch's form only in exact arithmetic). The
rules of reference_impl.optim are written out here, operation for operation in the reference's
order, every constant rounded to the model's dtype as the reference rounds it (constants() takes
the backend's constructor of a scalar in the model's dtype). The update functions use only
arithmetic operators and the `sqrt` they are given, on tensors of any backend, and return the new
values: the model assigns them to its parameters and its own slot variables. Adam's bias
corrections (1 - beta^t) are computed on the host in Python, exactly as the reference does
(adam_corrections), and passed to the step as scalars, so a compiled step is traced once.
"""

from __future__ import annotations

from collections.abc import Callable

from reference_impl.spec import OptimizerSpec

__all__ = ["constants", "slot_names", "adam_corrections", "sgd", "rmsprop", "adam", "update"]


def constants(optimizer: OptimizerSpec, const: Callable[[float], object]) -> dict[str, object]:
    """The rule's constants, each `const(python_float)`: rounded from the Python float to the
    model's dtype, as the reference's t(v); differences such as 1 - rho are taken in Python first."""
    hp = optimizer.params
    if optimizer.kind == "sgd":
        return {"lr": const(hp["lr"]), "momentum": const(hp["momentum"])}
    if optimizer.kind == "rmsprop":
        return {"lr": const(hp["lr"]), "rho": const(hp["rho"]), "one_minus_rho": const(1 - hp["rho"]),
                "eps": const(hp["eps"])}
    return {"lr": const(hp["lr"]), "eps": const(hp["eps"]), "beta1": const(hp["beta1"]),
            "beta2": const(hp["beta2"]), "one_minus_beta1": const(1 - hp["beta1"]),
            "one_minus_beta2": const(1 - hp["beta2"])}


def slot_names(optimizer: OptimizerSpec) -> tuple[str, ...]:
    """The state the rule keeps per parameter, each starting at zeros (SGD without momentum: none)."""
    if optimizer.kind == "sgd":
        return ("momentum_buffer",) if optimizer.params["momentum"] else ()
    if optimizer.kind == "rmsprop":
        return ("square_avg",)
    return ("exp_avg", "exp_avg_sq")


def adam_corrections(optimizer: OptimizerSpec, step: int) -> tuple[float, ...]:
    """Adam's (1 - beta1^t, 1 - beta2^t) for step t (from 1), in Python floats as the reference
    computes them; () for the other rules, which have none."""
    if optimizer.kind != "adam":
        return ()
    hp = optimizer.params
    return 1 - hp["beta1"] ** step, 1 - hp["beta2"] ** step


def sgd(p, g, slots: tuple, c: dict):
    """(p, slots) after one SGD step, PyTorch's form: buf = momentum * buf + g, p - lr * buf."""
    if slots:
        (buf,) = slots
        # buf = momentum * buf + g; from zeros, the first step gives exactly buf = g.
        g = buf * c["momentum"] + g
        slots = (g,)
    return p - c["lr"] * g, slots


def rmsprop(p, g, slots: tuple, c: dict, *, sqrt):
    """(p, (square_avg,)) after one RMSprop step, eps outside the square root."""
    (v,) = slots
    v_new = v * c["rho"] + c["one_minus_rho"] * g * g
    return p - c["lr"] * g / (sqrt(v_new) + c["eps"]), (v_new,)


def adam(p, g, slots: tuple, c: dict, corrections: tuple, *, sqrt):
    """(p, (exp_avg, exp_avg_sq)) after one Adam step, the paper's rule: p - lr*m_hat/(sqrt(v_hat)+eps);
    corrections are this step's (1 - beta1^t, 1 - beta2^t) as scalars of the model's dtype."""
    m, v = slots
    bias1, bias2 = corrections
    m_new = m * c["beta1"] + c["one_minus_beta1"] * g
    v_new = v * c["beta2"] + c["one_minus_beta2"] * g * g
    m_hat = m_new / bias1
    v_hat = v_new / bias2
    return p - c["lr"] * m_hat / (sqrt(v_hat) + c["eps"]), (m_new, v_new)


def update(kind: str, p, g, slots: tuple, c: dict, corrections: tuple, *, sqrt):
    """(new p, new slots) after one step of the rule `kind` ('sgd', 'rmsprop' or 'adam')."""
    if kind == "sgd":
        return sgd(p, g, slots, c)
    if kind == "rmsprop":
        return rmsprop(p, g, slots, c, sqrt=sqrt)
    if kind == "adam":
        return adam(p, g, slots, c, corrections, sqrt=sqrt)
    raise ValueError(f"unknown optimizer {kind!r}; valid: sgd, rmsprop, adam")
