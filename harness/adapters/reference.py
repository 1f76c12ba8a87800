"""The `reference` adapter: reference_impl behind the adapter contract (CPU, eager)."""

from __future__ import annotations

import os

import numpy as np

import reference_impl as ri
from reference_impl.spec import ModelSpec, OptimizerSpec

from .base import Adapter, Availability, BuiltModel, phase_readback

__all__ = ["ReferenceAdapter", "ReferenceModel"]

# The BLAS limit of configure_threads, held for the life of the process.
_blas_limits = None


class ReferenceModel(BuiltModel):
    def __init__(self, spec: ModelSpec, weights: dict[str, np.ndarray], dtype: str = "float32", *,
                 device: str = "cpu", mode: str = "eager") -> None:
        if (device, mode) != ("cpu", "eager"):
            raise ValueError(f"the reference runs on the cpu, eager; got device {device!r}, mode {mode!r}")
        self.spec, self.device, self.dtype, self.mode = spec, device, dtype, mode
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

    def layer_output_grads(self, x, y):
        return self._model.layer_output_grads(x, y)

    def knobs(self):
        return {"mode": "eager", "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}

    def timing_phase(self, phase, x, y):
        from harness.timing import Phase

        model = self._model
        x = np.asarray(x, dtype=self.dtype)
        if phase == "forward":
            return Phase(lambda: model.forward(x), how="Sequential.forward(x) on a NumPy batch",
                         readback=phase_readback(self, phase, output=lambda out: out))
        if phase == "forward_backward":
            return Phase(lambda: model.loss_and_grads(x, y),
                         how="Sequential.loss_and_grads(x, y): loss and every parameter gradient",
                         readback=phase_readback(self, phase, grads=lambda r: r[1], loss=lambda r: r[0]))
        if phase == "backward":
            return Phase(model.backward, prepare=lambda: model.forward_loss(x, y),
                         how="Sequential.backward() alone; forward_loss(x, y) runs untimed before each call",
                         readback=phase_readback(self, phase, grads=lambda grads: grads))
        if phase == "train_step":
            optimizer = ri.optim.from_spec(self.spec.optimizer)
            return Phase(lambda: model.train_step(x, y, optimizer),
                         how=f"Sequential.train_step with the spec's {self.spec.optimizer.kind}",
                         readback=phase_readback(self, phase, loss=lambda loss: loss))
        return super().timing_phase(phase, x, y)


class ReferenceAdapter(Adapter):
    name = "reference"
    modes = ("eager",)
    model_class = ReferenceModel

    def availability(self) -> Availability:
        # NumPy is fwbench's own dependency: always here. The version names it (the framework is NumPy).
        return Availability(True, f"numpy {np.__version__}")

    def devices(self) -> list[str]:
        return ["cpu"]

    def configure_threads(self, threads: int) -> dict:
        """Limit NumPy's BLAS to `threads` with threadpoolctl, for the rest of the process, and
        report what threadpoolctl then finds: "threads" is the BLAS pools' size (the largest, None
        without a BLAS pool), "threadpools" every BLAS and OpenMP pool loaded.

        A `bench run` worker also sets OPENBLAS_NUM_THREADS / OMP_NUM_THREADS before NumPy loads
        (a BLAS reads them once, when it loads, and sizes its pool from them); the limit here holds
        whatever the environment said, and works on any BLAS threadpoolctl knows, not OpenBLAS only.
        """
        from threadpoolctl import threadpool_info, threadpool_limits

        global _blas_limits
        _blas_limits = threadpool_limits(threads, user_api="blas")
        pools = [{key: pool.get(key) for key in ("user_api", "internal_api", "num_threads", "version")}
                 for pool in threadpool_info()]
        blas = [pool["num_threads"] for pool in pools if pool["user_api"] == "blas"]
        return {"threads": max(blas) if blas else None, "threadpools": pools,
                "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")}
