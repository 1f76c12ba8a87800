"""reference_impl.losses: values worked out by hand, the logits forms against the probability forms,
dtypes and argument errors. Their gradients are checked by finite differences in test_gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reference_impl import functional as F
from reference_impl import losses


def test_mse_by_hand():
    pred, target = np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]])
    assert losses.mse(pred, target) == pytest.approx((1 + 4) / 2, rel=1e-15)
    np.testing.assert_allclose(losses.mse_backward(pred, target), [[2 * 1 / 2, 2 * 2 / 2]], rtol=1e-15)


def test_sparse_categorical_crossentropy_by_hand():
    probs, labels = np.array([[0.25, 0.75], [0.5, 0.5]]), np.array([1, 0])
    assert losses.sparse_categorical_crossentropy(probs, labels) == pytest.approx(
        -(math.log(0.75) + math.log(0.5)) / 2, rel=1e-15)
    # d/dp of -log p[label] / N
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy_backward(probs, labels),
                               [[0, -1 / (2 * 0.75)], [-1 / (2 * 0.5), 0]], rtol=1e-15)


def test_sparse_softmax_cross_entropy_by_hand():
    logits, labels = np.array([[0.0, math.log(3.0)]]), np.array([1])  # softmax = [0.25, 0.75]
    assert losses.sparse_softmax_cross_entropy(logits, labels) == pytest.approx(-math.log(0.75), rel=1e-14)
    np.testing.assert_allclose(losses.sparse_softmax_cross_entropy_backward(logits, labels),
                               [[0.25, 0.75 - 1]], rtol=1e-14)


def test_binary_crossentropy_by_hand():
    probs, targets = np.array([[0.8], [0.25]]), np.array([[1.0], [0.0]])
    assert losses.binary_crossentropy(probs, targets) == pytest.approx(
        -(math.log(0.8) + math.log(0.75)) / 2, rel=1e-15)


def test_sigmoid_binary_crossentropy_by_hand_and_without_overflow():
    logits, targets = np.array([[0.0], [1000.0], [-1000.0]]), np.array([[1.0], [0.0], [0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = losses.sigmoid_binary_crossentropy(logits, targets)
    assert value == pytest.approx((math.log(2) + 1000 + 0) / 3, rel=1e-14)


def test_logit_forms_equal_probability_forms():
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    assert losses.sparse_softmax_cross_entropy(logits, labels) == pytest.approx(
        losses.sparse_categorical_crossentropy(F.softmax(logits), labels), rel=1e-13)
    z, t = rng.standard_normal((6, 1)), rng.uniform(0, 1, (6, 1))
    assert losses.sigmoid_binary_crossentropy(z, t) == pytest.approx(
        losses.binary_crossentropy(F.sigmoid(z), t), rel=1e-13)


def _calls(dtype):
    rng = np.random.default_rng(0)
    scores, labels = rng.uniform(0.1, 0.9, (4, 3)).astype(dtype), np.array([0, 2, 1, 2])
    pred, target = rng.uniform(0.1, 0.9, (4, 2)).astype(dtype), rng.uniform(0, 1, (4, 2)).astype(dtype)
    return {
        "mse": (losses.mse, losses.mse_backward, pred, target),
        "sparse_softmax_cross_entropy": (losses.sparse_softmax_cross_entropy,
                                         losses.sparse_softmax_cross_entropy_backward, scores, labels),
        "sparse_categorical_crossentropy": (losses.sparse_categorical_crossentropy,
                                            losses.sparse_categorical_crossentropy_backward, scores, labels),
        "binary_crossentropy": (losses.binary_crossentropy, losses.binary_crossentropy_backward, pred, target),
        "sigmoid_binary_crossentropy": (losses.sigmoid_binary_crossentropy,
                                        losses.sigmoid_binary_crossentropy_backward, pred, target),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(_calls(np.float64)))
def test_loss_and_gradient_dtype_follow_the_prediction(name, dtype):
    loss, backward, pred, target = _calls(dtype)[name]
    assert np.asarray(loss(pred, target)).dtype == dtype
    assert backward(pred, target).dtype == dtype


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        pytest.param(lambda: losses.mse(np.ones((2, 3)), np.ones((3, 2))), ValueError, r"\(2, 3\).*\(3, 2\)",
                     id="mse-shapes"),
        pytest.param(lambda: losses.binary_crossentropy(np.full((2, 1), 0.5), np.ones(2)), ValueError,
                     r"differ in shape", id="bce-shapes"),
        pytest.param(lambda: losses.sparse_softmax_cross_entropy(np.ones((2, 3)), np.array([0, 3])), ValueError,
                     r"\[0, 3\)", id="label-out-of-range"),
        pytest.param(lambda: losses.sparse_softmax_cross_entropy(np.ones((2, 3)), np.array([0, -1])), ValueError,
                     r"\[0, 3\)", id="negative-label"),
        pytest.param(lambda: losses.sparse_categorical_crossentropy(np.ones((2, 3)), np.array([0.0, 1.0])),
                     TypeError, r"integers", id="float-labels"),
        pytest.param(lambda: losses.sparse_softmax_cross_entropy(np.ones((2, 3)), np.array([0, 1, 2])),
                     ValueError, r"labels \(N,\)", id="label-count"),
    ],
)
def test_bad_arguments_raise_saying_why(call, error, message):
    with pytest.raises(error, match=message):
        call()
