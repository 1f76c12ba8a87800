"""Losses, each a mean over the batch, with their gradients with respect to the prediction."""

from __future__ import annotations

import numpy as np

from .functional import log_softmax, sigmoid, softmax

__all__ = [
    "mse",
    "mse_backward",
    "sparse_categorical_crossentropy",
    "sparse_categorical_crossentropy_backward",
    "sparse_softmax_cross_entropy",
    "sparse_softmax_cross_entropy_backward",
    "binary_crossentropy",
    "binary_crossentropy_backward",
    "sigmoid_binary_crossentropy",
    "sigmoid_binary_crossentropy_backward",
]


def _check_pair(name: str, pred: np.ndarray, target: np.ndarray) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"{name}: prediction {pred.shape} and target {target.shape} differ in shape")


def _check_labels(name: str, scores: np.ndarray, labels: np.ndarray) -> None:
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"{name}: expected scores (N, classes) and labels (N,), got {scores.shape} and {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name}: labels must be integers, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"{name}: labels must lie in [0, {scores.shape[1]}), got {labels.min()}..{labels.max()}")


def mse(pred: np.ndarray, target: np.ndarray):
    """Mean of (pred - target)^2 over every element (Keras's and PyTorch's 'mean')."""
    _check_pair("mse", pred, target)
    diff = pred - target
    return pred.dtype.type(np.mean(diff * diff))


def mse_backward(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    return (pred - target) * pred.dtype.type(2.0 / pred.size)


def sparse_softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray):
    """Mean over the batch of -log softmax(logits)[label]."""
    _check_labels("sparse_softmax_cross_entropy", logits, labels)
    logp = log_softmax(logits, axis=1)
    return logits.dtype.type(-np.mean(logp[np.arange(len(labels)), labels]))


def sparse_softmax_cross_entropy_backward(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(softmax(logits) - onehot(labels)) / N."""
    grad = softmax(logits, axis=1)
    grad[np.arange(len(labels)), labels] -= 1
    grad *= logits.dtype.type(1.0 / len(labels))
    return grad


def sparse_categorical_crossentropy(probs: np.ndarray, labels: np.ndarray):
    """Mean over the batch of -log probs[label], for outputs that are already probabilities."""
    _check_labels("sparse_categorical_crossentropy", probs, labels)
    return probs.dtype.type(-np.mean(np.log(probs[np.arange(len(labels)), labels])))


def sparse_categorical_crossentropy_backward(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    grad = np.zeros_like(probs)
    rows = np.arange(len(labels))
    grad[rows, labels] = -1.0 / (len(labels) * probs[rows, labels])
    return grad


def binary_crossentropy(probs: np.ndarray, targets: np.ndarray):
    """Mean of -(t log p + (1 - t) log(1 - p)) over every element."""
    _check_pair("binary_crossentropy", probs, targets)
    return probs.dtype.type(-np.mean(targets * np.log(probs) + (1 - targets) * np.log1p(-probs)))


def binary_crossentropy_backward(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return (probs - targets) / (probs * (1 - probs)) * probs.dtype.type(1.0 / probs.size)


def sigmoid_binary_crossentropy(logits: np.ndarray, targets: np.ndarray):
    """binary_crossentropy(sigmoid(logits), targets), computed without overflow or log(0)."""
    _check_pair("sigmoid_binary_crossentropy", logits, targets)
    per = np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))
    return logits.dtype.type(np.mean(per))


def sigmoid_binary_crossentropy_backward(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return (sigmoid(logits) - targets) * logits.dtype.type(1.0 / logits.size)
