"""reference_impl.optim: the first two steps of each optimizer on a 2-element parameter, against
numbers worked out by hand below (not by any code under test)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reference_impl.optim import SGD, Adam, RMSprop

# The same parameter and two gradients for every optimizer; binary fractions keep the sums exact.
P0 = [1.0, -2.0]
G1 = [0.5, -1.0]
G2 = [0.25, 2.0]


def two_steps(optimizer, dtype=np.float64):
    """Run two steps; return the parameter after each (the array must be updated in place)."""
    p = np.array(P0, dtype=dtype)
    params = {"w": p}
    optimizer.step(params, {"w": np.array(G1, dtype=dtype)})
    after_1 = p.copy()
    optimizer.step(params, {"w": np.array(G2, dtype=dtype)})
    assert params["w"] is p
    return after_1, p


def test_sgd_without_momentum():
    after_1, after_2 = two_steps(SGD(lr=0.1, momentum=0.0))
    # p -= 0.1 * g, twice
    np.testing.assert_allclose(after_1, [1.0 - 0.05, -2.0 + 0.1], rtol=1e-15)
    np.testing.assert_allclose(after_2, [0.95 - 0.025, -1.9 - 0.2], rtol=1e-15)


def test_sgd_momentum_buffer():
    after_1, after_2 = two_steps(SGD(lr=0.1, momentum=0.9))
    # step 1: buf = g1 = [0.5, -1]            -> p = [1 - 0.05, -2 + 0.1]        = [0.95, -1.9]
    np.testing.assert_allclose(after_1, [0.95, -1.9], rtol=1e-15)
    # step 2: buf = 0.9 * [0.5, -1] + [0.25, 2] = [0.7, 1.1] -> p = [0.95 - 0.07, -1.9 - 0.11]
    np.testing.assert_allclose(after_2, [0.88, -2.01], rtol=1e-14)


def test_rmsprop():
    after_1, after_2 = two_steps(RMSprop(lr=0.01, rho=0.9, eps=1e-8))
    # step 1: v = 0.1 * g1^2 = [0.025, 0.1]; g / sqrt(v) = sign(g) * sqrt(10) = +-3.16227766
    v1 = [0.1 * 0.25, 0.1 * 1.0]
    p1 = [1.0 - 0.01 * 0.5 / (math.sqrt(v1[0]) + 1e-8), -2.0 + 0.01 * 1.0 / (math.sqrt(v1[1]) + 1e-8)]
    np.testing.assert_allclose(p1, [0.968377223, -1.968377223], rtol=1e-8)  # the same, as decimals
    np.testing.assert_allclose(after_1, p1, rtol=1e-12)
    # step 2: v = 0.9 * v1 + 0.1 * g2^2 = [0.0225 + 0.00625, 0.09 + 0.4] = [0.02875, 0.49]
    p2 = [p1[0] - 0.01 * 0.25 / (math.sqrt(0.02875) + 1e-8), p1[1] - 0.01 * 2.0 / (0.7 + 1e-8)]
    np.testing.assert_allclose(after_2, p2, rtol=1e-12)


def test_adam_first_step_is_lr_times_sign_of_gradient():
    """With bias correction, m_hat = g and v_hat = g^2 at step 1: the update is lr * g / |g|."""
    after_1, _ = two_steps(Adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-12))
    np.testing.assert_allclose(after_1, [1.0 - 0.001, -2.0 + 0.001], rtol=1e-12)


def test_adam_second_step_bias_correction():
    _, after_2 = two_steps(Adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8))
    # m1 = 0.1 * g1, v1 = 0.001 * g1^2; step 1 moved p by 0.001 * g1 / (|g1| + 1e-8)
    p1 = [1.0 - 0.001 * 0.5 / (0.5 + 1e-8), -2.0 + 0.001 * 1.0 / (1.0 + 1e-8)]
    # m2 = 0.9 * 0.1 * g1 + 0.1 * g2 = [0.045 + 0.025, -0.09 + 0.2] = [0.07, 0.11]; m_hat = m2 / (1 - 0.9^2)
    m_hat = [0.07 / 0.19, 0.11 / 0.19]
    # v2 = 0.999 * 0.001 * g1^2 + 0.001 * g2^2 = [0.00024975 + 0.0000625, 0.000999 + 0.004]
    #    = [0.00031225, 0.004999]; v_hat = v2 / (1 - 0.999^2) = v2 / 0.001999
    v_hat = [0.00031225 / 0.001999, 0.004999 / 0.001999]
    p2 = [p1[i] - 0.001 * m_hat[i] / (math.sqrt(v_hat[i]) + 1e-8) for i in range(2)]
    np.testing.assert_allclose(p2, [0.999 - 0.000932181, -1.999 - 0.000366102], rtol=1e-8)  # decimals
    np.testing.assert_allclose(after_2, p2, rtol=1e-10)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: SGD(lr=0.1, momentum=0.9), id="SGD"),
        pytest.param(lambda: RMSprop(lr=0.01, rho=0.9, eps=1e-8), id="RMSprop"),
        pytest.param(lambda: Adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8), id="Adam"),
    ],
)
def test_float32_parameters_stay_float32(make):
    after_1, after_2 = two_steps(make(), np.float32)
    _, expected = two_steps(make(), np.float64)
    assert after_1.dtype == after_2.dtype == np.float32
    np.testing.assert_allclose(after_2, expected, rtol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: SGD(lr=0.1, momentum=0.0), id="SGD"),
        pytest.param(lambda: RMSprop(lr=0.01, rho=0.9, eps=1e-8), id="RMSprop"),
        pytest.param(lambda: Adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8), id="Adam"),
    ],
)
def test_missing_gradient_raises_and_updates_nothing(make):
    params = {"w": np.array(P0), "b": np.array([3.0])}
    with pytest.raises(KeyError, match="'?b'?"):
        make().step(params, {"w": np.array(G1)})
    np.testing.assert_array_equal(params["w"], P0)


def test_each_parameter_keeps_its_own_state():
    """Momentum buffers are per name: a second parameter must not see the first one's history."""
    opt = SGD(lr=0.1, momentum=0.9)
    a, b = np.array([1.0]), np.array([1.0])
    opt.step({"a": a, "b": b}, {"a": np.array([1.0]), "b": np.array([0.0])})
    opt.step({"a": a, "b": b}, {"a": np.array([0.0]), "b": np.array([1.0])})
    np.testing.assert_allclose(a, [1.0 - 0.1 - 0.1 * 0.9], rtol=1e-15)
    np.testing.assert_allclose(b, [1.0 - 0.0 - 0.1 * 1.0], rtol=1e-15)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: SGD(), id="SGD-no-defaults"),
        pytest.param(lambda: SGD(0.1, 0.9), id="SGD-positional"),
        pytest.param(lambda: RMSprop(lr=0.01, rho=0.9), id="RMSprop-no-eps"),
        pytest.param(lambda: Adam(lr=0.001, beta1=0.9, beta2=0.999), id="Adam-no-eps"),
    ],
)
def test_hyperparameters_are_required_keywords(make):
    with pytest.raises(TypeError):
        make()
