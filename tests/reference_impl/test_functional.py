"""reference_impl.functional: the fast paths against the naive loops of tests/naive.py, plus dtypes,
workspaces, tie and NaN rules, and argument errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reference_impl import functional as F
from tests import naive

TOLERANCE = {np.float64: {"rtol": 1e-10, "atol": 1e-12}, np.float32: {"rtol": 2e-5, "atol": 2e-5}}


def assert_close(fast, slow, dtype=np.float64):
    assert fast.shape == slow.shape
    np.testing.assert_allclose(fast, slow, **TOLERANCE[dtype])


# (x shape, w shape, stride, padding); ids spell out batch, channels, kernel, stride and padding
CONV_CASES = [
    pytest.param((3, 2, 7, 7), (4, 2, 3, 3), 1, 0, id="n3-c2-k3-s1-p0"),
    pytest.param((1, 3, 7, 7), (2, 3, 3, 3), 2, 0, id="n1-c3-k3-s2-p0"),
    pytest.param((3, 2, 8, 7), (3, 2, 3, 3), 2, 1, id="n3-c2-k3-s2-p1"),
    pytest.param((1, 3, 7, 6), (4, 3, 3, 3), (2, 1), 1, id="n1-c3-k3-s(2,1)-p1"),
    pytest.param((3, 2, 5, 6), (3, 2, 3, 3), 1, (1, 2), id="n3-c2-k3-s1-p(1,2)"),
    pytest.param((3, 1, 6, 5), (2, 1, 3, 3), 2, (2, 0), id="n3-c1-k3-s2-p(2,0)"),
    pytest.param((3, 3, 6, 7), (2, 3, 2, 3), 1, "valid", id="n3-c3-k(2,3)-s1-valid"),
    pytest.param((1, 2, 7, 8), (3, 2, 3, 2), 2, "valid", id="n1-c2-k(3,2)-s2-valid"),
    pytest.param((3, 2, 6, 5), (3, 2, 3, 3), 1, "same", id="n3-c2-k3-s1-same"),
    pytest.param((3, 2, 7, 7), (3, 2, 2, 2), 2, "same", id="n3-c2-k2-s2-same-asym"),
    pytest.param((1, 3, 8, 9), (2, 3, 4, 4), 2, "same", id="n1-c3-k4-s2-same-asym"),
    pytest.param((3, 2, 7, 6), (2, 2, 2, 4), (2, 1), "same", id="n3-c2-k(2,4)-s(2,1)-same-asym"),
    pytest.param((3, 4, 5, 5), (6, 4, 1, 1), 1, 0, id="n3-c4-k1-s1-p0"),
    pytest.param((1, 2, 9, 8), (3, 2, 5, 5), 3, 2, id="n1-c2-k5-s3-p2-remainder"),
]

# (x shape, kernel_size, stride, padding)
POOL_CASES = [
    pytest.param((2, 3, 6, 6), 2, None, 0, id="k2-s2-6x6"),
    pytest.param((2, 3, 7, 7), 2, 2, 0, id="k2-s2-7x7-remainder"),
    pytest.param((2, 2, 7, 7), 3, 2, 0, id="k3-s2-overlap"),
    pytest.param((1, 2, 5, 6), 3, 1, 1, id="k3-s1-p1"),
    pytest.param((2, 2, 8, 8), 3, 2, 1, id="k3-s2-p1"),
    pytest.param((2, 2, 7, 6), (3, 2), 2, (1, 0), id="k(3,2)-s2-p(1,0)"),
    pytest.param((2, 2, 7, 7), 2, 2, "same", id="k2-s2-same-7x7"),
    pytest.param((1, 3, 8, 9), 3, 2, "same", id="k3-s2-same-8x9"),
    pytest.param((2, 2, 6, 7), (2, 3), (1, 2), "valid", id="k(2,3)-s(1,2)-valid"),
    pytest.param((1, 2, 10, 10), 3, 3, 0, id="k3-s3-10x10-remainder"),
]


def conv_inputs(x_shape, w_shape, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    return x, w, b


# ------------------------------------------------------------------------------------------------
# conv2d against the naive loops


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding"), CONV_CASES)
def test_conv2d_forward_matches_naive(x_shape, w_shape, stride, padding, with_bias):
    x, w, b = conv_inputs(x_shape, w_shape)
    b = b if with_bias else None
    assert_close(F.conv2d(x, w, b, stride, padding), naive.conv2d(x, w, b, stride, padding))


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding"), CONV_CASES)
def test_conv2d_backward_matches_naive(x_shape, w_shape, stride, padding, with_bias):
    x, w, b = conv_inputs(x_shape, w_shape)
    b = b if with_bias else None
    dy = np.random.default_rng(1).standard_normal(naive.conv2d(x, w, b, stride, padding).shape)
    dx, dw, db = F.conv2d_backward(dy, x, w, b, stride, padding)
    ndx, ndw, ndb = naive.conv2d_backward(dy, x, w, b, stride, padding)
    assert_close(dx, ndx)
    assert_close(dw, ndw)
    if with_bias:
        assert_close(db, ndb)
    else:
        assert db is None


@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding"), CONV_CASES[::3])
def test_conv2d_float32_matches_naive(x_shape, w_shape, stride, padding):
    x, w, b = conv_inputs(x_shape, w_shape, np.float32)
    y = F.conv2d(x, w, b, stride, padding)
    assert y.dtype == np.float32
    assert_close(y, naive.conv2d(x, w, b, stride, padding), np.float32)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    grads = F.conv2d_backward(dy, x, w, b, stride, padding)
    for fast, slow in zip(grads, naive.conv2d_backward(dy, x, w, b, stride, padding), strict=True):
        assert fast.dtype == np.float32
        assert_close(fast, slow, np.float32)


@pytest.mark.parametrize(
    ("size", "kernel", "stride"), [(7, 2, 2), (8, 4, 2), (9, 3, 2), (5, 5, 1), (6, 1, 3), (10, 4, 3)],
    ids=lambda v: str(v))
def test_conv2d_same_output_is_ceil_of_input_over_stride(size, kernel, stride):
    x, w, _ = conv_inputs((1, 1, size, size + 1), (1, 1, kernel, kernel))
    y = F.conv2d(x, w, stride=stride, padding="same")
    assert y.shape[2:] == (math.ceil(size / stride), math.ceil((size + 1) / stride))


def test_conv2d_same_puts_the_odd_padding_pixel_at_bottom_right():
    """k=2, s=2 on 7x7 needs one pixel of padding per axis: TensorFlow puts it after, not before."""
    x, w, b = conv_inputs((2, 3, 7, 7), (4, 3, 2, 2))
    after = F.conv2d(np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1))), w, b, 2, 0)
    before = F.conv2d(np.pad(x, ((0, 0), (0, 0), (1, 0), (1, 0))), w, b, 2, 0)
    same = F.conv2d(x, w, b, 2, "same")
    assert_close(same, after)
    assert not np.allclose(same, before)


def test_conv2d_valid_is_padding_zero():
    x, w, b = conv_inputs((2, 2, 6, 7), (3, 2, 3, 2))
    assert_close(F.conv2d(x, w, b, 2, "valid"), naive.conv2d(x, w, b, 2, 0))


# ------------------------------------------------------------------------------------------------
# max_pool2d against the naive loops


def pool_input(shape, seed=0):
    """Continuous values, mostly negative so that a pad mistaken for 0 would win border windows."""
    return np.random.default_rng(seed).standard_normal(shape) - 1.0


@pytest.mark.parametrize(("x_shape", "kernel", "stride", "padding"), POOL_CASES)
def test_max_pool2d_forward_matches_naive(x_shape, kernel, stride, padding):
    x = pool_input(x_shape)
    assert_close(F.max_pool2d(x, kernel, stride, padding), naive.max_pool2d(x, kernel, stride, padding))


@pytest.mark.parametrize("values", ["distinct", "tied"])
@pytest.mark.parametrize(("x_shape", "kernel", "stride", "padding"), POOL_CASES)
def test_max_pool2d_backward_matches_naive(x_shape, kernel, stride, padding, values):
    """'tied' draws from {0, 1, 2}, so most windows hold several maxima: only the first may get dy."""
    rng = np.random.default_rng(3)
    x = pool_input(x_shape) if values == "distinct" else rng.integers(0, 3, x_shape).astype(np.float64)
    dy = rng.standard_normal(naive.max_pool2d(x, kernel, stride, padding).shape)
    assert_close(F.max_pool2d_backward(dy, x, kernel, stride, padding),
                 naive.max_pool2d_backward(dy, x, kernel, stride, padding))


@pytest.mark.parametrize(("x_shape", "kernel", "stride", "padding"), POOL_CASES[2:6])
def test_max_pool2d_float32_matches_naive(x_shape, kernel, stride, padding):
    x = pool_input(x_shape).astype(np.float32)
    y = F.max_pool2d(x, kernel, stride, padding)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, naive.max_pool2d(x, kernel, stride, padding))
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    dx = F.max_pool2d_backward(dy, x, kernel, stride, padding)
    assert dx.dtype == np.float32
    assert_close(dx, naive.max_pool2d_backward(dy, x, kernel, stride, padding), np.float32)


def test_max_pool2d_padding_never_wins():
    x = -1.0 - np.arange(16.0).reshape(1, 1, 4, 4)  # every value below a zero pad
    y = F.max_pool2d(x, 3, 2, padding=1)
    # values fall along rows and columns: each window's maximum is its top-left real pixel
    np.testing.assert_array_equal(y, [[[[x[0, 0, 0, 0], x[0, 0, 0, 1]], [x[0, 0, 1, 0], x[0, 0, 1, 1]]]]])
    np.testing.assert_array_equal(y, [[[[-1.0, -2.0], [-5.0, -6.0]]]])


def test_max_pool2d_all_equal_windows_send_gradient_to_first_element_only():
    x = np.full((1, 1, 4, 4), 0.5)
    dy = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx = F.max_pool2d_backward(dy, x, 2, 2)
    np.testing.assert_array_equal(
        dx, [[[[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]]])


def test_max_pool2d_all_equal_overlapping_windows_send_gradient_to_first_real_pixel():
    """k3 s1 p1 on a constant 3x3 image: window (p, q) starts at pixel (max(p-1, 0), max(q-1, 0))."""
    dx = F.max_pool2d_backward(np.ones((1, 1, 3, 3)), np.full((1, 1, 3, 3), 7.0), 3, 1, 1)
    np.testing.assert_array_equal(dx, [[[[4, 2, 0], [2, 1, 0], [0, 0, 0]]]])


def test_max_pool2d_tie_after_the_first_position_goes_to_the_first_maximum():
    x = np.array([[[[1.0, 5.0], [5.0, 5.0]]]])
    np.testing.assert_array_equal(F.max_pool2d_backward(np.ones((1, 1, 1, 1)), x, 2),
                                  [[[[0.0, 1.0], [0.0, 0.0]]]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_max_pool2d_propagates_nan(dtype):
    x = pool_input((1, 2, 4, 4)).astype(dtype)
    x[0, 0, 1, 1] = np.nan  # last position of window (0, 0)
    x[0, 1, 2, 2] = np.nan  # first position of window (1, 1)
    y = F.max_pool2d(x, 2, 2)
    nan = np.zeros(y.shape, dtype=bool)
    nan[0, 0, 0, 0] = nan[0, 1, 1, 1] = True
    np.testing.assert_array_equal(np.isnan(y), nan)
    np.testing.assert_array_equal(y[~nan], naive.max_pool2d(x, 2, 2)[~nan])


def test_max_pool2d_nan_reaches_every_overlapping_window():
    x = pool_input((1, 1, 5, 5))
    x[0, 0, 2, 2] = np.nan
    y = F.max_pool2d(x, 3, 1, 1)
    expected = np.zeros((5, 5), dtype=bool)
    expected[1:4, 1:4] = True
    np.testing.assert_array_equal(np.isnan(y[0, 0]), expected)


# ------------------------------------------------------------------------------------------------
# linear and activations


def test_linear_is_x_w_plus_b():
    x = np.array([[1.0, 2.0]])
    w = np.array([[1.0, 10.0, 100.0], [2.0, 20.0, 200.0]])  # (in=2, out=3)
    np.testing.assert_array_equal(F.linear(x, w, np.array([0.5, 0.25, 0.125])), [[5.5, 50.25, 500.125]])


def test_linear_backward_by_hand():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    w = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])
    dy = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])
    dx, dw, db = F.linear_backward(dy, x, w, np.zeros(3))
    np.testing.assert_array_equal(dx, [[1 - 2, 2], [-1, 1]])  # dy @ w.T
    np.testing.assert_array_equal(dw, [[1, 3, 2 + 3], [2, 4, 4 + 4]])  # x.T @ dy
    np.testing.assert_array_equal(db, [1, 1, 3])


def test_activations_by_hand():
    x = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_array_equal(F.relu(x), [[0.0, 0.0, 3.0]])
    np.testing.assert_allclose(F.sigmoid(x), [[1 / (1 + math.e**2), 0.5, 1 / (1 + math.e**-3)]], rtol=1e-15)
    np.testing.assert_allclose(F.tanh(x), [[math.tanh(-2.0), 0.0, math.tanh(3.0)]], rtol=1e-15)
    z = math.e**-2 + 1 + math.e**3
    np.testing.assert_allclose(F.softmax(x), [[math.e**-2 / z, 1 / z, math.e**3 / z]], rtol=1e-14)
    np.testing.assert_allclose(F.log_softmax(x), np.log([[math.e**-2 / z, 1 / z, math.e**3 / z]]),
                               rtol=1e-14)


def test_relu_backward_gives_zero_at_zero():
    np.testing.assert_array_equal(F.relu_backward(np.ones(3), np.array([0.0, 2.0, 0.0])), [0, 1, 0])


def test_sigmoid_and_softmax_do_not_overflow():
    x = np.array([[-1000.0, 0.0, 1000.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        np.testing.assert_array_equal(F.sigmoid(x), [[0.0, 0.5, 1.0]])
        np.testing.assert_array_equal(F.softmax(x), [[0.0, 0.0, 1.0]])
        assert np.isfinite(F.log_softmax(x)[0, 1:]).all()


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_sums_to_one_along_axis(axis):
    y = F.softmax(np.random.default_rng(0).standard_normal((3, 4, 5)), axis=axis)
    np.testing.assert_allclose(y.sum(axis=axis), 1.0, rtol=1e-14)


# ------------------------------------------------------------------------------------------------
# dtypes: float32 in gives float32 out, float64 likewise; mixing is an error

def _ops(dtype):
    """name -> a function of no arguments calling the op on `dtype` inputs, returning its outputs."""
    rng = np.random.default_rng(0)

    def a(*shape):
        return rng.standard_normal(shape).astype(dtype)

    x4, w4, b4, dy4 = a(2, 3, 6, 6), a(4, 3, 3, 3), a(4), a(2, 4, 3, 3)
    dyp = a(2, 3, 3, 3)
    x2, w2, b2, dy2 = a(4, 5), a(5, 3), a(3), a(4, 3)
    y2 = np.abs(a(4, 3)) / 4
    return {
        "conv2d": lambda: F.conv2d(x4, w4, b4, 2, "same"),
        "conv2d_backward": lambda: F.conv2d_backward(dy4, x4, w4, b4, 2, "same"),
        "max_pool2d": lambda: F.max_pool2d(x4, 3, 2, 1),
        "max_pool2d_backward": lambda: F.max_pool2d_backward(dyp, x4, 3, 2, 1),
        "linear": lambda: F.linear(x2, w2, b2),
        "linear_backward": lambda: F.linear_backward(dy2, x2, w2, b2),
        "relu": lambda: F.relu(x2),
        "sigmoid": lambda: F.sigmoid(x2),
        "tanh": lambda: F.tanh(x2),
        "softmax": lambda: F.softmax(x2),
        "log_softmax": lambda: F.log_softmax(x2),
        "relu_backward": lambda: F.relu_backward(dy2, y2),
        "sigmoid_backward": lambda: F.sigmoid_backward(dy2, y2),
        "tanh_backward": lambda: F.tanh_backward(dy2, y2),
        "softmax_backward": lambda: F.softmax_backward(dy2, y2, -1),
        "log_softmax_backward": lambda: F.log_softmax_backward(dy2, np.log(y2), -1),
    }


OP_NAMES = list(_ops(np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("op", OP_NAMES)
def test_output_dtype_follows_input(op, dtype):
    outputs = _ops(dtype)[op]()
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    for out in outputs:
        assert out.dtype == dtype


def _mixed_calls():
    """name -> a call with one float64 argument among float32 ones."""
    rng = np.random.default_rng(0)

    def a(*shape, dtype=np.float32):
        return rng.standard_normal(shape).astype(dtype)

    x4, w4, b4 = a(2, 3, 6, 6), a(4, 3, 3, 3), a(4)
    x2, w2, b2, dy2, y2 = a(4, 5), a(5, 3), a(3), a(4, 3), np.abs(a(4, 3)) / 4
    return {
        "conv2d-weight": lambda: F.conv2d(x4, a(4, 3, 3, 3, dtype=np.float64), b4),
        "conv2d-bias": lambda: F.conv2d(x4, w4, a(4, dtype=np.float64)),
        "conv2d_backward-dy": lambda: F.conv2d_backward(a(2, 4, 4, 4, dtype=np.float64), x4, w4, b4),
        "max_pool2d_backward-dy": lambda: F.max_pool2d_backward(a(2, 3, 3, 3, dtype=np.float64), x4, 2),
        "linear-weight": lambda: F.linear(x2, a(5, 3, dtype=np.float64), b2),
        "linear-bias": lambda: F.linear(x2, w2, a(3, dtype=np.float64)),
        "linear_backward-dy": lambda: F.linear_backward(a(4, 3, dtype=np.float64), x2, w2, b2),
        "relu_backward-dy": lambda: F.relu_backward(a(4, 3, dtype=np.float64), y2),
        "sigmoid_backward-dy": lambda: F.sigmoid_backward(a(4, 3, dtype=np.float64), y2),
        "tanh_backward-dy": lambda: F.tanh_backward(a(4, 3, dtype=np.float64), y2),
        "softmax_backward-y": lambda: F.softmax_backward(dy2, y2.astype(np.float64), -1),
        "log_softmax_backward-y": lambda: F.log_softmax_backward(dy2, np.log(y2).astype(np.float64), -1),
    }


@pytest.mark.parametrize("call", list(_mixed_calls()))
def test_mixed_dtypes_raise_type_error(call):
    """The module's contract: 'mixing dtypes is an error, never a silent upcast'."""
    with pytest.raises(TypeError):
        _mixed_calls()[call]()


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: F.conv2d(np.ones((1, 1, 4, 4), int), np.ones((1, 1, 2, 2))), id="conv2d-int"),
        pytest.param(lambda: F.max_pool2d(np.ones((1, 1, 4, 4), int), 2), id="max_pool2d-int"),
        pytest.param(lambda: F.linear(np.ones((2, 3), np.float16), np.ones((3, 2), np.float16)),
                     id="linear-float16"),
    ],
)
def test_non_float_inputs_raise_type_error(call):
    with pytest.raises(TypeError, match="float32 or float64"):
        call()


