"""Keras 3 on the JAX and PyTorch backends: the adapters `keras-jax` and `keras-torch`.

model.py is the backend-neutral Keras model; on_jax.py and on_torch.py each backend's gradients and
updates.

The same Keras model code as the `tensorflow` adapter (which is Keras on TensorFlow): the layers of
harness/adapters/tensorflow/model.py's keras_layers, channels_last, with its layout conversion
(tensorflow/layout.py: conv kernels (kh, kw, in, out), the rows of the first Dense after an image's
Flatten permuted), and the reference's update rules (update_rules.py) on the backend's tensors.

A process holds one Keras backend, chosen before keras is first imported: each adapter names the
environment it needs (`environment`: KERAS_BACKEND, and JAX_ENABLE_X64 for float64 on JAX), which
`bench run` sets in the adapter's worker and `bench check` in a worker of its own. A model built in
a process whose Keras runs another backend is Unavailable, with that reason.

How each backend is run, as its users run a custom training loop:
- keras-jax: the layers' variables are replaced by traced values (keras.StatelessScope), so the
  model is a function of (variables, x) that jax.value_and_grad and jax.jit take: 'eager' op by op,
  'jit' compiled (what model.fit does on JAX). Sync: jax.block_until_ready.
- keras-torch: the variables are torch Parameters; gradients from torch.autograd, updates under
  torch.no_grad(); 'eager' only (Keras's jit_compile on torch is torch.compile, not offered here).

Losses are the Keras loss functions (keras.losses, from the logits where the spec fuses the final
activation), averaged over the batch.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version

from ..base import Adapter, Availability
from ..jax_adapter import JaxAdapter
from .model import KerasModel
from .on_jax import KerasJaxModel
from .on_torch import KerasTorchModel

__all__ = ["KerasJaxAdapter", "KerasTorchAdapter", "KerasModel", "KerasJaxModel", "KerasTorchModel"]


class _KerasAdapter(Adapter):
    package = "keras"
    backend_package = ""
    float64_limitation = ("Keras 3 maps every 64-bit result type to 32 bits on its JAX and torch backends "
                          "(keras.backend.result_type), so parts of a float64 model run in float32 "
                          "(docs/equivalence.md): its float64 check cannot pass")

    def availability(self) -> Availability:
        """Keras 3 and the backend's package, from package metadata only (neither is imported)."""
        missing = [p for p in ("keras", self.backend_package) if importlib.util.find_spec(p) is None]
        if missing:
            return Availability(False, None, f"not installed: {', '.join(missing)}; {self.install_hint}")
        try:
            keras_version = version("keras")
        except PackageNotFoundError:
            return Availability(True, None)
        if int(keras_version.split(".")[0]) < 3:
            return Availability(False, keras_version, f"needs Keras 3, found keras {keras_version}: "
                                                      "pip install 'keras>=3'")
        return Availability(True, keras_version)

    def devices(self) -> list[str]:
        return ["cpu"] if self.availability().available else []


class KerasJaxAdapter(_KerasAdapter):
    name = "keras-jax"
    modes = ("eager", "jit")
    idiomatic_mode = "jit"  # model.fit's jit_compile="auto": XLA on JAX when every layer supports it
    backend_package = "jax"
    environment = {"KERAS_BACKEND": "jax", "JAX_ENABLE_X64": "1"}
    install_hint = "pip install -e '.[jax]' (Keras comes with TensorFlow, or pip install keras)"
    model_class = KerasJaxModel
    configure_threads = JaxAdapter.configure_threads  # XLA's threads, as for plain JAX


class KerasTorchAdapter(_KerasAdapter):
    name = "keras-torch"
    modes = ("eager",)
    idiomatic_mode = "eager"  # model.fit on torch runs eagerly unless jit_compile=True asks for torch.compile
    backend_package = "torch"
    environment = {"KERAS_BACKEND": "torch"}
    install_hint = "pip install -e '.[torch]' and keras"
    model_class = KerasTorchModel

    def configure_threads(self, threads: int) -> dict:
        import torch

        torch.set_num_threads(threads)
        return {"threads": torch.get_num_threads(), "torch.get_num_threads": torch.get_num_threads()}
