"""The `reference` adapter: reference_impl behind the adapter contract (CPU, eager)."""

from __future__ import annotations

import os

import numpy as np

import reference_impl as ri
from reference_impl.spec import ModelSpec, OptimizerSpec

from .base import Adapter, Availability, BuiltModel, Unavailable

__all__ = ["ReferenceAdapter"]


def _openblas_threads() -> int | None:
    """The thread count NumPy's OpenBLAS reports, when NumPy uses a loadable OpenBLAS."""
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return None
    for path in paths:
        if not path.startswith("/"):
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads"):
            fn = getattr(lib, symbol, None)
            if fn is not None:
                fn.restype = ctypes.c_int
                return int(fn())
    return None


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


    def knobs(self):
        return {"mode": "eager", "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}

    def timing_phase(self, phase, x, y):
        from harness.timing import Phase

        model = self._model
        x = np.asarray(x, dtype=self.dtype)
        if phase == "forward":
            return Phase(lambda: model.forward(x), how="Sequential.forward(x) on a NumPy batch")
        if phase == "forward_backward":
            return Phase(lambda: model.loss_and_grads(x, y),
                         how="Sequential.loss_and_grads(x, y): loss and every parameter gradient")
        if phase == "backward":
            return Phase(model.backward, prepare=lambda: model.forward_loss(x, y),
                         how="Sequential.backward() alone; forward_loss(x, y) runs untimed before each call")
        if phase == "train_step":
            optimizer = ri.optim.from_spec(self.spec.optimizer)
            return Phase(lambda: model.train_step(x, y, optimizer),
                         how=f"Sequential.train_step with the spec's {self.spec.optimizer.kind}")
        return super().timing_phase(phase, x, y)


class ReferenceAdapter(Adapter):
    name = "reference"
    modes = ("eager",)

    def availability(self) -> Availability:
        return Availability(True, f"numpy {np.__version__}")

    def devices(self) -> list[str]:
        return ["cpu"]

    def configure_threads(self, threads: int) -> dict:
        # NumPy's BLAS reads its thread count from the environment when it loads: a worker sets
        # OPENBLAS_NUM_THREADS / OMP_NUM_THREADS before importing NumPy; this reports what it has.
        env = os.environ.get("OPENBLAS_NUM_THREADS")
        blas = _openblas_threads()
        applied = {"threads": blas if blas is not None else (int(env) if env and env.isdigit() else None),
                   "OPENBLAS_NUM_THREADS": env}
        if blas is not None:
            applied["openblas_get_num_threads"] = blas
        return applied

    def build(self, spec, weights, *, device="cpu", dtype="float32", mode="eager") -> ReferenceModel:
        reason = self.unavailable_reason(device, dtype, mode)
        if reason:
            raise Unavailable(reason)
        return ReferenceModel(spec, weights, dtype)
