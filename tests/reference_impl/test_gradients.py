"""Analytic gradients against central finite differences in float64: every functional op with
respect to every input, every loss, the 2-D layer classes, and every catalogue model (each parameter
tensor and the input).

Ops are made scalar by a fixed random projection, L = sum(out * R), whose gradient with respect to
the output is R itself: so the op's backward, fed dy = R, must return dL/d(each input).
"""

from __future__ import annotations

import numpy as np
import pytest

import reference_impl as ri
from reference_impl import functional as F
from reference_impl import layers, losses
from tests import composed
from tests.gradcheck import TOL, assert_gradients, numerical_gradient, rel_error, single_threaded_pool


def projection(out: np.ndarray, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(np.shape(out))


def distinct(shape, seed: int = 0, spacing: float = 0.01) -> np.ndarray:
    """A random permutation of evenly spaced values: no two within `spacing`, so no eps-sized step
    changes which input of a pooling window is the maximum."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n) - n / 2).reshape(shape) * spacing


def away_from_zero(shape, seed: int = 0) -> np.ndarray:
    """Normal values with |x| >= 0.1: no step crosses relu's kink."""
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.where(x >= 0, x + 0.1, x - 0.1)


# ------------------------------------------------------------------------------------------------
# functional ops


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "stride", "padding"),
    [
        pytest.param((2, 2, 5, 5), (3, 2, 3, 3), 1, 0, id="k3-s1-p0"),
        pytest.param((2, 3, 7, 6), (2, 3, 3, 3), 2, (1, 2), id="k3-s2-p(1,2)"),
        pytest.param((3, 2, 7, 7), (3, 2, 2, 2), 2, "same", id="k2-s2-same"),
        pytest.param((1, 2, 6, 7), (2, 2, 3, 2), (2, 1), "same", id="k(3,2)-s(2,1)-same"),
        pytest.param((2, 1, 6, 6), (2, 1, 4, 4), 1, "same", id="k4-s1-same"),
    ],
)
def test_conv2d_gradients(x_shape, w_shape, stride, padding):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    r = projection(F.conv2d(x, w, b, stride, padding))
    dx, dw, db = F.conv2d_backward(r, x, w, b, stride, padding)
    assert_gradients(lambda: float(np.sum(F.conv2d(x, w, b, stride, padding) * r)),
                     {"x": x, "w": w, "b": b}, {"x": dx, "w": dw, "b": db})


@pytest.mark.parametrize(
    ("x_shape", "kernel", "stride", "padding"),
    [
        pytest.param((2, 2, 6, 6), 2, 2, 0, id="k2-s2"),
        pytest.param((2, 2, 7, 7), 3, 2, 0, id="k3-s2-overlap"),
        pytest.param((2, 2, 7, 8), 3, 2, 1, id="k3-s2-p1-overlap"),
        pytest.param((1, 3, 5, 5), 3, 1, 1, id="k3-s1-p1-overlap"),
        pytest.param((2, 2, 7, 7), 3, 2, "same", id="k3-s2-same"),
        pytest.param((2, 2, 7, 6), (2, 3), (1, 2), (1, 1), id="k(2,3)-s(1,2)-p1"),
    ],
)
def test_max_pool2d_gradients(x_shape, kernel, stride, padding):
    x = distinct(x_shape)
    r = projection(F.max_pool2d(x, kernel, stride, padding))
    dx = F.max_pool2d_backward(r, x, kernel, stride, padding)
    assert_gradients(lambda: float(np.sum(F.max_pool2d(x, kernel, stride, padding) * r)), {"x": x}, {"x": dx})


def test_linear_gradients():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    r = projection(F.linear(x, w, b))
    dx, dw, db = F.linear_backward(r, x, w, b)
    assert_gradients(lambda: float(np.sum(F.linear(x, w, b) * r)), {"x": x, "w": w, "b": b},
                     {"x": dx, "w": dw, "b": db})


