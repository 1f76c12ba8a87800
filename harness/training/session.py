"""A training contender inside its worker process: build the model, run steps, evaluate.

The parent (training/runner.py) sends, through worker_main's protocol:

    {"op": "train_open", "contender", "config", "data"}  -> {"ok", "how", "knobs", "version"}
    {"op": "train_steps", "epoch", "start", "stop"}      -> {"ok", "losses", "seconds"}
    {"op": "train_eval", "epoch", "weights"}             -> {"ok", "train_loss", "train_accuracy", "test_loss",
                                                             "test_accuracy", "seconds", "peak_memory_bytes", ...}

Data: the parent has preprocessed the dataset once, in float64, into .npy files (`data`), which
each worker maps read-only. A step's batch is gathered and cast to the contender's dtype before the
clock starts; what is timed is the adapter's `train_step(x, y)` alone: the NumPy batch handed over
(the framework's conversion to its own tensors, and its copy onto the device, are inside), the
forward, the backward, the update, and the loss handed back as a Python float (which waits for the
device). Evaluation is untimed and outside the epoch's time.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["TrainSession", "HOW", "evaluate_loss", "accuracy"]

HOW = ("train_step(x, y) of the adapter contract per step, with the batch gathered and cast to the dtype "
       "untimed: the timed part is the framework's own conversion of the NumPy batch, forward, backward, "
       "update, and the loss returned as a Python float")


def evaluate_loss(spec, out: np.ndarray, y: np.ndarray) -> float:
    """The spec's mean loss on a model's outputs (probabilities after a final softmax or sigmoid,
    else the raw outputs), in float64."""
    out = np.asarray(out, dtype=np.float64)
    if spec.loss == "sparse_categorical_crossentropy":
        if spec.final_activation == "softmax":
            logp = np.log(np.clip(out, 1e-300, None))
        else:
            z = out - out.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-np.mean(logp[np.arange(len(y)), y]))
    if spec.loss == "binary_crossentropy":
        p = np.clip(out, 1e-15, 1 - 1e-15)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(np.mean((out - y) ** 2))


def accuracy(out: np.ndarray, labels: np.ndarray) -> float:
    """The share of samples whose predicted class is the label: the largest output, or for one
    output (a probability) whether it is above 0.5."""
    out = np.asarray(out)
    predicted = out.argmax(axis=1) if out.shape[1] > 1 else (out[:, 0] > 0.5).astype(np.int64)
    return float(np.mean(predicted == labels))


class TrainSession:
    def __init__(self, adapter) -> None:
        self.adapter = adapter
        self.model = None

    def open(self, msg: dict) -> dict:
        import reference_impl as ri

        from .config import Contender, TrainConfig

        self.config = TrainConfig.from_dict(msg["config"])
        self.contender = Contender.from_dict(msg["contender"])
        self.spec = ri.models.get(self.config.model)
        folder = Path(msg["data"])
        self.data = {k: np.load(folder / f"{k}.npy", mmap_mode="r")
                     for k in ("x_train", "t_train", "y_train", "x_test", "t_test", "y_test")}
        weights = ri.init_weights(self.spec, self.config.seed, np.float64)
        c = self.contender
        self.model = self.adapter.build(self.spec, weights, device=c.device, dtype=c.dtype, mode=c.mode)
        reported = {"dtype": self.model.dtype, "mode": self.model.mode}
        wrong = [f"asked for {k} {getattr(c, k)!r}, the model reports {v!r}" for k, v in reported.items()
                 if v != getattr(c, k)]
        if wrong:
            return {"ok": False, "kind": "error", "error": "; ".join(wrong)}
        self.model.set_optimizer(self.config.optimizer)
        self._epoch, self._batches = None, None
        return {"ok": True, "how": HOW, "knobs": self.model.knobs(),
                "version": self.adapter.availability().version}

    def _batch(self, idx: np.ndarray):
        x = np.asarray(self.data["x_train"][idx], dtype=self.contender.dtype)
        t = self.data["t_train"][idx]
        t = np.asarray(t, dtype=self.contender.dtype) if t.dtype.kind == "f" else np.asarray(t)
        return x, t

    def steps(self, msg: dict) -> dict:
        from .config import batch_indices

        epoch, start, stop = int(msg["epoch"]), int(msg["start"]), int(msg["stop"])
        if self._epoch != epoch:
            self._batches = batch_indices(len(self.data["x_train"]), self.config.batch_size, self.config.seed, epoch)
            self._epoch = epoch
        losses, seconds = [], []
        for idx in self._batches[start:stop]:
            x, t = self._batch(idx)
            t0 = time.perf_counter()
            loss = self.model.train_step(x, t)
            seconds.append(time.perf_counter() - t0)
            losses.append(float(loss))
        return {"ok": True, "losses": losses, "seconds": seconds}

    def evaluate(self, msg: dict) -> dict:
        from ..metadata import peak_rss_bytes

        t0 = time.perf_counter()
        out: dict = {"ok": True}
        for part in ("train", "test"):
            x, t, y = self.data[f"x_{part}"], self.data[f"t_{part}"], self.data[f"y_{part}"]
            n, b = len(x), self.config.eval_batch
            outputs = np.concatenate([np.asarray(self.model.forward(np.asarray(x[i:i + b], dtype=self.contender.dtype)),
                                                 dtype=np.float64) for i in range(0, n, b)])
            out[f"{part}_loss"] = evaluate_loss(self.spec, outputs, np.asarray(t))
            out[f"{part}_accuracy"] = accuracy(outputs, np.asarray(y))
        out["seconds"] = time.perf_counter() - t0
        if msg.get("weights"):
            path = Path(msg["weights"])
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp.npz")
            weights = {k: np.asarray(v, dtype=np.float64) for k, v in self.model.get_weights().items()}
            np.savez_compressed(tmp, **weights)
            tmp.replace(path)
        peak, kind = peak_rss_bytes(), "rss"
        device_memory = getattr(self.model, "device_memory", None)
        found = device_memory() if device_memory is not None else None
        if found is not None:
            peak, kind = found
        out.update(peak_memory_bytes=peak, memory_kind=kind)
        return out
