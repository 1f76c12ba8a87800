"""The test oracles themselves: the naive loops against hand-worked examples, the gradient checker
against gradients known in closed form. A wrong oracle would make every test that uses it vacuous."""

from __future__ import annotations

import numpy as np
import pytest

from tests import naive
from tests.gradcheck import TOL, assert_gradients, gradient_errors


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (5, 2, 2, (0, 1)),  # out 3: windows at 0, 2, 4 need 6 pixels
        (4, 3, 2, (0, 1)),
        (7, 4, 1, (1, 2)),  # even kernel: the odd pixel goes after
        (28, 3, 1, (1, 1)),
        (10, 3, 3, (1, 1)),
        (6, 1, 2, (0, 0)),
        (2, 5, 1, (2, 2)),
    ],
    ids=lambda v: str(v),
)
def test_same_pads_by_hand(size, kernel, stride, expected):
    assert naive.same_pads(size, kernel, stride) == expected


X3 = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
W2 = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])


def test_naive_conv2d_by_hand():
    # 1*1 + 2*2 + 4*3 + 5*4 = 37, then each step right adds 1*(1+2+3+4) = 10, each step down 30.
    np.testing.assert_array_equal(naive.conv2d(X3, W2, np.array([0.5])),
                                  [[[[37.5, 47.5], [67.5, 77.5]]]])


def test_naive_conv2d_padded_strided_by_hand():
    # padded to 5x5, windows at rows/cols 0 and 2 of the padded image
    expected = [[[[1 * 4, 2 * 3 + 3 * 4], [4 * 2 + 7 * 4, 5 * 1 + 6 * 2 + 8 * 3 + 9 * 4]]]]
    np.testing.assert_array_equal(naive.conv2d(X3, W2, stride=2, padding=1), expected)


def test_naive_conv2d_backward_by_hand():
    dx, dw, db = naive.conv2d_backward(np.ones((1, 1, 2, 2)), X3, W2, np.zeros(1))
    # dx: how many windows see each pixel, weighted by the kernel tap that sees it
    np.testing.assert_array_equal(dx, [[[[1, 3, 2], [4, 10, 6], [3, 7, 4]]]])
    # dw[i, j]: the sum of the 2x2 block of x starting at (i, j)
    np.testing.assert_array_equal(dw, [[[[12, 16], [24, 28]]]])
    np.testing.assert_array_equal(db, [4])


def test_naive_max_pool_by_hand():
    x = np.array([[[[1.0, 3.0, 2.0], [3.0, 0.0, 1.0], [2.0, 2.0, 2.0]]]])
    np.testing.assert_array_equal(naive.max_pool2d(x, 2, 1), [[[[3, 3], [3, 2]]]])
    # ties go to the first maximum in row-major order: (0, 1) twice, (1, 0), then (2, 1)
    dx = naive.max_pool2d_backward(np.ones((1, 1, 2, 2)), x, 2, 1)
    np.testing.assert_array_equal(dx, [[[[0, 2, 0], [1, 0, 0], [0, 1, 0]]]])


def test_naive_max_pool_padding_is_minus_infinity():
    x = -np.arange(1.0, 5.0).reshape(1, 1, 2, 2)  # all negative: a zero pad would win
    np.testing.assert_array_equal(naive.max_pool2d(x, 2, 2, padding=1), [[[[-1, -2], [-3, -4]]]])


@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (2, (1, 2)), (2, "same")], ids=str)
def test_naive_conv2d_backward_matches_finite_differences(stride, padding):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 2, 5, 6)), rng.standard_normal((3, 2, 2, 3)), rng.standard_normal(3)
    r = rng.standard_normal(naive.conv2d(x, w, b, stride, padding).shape)
    dx, dw, db = naive.conv2d_backward(r, x, w, b, stride, padding)
    assert_gradients(lambda: float(np.sum(naive.conv2d(x, w, b, stride, padding) * r)),
                     {"x": x, "w": w, "b": b}, {"x": dx, "w": dw, "b": db})


def test_naive_max_pool_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.permutation(2 * 2 * 5 * 5).reshape(2, 2, 5, 5) * 0.01
    r = rng.standard_normal(naive.max_pool2d(x, 3, 2, 1).shape)
    dx = naive.max_pool2d_backward(r, x, 3, 2, 1)
    assert_gradients(lambda: float(np.sum(naive.max_pool2d(x, 3, 2, 1) * r)), {"x": x}, {"x": dx})


@pytest.mark.parametrize("full_limit", [None, 100], ids=["per-element", "sampled"])
def test_gradient_checker_accepts_right_and_rejects_wrong(full_limit):
    x = np.random.default_rng(0).standard_normal(400)
    f = lambda: float(np.sum(np.sin(x)))  # noqa: E731
    right = gradient_errors(f, {"x": x}, {"x": np.cos(x)}, full_limit=full_limit)["x"]
    wrong = gradient_errors(f, {"x": x}, {"x": np.cos(x) * (1 + 1e-4)}, full_limit=full_limit)["x"]
    assert right <= TOL
    assert wrong > 10 * TOL