ACTIVATIONS = {
    "relu": (F.relu, F.relu_backward),
    "sigmoid": (F.sigmoid, F.sigmoid_backward),
    "tanh": (F.tanh, F.tanh_backward),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_gradients(name):
    forward, backward = ACTIVATIONS[name]
    x = away_from_zero((4, 6))
    r = projection(x)
    dx = backward(r, forward(x))  # activation backwards take the forward's output
    assert_gradients(lambda: float(np.sum(forward(x) * r)), {"x": x}, {"x": dx})


@pytest.mark.parametrize(
    ("shape", "axis"), [((4, 6), -1), ((4, 6), 0), ((3, 4, 5), 1)], ids=["2d-last", "2d-axis0", "3d-axis1"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_gradients(name, shape, axis):
    forward = getattr(F, name)
    backward = getattr(F, f"{name}_backward")
    x = np.random.default_rng(0).standard_normal(shape) * 2
    r = projection(x)
    dx = backward(r, forward(x, axis=axis), axis=axis)
    assert_gradients(lambda: float(np.sum(forward(x, axis=axis) * r)), {"x": x}, {"x": dx})


# ------------------------------------------------------------------------------------------------
# losses: d(mean loss)/d(prediction)


def _loss_cases():
    rng = np.random.default_rng(0)
    labels = np.array([0, 3, 1, 3, 2])
    probs = rng.uniform(0.05, 0.95, (5, 4))
    probs /= probs.sum(axis=1, keepdims=True)
    return {
        "mse": (losses.mse, losses.mse_backward, rng.standard_normal((5, 3)), rng.standard_normal((5, 3))),
        "sparse_softmax_cross_entropy": (losses.sparse_softmax_cross_entropy,
                                         losses.sparse_softmax_cross_entropy_backward,
                                         rng.standard_normal((5, 4)) * 2, labels),
        "sparse_categorical_crossentropy": (losses.sparse_categorical_crossentropy,
                                            losses.sparse_categorical_crossentropy_backward, probs, labels),
        "binary_crossentropy": (losses.binary_crossentropy, losses.binary_crossentropy_backward,
                                rng.uniform(0.05, 0.95, (5, 2)), rng.uniform(0, 1, (5, 2))),
        "binary_crossentropy-hard-targets": (losses.binary_crossentropy, losses.binary_crossentropy_backward,
                                             rng.uniform(0.05, 0.95, (6, 1)),
                                             np.array([[0.0], [1.0], [1.0], [0.0], [1.0], [0.0]])),
        "sigmoid_binary_crossentropy": (losses.sigmoid_binary_crossentropy,
                                        losses.sigmoid_binary_crossentropy_backward,
                                        rng.standard_normal((5, 2)) * 3, rng.uniform(0, 1, (5, 2))),
    }


LOSS_CASES = _loss_cases()


@pytest.mark.parametrize("name", list(LOSS_CASES))
def test_loss_gradients(name):
    loss, backward, pred, target = LOSS_CASES[name]
    pred = pred.copy()
    grad = backward(pred, target)
    assert_gradients(lambda: float(loss(pred, target)), {"pred": pred}, {"pred": grad})


# ------------------------------------------------------------------------------------------------
# layer classes (the 2-D ones: conv and pooling layers keep an internal image layout, and are
# covered through the models below)


def _layer_cases():
    rng = np.random.default_rng(0)
    return {
        "Dense": lambda: layers.Dense("fc", rng.standard_normal((5, 3)), rng.standard_normal(3)),
        "Dense-no-bias": lambda: layers.Dense("fc", rng.standard_normal((5, 3)), None),
        "ReLU": lambda: layers.ReLU("act"),
        "Sigmoid": lambda: layers.Sigmoid("act"),
        "Tanh": lambda: layers.Tanh("act"),
        "Softmax": lambda: layers.Softmax("act"),
    }


LAYER_CASES = _layer_cases()


@pytest.mark.parametrize("name", list(LAYER_CASES))
def test_layer_gradients(name):
    layer = LAYER_CASES[name]()
    x = away_from_zero((4, 5))
    out = layer.forward(x)
    r = projection(out)
    dx = np.array(layer.backward(r.copy()))
    grads = {k: np.array(v) for k, v in layer.grads.items()}
    assert set(grads) == set(layer.params)
    assert_gradients(lambda: float(np.sum(layer.forward(x) * r)), {"input": x, **layer.params},
                     {"input": dx, **grads})


# ------------------------------------------------------------------------------------------------
# models: every parameter tensor and the input, through model.loss_and_grads(x, y, input_grad=True)

# A loss evaluation of these costs ~0.2-1 ms, and they hold tensors of 10k-48k elements: their
# tensors above FULL_LIMIT are checked on samples here, and element by element in the slow test.
SAMPLED_MODELS = ("mnist_cnn", "lenet5")
FULL_LIMIT = 5000

# Seeds whose weights and data keep every ReLU input and every gap between a pooling window's two
# largest values at least MIN_MARGIN away from zero (seed 0 puts a conv1 input of mnist_cnn at 6e-9:
# every finite-difference step then straddles the kink). Steps of eps move those values by less.
SEEDS = {"mnist_cnn": 4, "lenet5": 7}
MIN_MARGIN = 1e-5


def model_and_batch(name: str, batch: int):
    spec = ri.models.get(name)
    seed = SEEDS.get(name, 0)
    weights = ri.init_weights(spec, seed, np.float64)
    x, y = ri.random_batch(spec, batch, seed + 1, np.float64)
    margin = composed.kink_margin(spec, weights, x)
    assert margin >= MIN_MARGIN, f"{name}: a kink lies {margin:.2g} away; pick another seed"
    return ri.build(spec, weights), np.ascontiguousarray(x), y


def analytic_model_grads(model, x, y):
    loss, grads = model.loss_and_grads(x, y, input_grad=True)
    assert np.isclose(loss, model.loss(x, y), rtol=1e-14)
    return {k: np.array(v, copy=True) for k, v in grads.items()}


@pytest.mark.parametrize("name", ri.models.names())
def test_model_gradients(name):
    model, x, y = model_and_batch(name, batch=2 if name in SAMPLED_MODELS else 3)
    grads = analytic_model_grads(model, x, y)
    wrt = {**model.parameters(), "input": x}  # live arrays: perturbing them changes the model
    assert set(grads) == set(wrt)
    assert_gradients(lambda: float(model.loss(x, y)), wrt, grads,
                     full_limit=FULL_LIMIT if name in SAMPLED_MODELS else None)


def _large_tensors():
    for name in SAMPLED_MODELS:
        for key, shape in ri.models.get(name).param_shapes().items():
            if np.prod(shape) > FULL_LIMIT:
                yield pytest.param(name, key, id=f"{name}-{key}")


def _numerical_chunk(name: str, key: str, batch: int, coords: np.ndarray) -> np.ndarray:
    """Finite differences of one model tensor at some coordinates, in a worker process."""
    model, x, y = model_and_batch(name, batch)
    return numerical_gradient(lambda: float(model.loss(x, y)), model.parameters()[key], coords)


@pytest.fixture(scope="module")
def worker_pool():
    with single_threaded_pool() as pool:
        yield pool


@pytest.mark.slow
@pytest.mark.parametrize(("name", "key"), list(_large_tensors()))
def test_model_gradients_every_element(name, key, worker_pool):
    """The per-element check of the tensors test_model_gradients samples (batch 1 to save time),
    split over worker processes: the same model and batch are rebuilt from their seeds in each."""
    model, x, y = model_and_batch(name, batch=1)
    grads = analytic_model_grads(model, x, y)
    chunks = np.array_split(np.arange(grads[key].size), 16)
    parts = worker_pool.starmap(_numerical_chunk, [(name, key, 1, chunk) for chunk in chunks])
    error = rel_error(grads[key], np.concatenate(parts))
    assert error <= TOL, f"{name} {key}: normwise relative error {error:.3g}"