# ------------------------------------------------------------------------------------------------
# shapes: wrong ones are a ValueError that says what was expected and what came

X4, W4 = np.ones((2, 3, 6, 6)), np.ones((4, 3, 3, 3))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda: F.conv2d(np.ones((3, 6, 6)), W4), r"4-D NCHW, got shape \(3, 6, 6\)",
                     id="conv2d-3d-input"),
        pytest.param(lambda: F.conv2d(X4, np.ones((4, 2, 3, 3))), r"2 input channels.*has 3",
                     id="conv2d-channels"),
        pytest.param(lambda: F.conv2d(X4, W4, np.ones(3)), r"bias must have shape \(4,\), got \(3,\)",
                     id="conv2d-bias"),
        pytest.param(lambda: F.conv2d(X4, np.ones((4, 3, 7, 7))), r"does not fit an input of 6x6",
                     id="conv2d-kernel-too-big"),
        pytest.param(lambda: F.conv2d(X4, W4, padding="full"), r"'valid' or 'same', got 'full'",
                     id="conv2d-padding-name"),
        pytest.param(lambda: F.conv2d(X4, W4, padding=-1), r"padding must be >= 0", id="conv2d-negative-pad"),
        pytest.param(lambda: F.conv2d(X4, W4, stride=0), r"stride must be >= 1", id="conv2d-zero-stride"),
        pytest.param(lambda: F.conv2d(X4, W4, stride=(1, 2, 3)), r"pair of ints", id="conv2d-stride-triple"),
        pytest.param(lambda: F.conv2d_backward(np.ones((2, 4, 3, 3)), X4, W4),
                     r"dy has shape \(2, 4, 3, 3\).*\(2, 4, 4, 4\)", id="conv2d_backward-dy"),
        pytest.param(lambda: F.max_pool2d(np.ones((6, 6)), 2), r"4-D NCHW, got shape \(6, 6\)",
                     id="max_pool2d-2d-input"),
        pytest.param(lambda: F.max_pool2d(X4, 7), r"does not fit an input of 6x6", id="max_pool2d-too-big"),
        pytest.param(lambda: F.max_pool2d_backward(np.ones((2, 3, 2, 2)), X4, 2),
                     r"dy has shape \(2, 3, 2, 2\).*\(2, 3, 3, 3\)", id="max_pool2d_backward-dy"),
        pytest.param(lambda: F.linear(np.ones((2, 5)), np.ones((4, 3))), r"expects 4 input features.*has 5",
                     id="linear-features"),
        pytest.param(lambda: F.linear(np.ones(5), np.ones((5, 3))), r"2-D", id="linear-1d-input"),
        pytest.param(lambda: F.linear(np.ones((2, 5)), np.ones((5, 3)), np.ones(5)),
                     r"bias must have shape \(3,\), got \(5,\)", id="linear-bias"),
    ],
)
def test_wrong_shapes_raise_value_error_saying_why(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------------------------
# workspaces: buffers reused from call to call must not change any result


def _workspace_calls():
    """name -> f(seed, batch, workspace) returning a tuple of results (copied: the next call with
    the same workspace may overwrite them)."""

    def conv(padding, stride):
        def call(seed, batch, workspace):
            x, w, b = conv_inputs((batch, 3, 7, 6), (4, 3, 3, 2), seed=seed)
            return (F.conv2d(x, w, b, stride, padding, workspace=workspace).copy(),)
        return call

    def conv_backward(padding, stride):
        def call(seed, batch, workspace):
            x, w, b = conv_inputs((batch, 3, 7, 6), (4, 3, 3, 2), seed=seed)
            dy = np.random.default_rng(seed + 100).standard_normal(F.conv2d(x, w, b, stride, padding).shape)
            out = F.conv2d_backward(dy, x, w, b, stride, padding, workspace=workspace)
            return tuple(a.copy() for a in out)
        return call

    def pool(padding, stride):
        def call(seed, batch, workspace):
            x = pool_input((batch, 3, 7, 6), seed)
            return (F.max_pool2d(x, 3, stride, padding, workspace=workspace).copy(),)
        return call

    def pool_backward(padding, stride):
        def call(seed, batch, workspace):
            x = pool_input((batch, 3, 7, 6), seed)
            dy = np.random.default_rng(seed + 100).standard_normal(F.max_pool2d(x, 3, stride, padding).shape)
            return (F.max_pool2d_backward(dy, x, 3, stride, padding, workspace=workspace).copy(),)
        return call

    return {
        "conv2d-p0": conv(0, 1),
        "conv2d-p1": conv(1, 1),
        "conv2d-same-s2": conv("same", 2),
        "conv2d_backward-p(1,2)": conv_backward((1, 2), 1),
        "conv2d_backward-same-s2": conv_backward("same", 2),
        "max_pool2d-p1": pool(1, 2),
        "max_pool2d-same": pool("same", 2),
        "max_pool2d_backward-p1": pool_backward(1, 1),
        "max_pool2d_backward-same": pool_backward("same", 2),
    }


WORKSPACE_CALLS = _workspace_calls()


@pytest.mark.parametrize("batches", [(2, 2, 2), (1, 3, 1)], ids=["same-batch", "batch-changes"])
@pytest.mark.parametrize("call", list(WORKSPACE_CALLS))
def test_workspace_reuse_gives_the_results_of_fresh_calls(call, batches):
    f = WORKSPACE_CALLS[call]
    workspace = F.Workspace()
    for seed, batch in enumerate(batches):
        reused = f(seed, batch, workspace)
        fresh = f(seed, batch, None)
        for a, b in zip(reused, fresh, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_one_workspace_shared_by_conv_and_pool_forward_and_backward():
    """A stack's layers may share a workspace: interleaved calls must not corrupt each other."""
    workspace = F.Workspace()
    for seed in range(3):
        x, w, b = conv_inputs((2, 3, 8, 8), (4, 3, 3, 3), seed=seed)
        y = F.conv2d(x, w, b, 1, 1, workspace=workspace).copy()
        p = F.max_pool2d(y, 3, 2, 1, workspace=workspace).copy()
        dp = np.random.default_rng(seed).standard_normal(p.shape)
        dy = F.max_pool2d_backward(dp, y, 3, 2, 1, workspace=workspace).copy()
        dx, dw, db = (a.copy() for a in F.conv2d_backward(dy, x, w, b, 1, 1, workspace=workspace))
        assert_close(y, naive.conv2d(x, w, b, 1, 1))
        assert_close(p, naive.max_pool2d(y, 3, 2, 1))
        assert_close(dy, naive.max_pool2d_backward(dp, y, 3, 2, 1))
        for fast, slow in zip((dx, dw, db), naive.conv2d_backward(dy, x, w, b, 1, 1), strict=True):
            assert_close(fast, slow)
