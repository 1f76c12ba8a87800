"""The `reference` adapter: reference_impl behind the adapter contract (CPU, eager)."""

from __future__ import annotations

import numpy as np

import reference_impl as ri
from reference_impl.spec import ModelSpec, OptimizerSpec

from .base import Adapter, Availability, BuiltModel, Unavailable

__all__ = ["ReferenceAdapter"]


class ReferenceModel(BuiltModel):
    def __init__(self, spec: ModelSpec, weights: dict[str, np.ndarray], dtype: str) -> None:
        self.spec, self.device, self.dtype, self.mode = spec, "cpu", dtype, "eager"
        self._model = ri.build(spec, {k: np.asarray(v, dtype=dtype) for k, v in weights.items()})
        self._optimizer: ri.optim.Optimizer | None = None

    def forward(self, x):
        return self._model.forward(x)

    def loss_and_grads(self, x, y):
        loss, grads = self._model.loss_and_grads(x, y, input_grad=True)
        return float(loss), grads

    def set_optimizer(self, optimizer: OptimizerSpec) -> None:
        self._optimizer = ri.optim.from_spec(optimizer)

    def train_step(self, x, y):
        if self._optimizer is None:
            raise RuntimeError("call set_optimizer before train_step")
        return float(self._model.train_step(x, y, self._optimizer))

    def get_weights(self):
        return self._model.get_weights()

    def set_weights(self, weights):
        self._model.set_weights({k: np.asarray(v, dtype=self.dtype) for k, v in weights.items()})

    def layer_outputs(self, x):
        return self._model.layer_outputs(x)


class ReferenceAdapter(Adapter):
    name = "reference"
    modes = ("eager",)

    def availability(self) -> Availability:
        return Availability(True, f"numpy {np.__version__}")

    def devices(self) -> list[str]:
        return ["cpu"]

    def build(self, spec, weights, *, device="cpu", dtype="float32", mode="eager") -> ReferenceModel:
        reason = self.unavailable_reason(device, dtype, mode)
        if reason:
            raise Unavailable(reason)
        return ReferenceModel(spec, weights, dtype)
