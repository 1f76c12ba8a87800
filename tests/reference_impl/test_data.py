"""reference_impl.data: batches that fit the spec, and batches drawn away from the model's kinks."""

import numpy as np
import pytest

import reference_impl as ri
from reference_impl.data import kink_margins, well_conditioned_batch


def test_a_relu_input_at_zero_has_zero_margin():
    spec = ri.models.get("mlp")
    weights = ri.init_weights(spec, 0, np.float64)
    x, _ = ri.random_batch(spec, 3, 0, np.float64)
    # Make fc1's first pre-activation of sample 1 exactly zero: x @ w[:, 0] + b[0] == 0.
    weights["fc1.bias"][0] = -(x[1] @ weights["fc1.weight"][:, 0])
    margins = kink_margins(spec, weights, x)
    assert margins[1] < 1e-12
    assert margins[0] > 1e-12 and margins[2] > 1e-12


def test_a_pooling_tie_has_zero_margin():
    spec = ri.models.get("lenet5")
    weights = ri.init_weights(spec, 0, np.float64)
    x, _ = ri.random_batch(spec, 2, 0, np.float64)
    # conv1 copies its input's top-left pixel of each window; equal neighbouring columns then make
    # every pooling window of conv1's output hold two equal largest values.
    weights["conv1.weight"][:] = 0
    weights["conv1.weight"][:, 0, 0, 0] = 1.0
    weights["conv1.bias"][:] = 0
    x[0, 0, :, 1::2] = x[0, 0, :, 0::2]  # neighbours equal: every pooling window of sample 0 ties
    x[0] = np.abs(x[0]) + 1  # positive, so the tie is not between ReLU zeros
    margins = kink_margins(spec, weights, x)
    assert margins[0] == 0
    assert margins[1] > 0


def test_smooth_models_have_no_kink():
    spec = ri.models.get("sigmoid_mlp")
    x, _ = ri.random_batch(spec, 4, 0, np.float64)
    assert np.all(np.isinf(kink_margins(spec, ri.init_weights(spec, 0, np.float64), x)))


@pytest.mark.parametrize("name", ["mnist_cnn", "lenet5", "mlp"])
def test_well_conditioned_batches_keep_their_margin_and_are_deterministic(name):
    spec = ri.models.get(name)
    weights = ri.init_weights(spec, 0, np.float64)
    x, y = well_conditioned_batch(spec, weights, 16, seed=3, margin=1e-6)
    assert x.shape == (16, *spec.input_shape) and len(y) == 16
    assert kink_margins(spec, weights, x).min() >= 1e-6
    x2, y2 = well_conditioned_batch(spec, weights, 16, seed=3, margin=1e-6)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_an_impossible_margin_says_so():
    spec = ri.models.get("mnist_cnn")
    with pytest.raises(ValueError, match="lower the margin"):
        well_conditioned_batch(spec, ri.init_weights(spec, 0, np.float64), 4, margin=0.5, max_draws=2)
