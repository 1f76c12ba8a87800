"""The `tensorflow` adapter: the spec as Keras 3 layers on the TensorFlow backend, NHWC, run eagerly,
in a tf.function ('function') or in a tf.function(jit_compile=True) ('xla').

The package: layout.py converts between Keras's layouts and the canonical ones (NumPy only);
model.py builds the Keras layers (Keras only) and runs them in TensorFlowModel, with the reference's
update rules of harness/adapters/update_rules.py (tensors of any backend); phases.py the timing
phases; runtime.py the lazy import, devices and knobs. Keras on another backend can reuse layout,
the layers and the update rules.

TensorFlow and Keras are imported lazily, inside functions. TF_CPP_MIN_LOG_LEVEL defaults to 2
and KERAS_BACKEND to 'tensorflow' before the first import (both only when not already set).
TF_ENABLE_ONEDNN_OPTS is left as the user set it; `knobs()` reports it for the timing code.
"""

from __future__ import annotations

import os
from functools import cache

from harness.metadata import TF_DISTRIBUTIONS

from ..base import Adapter, parse_device
from .layout import from_canonical, to_canonical
from .model import TensorFlowModel
from .runtime import import_keras, import_tf, knobs, tf_device

__all__ = ["TensorFlowAdapter", "TensorFlowModel", "to_canonical", "from_canonical", "knobs"]

@cache
def _import_problem() -> str | None:
    """Why TensorFlow or Keras cannot be used although installed, or None."""
    try:
        import_tf()
        keras = import_keras()
    except Exception as e:  # ImportError, but also a broken native library
        return f"tensorflow is installed but cannot be imported: {type(e).__name__}: {e}"
    if int(keras.__version__.split(".")[0]) < 3:
        return f"the tensorflow adapter needs Keras 3 (tensorflow>=2.16), found keras {keras.__version__}"
    backend = keras.backend.backend()
    if backend != "tensorflow":
        return (f"Keras runs on its {backend!r} backend (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r} or "
                "~/.keras/keras.json); the tensorflow adapter needs KERAS_BACKEND=tensorflow, set before "
                "keras is first imported")
    return None


@cache
def _xla_problem(device: str, dtype: str) -> str | None:
    """Why XLA cannot compile on this device in this dtype, from a tiny compiled function; or None."""
    tf = import_tf()
    try:
        with tf.device(tf_device(device)):
            probe = tf.function(lambda a: tf.reduce_sum(tf.nn.relu(a) * a), jit_compile=True)
            probe(tf.ones((2, 2), dtype=dtype)).numpy()
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return (f"XLA (tf.function(jit_compile=True)) cannot compile on {device} in {dtype} here: "
                f"{type(e).__name__}: {first}")
    return None


class TensorFlowAdapter(Adapter):
    name = "tensorflow"
    modes = ("eager", "function", "xla")
    # model.fit's jit_compile="auto" on TensorFlow: a tf.function, XLA only where a GPU is present
    idiomatic_mode = "function"
    package = "tensorflow"
    distributions = TF_DISTRIBUTIONS
    install_hint = "pip install -e '.[tensorflow]' (or '.[tensorflow-cpu]')"
    model_class = TensorFlowModel

    def devices(self) -> list[str]:
        if not self.availability().available or _import_problem():
            return []
        gpus = import_tf().config.list_physical_devices("GPU")
        return ["cpu"] + [f"cuda:{i}" for i in range(len(gpus))]

    def configure_threads(self, threads: int) -> dict:
        """intra-op = threads, inter-op = 1 (these models are chains of ops: nothing runs beside
        them). TF accepts this only before its runtime starts, as in a fresh worker."""
        tf = import_tf()
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError as e:  # the runtime already started: report what it has
            return {"error": str(e), "threads": tf.config.threading.get_intra_op_parallelism_threads() or None,
                    "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                    "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
        intra = tf.config.threading.get_intra_op_parallelism_threads()
        return {"threads": intra, "intra_op": intra,
                "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}

    def unavailable_reason(self, device, dtype, mode):
        # Availability, mode and dtype first: those need no import of TensorFlow.
        reason = super().unavailable_reason("cpu", dtype, mode)
        if reason:
            return reason
        parse_device(device)  # ValueError for a malformed device, as in the base
        reason = _import_problem() or super().unavailable_reason(device, dtype, mode)
        if reason is None and mode == "xla":
            reason = _xla_problem("cuda:0" if device == "cuda" else device, dtype)
        return reason
