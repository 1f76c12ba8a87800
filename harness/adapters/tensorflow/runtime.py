"""TensorFlow at run time: its lazy import, its device names, and the settings that change its speed."""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError, version

from harness.metadata import TF_DISTRIBUTIONS

from ..base import parse_device

__all__ = ["import_tf", "import_keras", "tf_device", "knobs"]


def import_tf():
    """TensorFlow, imported with TF_CPP_MIN_LOG_LEVEL=2 and KERAS_BACKEND=tensorflow unless set."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    return tf


def import_keras():
    """Keras, on the TensorFlow backend unless KERAS_BACKEND says otherwise (import_tf first)."""
    import_tf()
    import keras

    return keras


def tf_device(device: str) -> str:
    """'cpu' -> '/CPU:0'; 'cuda' and 'cuda:N' -> '/GPU:0' and '/GPU:N'."""
    kind, index = parse_device(device)
    return "/CPU:0" if kind == "cpu" else f"/GPU:{index or 0}"


# Environment variables that change what TF runs on the CPU (or how it logs); reported by knobs().
_ENV_KNOBS = ("TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
              "TF_XLA_FLAGS", "XLA_FLAGS", "KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")


def _dist_version(*dists: str) -> str | None:
    for dist in dists:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def knobs() -> dict:
    """The settings that change TensorFlow's speed or numerics here, for the timing code's record.

    From the environment and package metadata: never imports TensorFlow. TF_ENABLE_ONEDNN_OPTS None
    means TF's default (oneDNN on for x86 Linux builds). When TF is already imported, its thread pool
    sizes (0 = TF's choice) are added.
    """
    found = {name: os.environ.get(name) for name in _ENV_KNOBS}
    found["tensorflow"] = _dist_version(*TF_DISTRIBUTIONS)
    found["keras"] = _dist_version("keras")
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        try:
            found["intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
            found["inter_op_threads"] = tf.config.threading.get_inter_op_parallelism_threads()
        except Exception:  # a half-imported or unusual build: the environment is still worth reporting
            pass
    return found
