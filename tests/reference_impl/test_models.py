"""The model catalogue, weights (init, save, load, checks) and Sequential models built from them."""

from __future__ import annotations

import math

import numpy as np
import pytest

import reference_impl as ri
from reference_impl import losses
from reference_impl.optim import SGD
from tests import composed

NAMES = ["mlp", "sigmoid_mlp", "mnist_cnn", "lenet5", "linear_regression", "logistic_regression"]

# Worked out by hand from the documents' architectures: conv weight (out, in, kh, kw), dense (in, out).
PARAM_SHAPES = {
    "mlp": {"fc1.weight": (100, 64), "fc1.bias": (64,), "fc2.weight": (64, 10), "fc2.bias": (10,)},
    "sigmoid_mlp": {"hidden.weight": (64, 32), "hidden.bias": (32,),
                    "output.weight": (32, 10), "output.bias": (10,)},
    # 28 -conv3-> 26 -pool2-> 13 -conv3-> 11 -pool2-> 5 -conv3-> 3: dense1 sees 64 * 3 * 3 = 576
    "mnist_cnn": {"conv1.weight": (32, 1, 3, 3), "conv1.bias": (32,),
                  "conv2.weight": (64, 32, 3, 3), "conv2.bias": (64,),
                  "conv3.weight": (64, 64, 3, 3), "conv3.bias": (64,),
                  "dense1.weight": (576, 64), "dense1.bias": (64,),
                  "dense2.weight": (64, 10), "dense2.bias": (10,)},
    # 32 -conv5-> 28 -pool2-> 14 -conv5-> 10 -pool2-> 5: fc1 sees 16 * 5 * 5 = 400
    "lenet5": {"conv1.weight": (6, 1, 5, 5), "conv1.bias": (6,),
               "conv2.weight": (16, 6, 5, 5), "conv2.bias": (16,),
               "fc1.weight": (400, 120), "fc1.bias": (120,),
               "fc2.weight": (120, 84), "fc2.bias": (84,),
               "fc3.weight": (84, 10), "fc3.bias": (10,)},
    "linear_regression": {"linear.weight": (13, 1), "linear.bias": (1,)},
    "logistic_regression": {"linear.weight": (30, 1), "linear.bias": (1,)},
}

NUM_PARAMS = {
    "mlp": 7_114,  # (100*64 + 64) + (64*10 + 10) = 6464 + 650
    "sigmoid_mlp": 2_410,  # (64*32 + 32) + (32*10 + 10) = 2080 + 330
    # (32*9 + 32) + (64*32*9 + 64) + (64*64*9 + 64) + (576*64 + 64) + (64*10 + 10)
    #   = 320 + 18496 + 36928 + 36928 + 650
    "mnist_cnn": 93_322,
    # (6*25 + 6) + (16*6*25 + 16) + (400*120 + 120) + (120*84 + 84) + (84*10 + 10)
    #   = 156 + 2416 + 48120 + 10164 + 850
    "lenet5": 61_706,
    "linear_regression": 14,  # 13 + 1
    "logistic_regression": 31,  # 30 + 1
}

# Per-sample output shape of each spec layer, in order (images NCHW without the batch axis).
LAYER_SHAPES = {
    "mlp": {"fc1": (64,), "fc2": (10,)},
    "sigmoid_mlp": {"hidden": (32,), "output": (10,)},
    "mnist_cnn": {"conv1": (32, 26, 26), "pool1": (32, 13, 13), "conv2": (64, 11, 11), "pool2": (64, 5, 5),
                  "conv3": (64, 3, 3), "flatten": (576,), "dense1": (64,), "dense2": (10,)},
    "lenet5": {"conv1": (6, 28, 28), "pool1": (6, 14, 14), "conv2": (16, 10, 10), "pool2": (16, 5, 5),
               "flatten": (400,), "fc1": (120,), "fc2": (84,), "fc3": (10,)},
    "linear_regression": {"linear": (1,)},
    "logistic_regression": {"linear": (1,)},
}

INPUT_SHAPES = {"mlp": (100,), "sigmoid_mlp": (64,), "mnist_cnn": (1, 28, 28), "lenet5": (1, 32, 32),
                "linear_regression": (13,), "logistic_regression": (30,)}

model_names = pytest.mark.parametrize("name", NAMES)


def make(name: str, dtype=np.float64, batch: int = 3, seed: int = 0):
    spec = ri.models.get(name)
    model = ri.build(spec, ri.init_weights(spec, seed, dtype))
    x, y = ri.random_batch(spec, batch, seed + 1, dtype)
    return model, x, y


# ------------------------------------------------------------------------------------------------
# the catalogue


def test_catalogue_names():
    assert sorted(ri.models.names()) == sorted(NAMES)
    assert len(ri.models.names()) == len(NAMES)


def test_unknown_model_is_a_key_error_listing_the_valid_names():
    with pytest.raises(KeyError, match="lenet5"):
        ri.models.get("lenet6")


@model_names
def test_param_count(name):
    spec = ri.models.get(name)
    assert spec.num_params == NUM_PARAMS[name]
    assert sum(w.size for w in ri.init_weights(spec, 0).values()) == NUM_PARAMS[name]


@model_names
def test_param_shapes_are_canonical(name):
    assert ri.models.get(name).param_shapes() == PARAM_SHAPES[name]


@model_names
def test_layer_names_and_shapes(name):
    spec = ri.models.get(name)
    assert [layer.name for layer in spec.layers] == list(LAYER_SHAPES[name])
    assert tuple(spec.input_shape) == INPUT_SHAPES[name]
    assert spec.output_shape == list(LAYER_SHAPES[name].values())[-1]


def test_documented_layer_names():
    assert [layer.name for layer in ri.models.get("lenet5").layers if layer.has_params] == [
        "conv1", "conv2", "fc1", "fc2", "fc3"]
    assert [layer.kind for layer in ri.models.get("lenet5").layers].count("max_pool2d") == 2
    assert [layer.name for layer in ri.models.get("mnist_cnn").layers if layer.has_params] == [
        "conv1", "conv2", "conv3", "dense1", "dense2"]
    assert [layer.name for layer in ri.models.get("mlp").layers] == ["fc1", "fc2"]


# ------------------------------------------------------------------------------------------------
# init_weights


@model_names
def test_init_weights_is_deterministic_per_seed(name):
    spec = ri.models.get(name)
    first, again, other = ri.init_weights(spec, 7), ri.init_weights(spec, 7), ri.init_weights(spec, 8)
    assert list(first) == list(again) == list(PARAM_SHAPES[name])
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
        assert not np.array_equal(first[key], other[key]), f"{key} is the same for seeds 7 and 8"


def fan_in(weight_shape) -> int:
    """Dense (in, out): in. Conv (out, in, kh, kw): in * kh * kw."""
    return weight_shape[0] if len(weight_shape) == 2 else math.prod(weight_shape[1:])


@model_names
def test_init_weights_respect_the_fan_in_bound(name):
    for key, w in ri.init_weights(ri.models.get(name), 0, np.float64).items():
        bound = 1 / math.sqrt(fan_in(PARAM_SHAPES[name][key.replace(".bias", ".weight")]))
        assert np.abs(w).max() <= bound, key
        if w.size >= 50:  # and the draws use the whole range, on both sides
            assert w.max() > 0.8 * bound and w.min() < -0.8 * bound, key


@model_names
def test_float32_weights_are_the_float64_draw_rounded(name):
    spec = ri.models.get(name)
    w32, w64 = ri.init_weights(spec, 3, np.float32), ri.init_weights(spec, 3, np.float64)
    for key in w64:
        assert w32[key].dtype == np.float32 and w64[key].dtype == np.float64
        np.testing.assert_array_equal(w32[key], w64[key].astype(np.float32))


# ------------------------------------------------------------------------------------------------
# save and load


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@model_names
def test_save_load_round_trip(name, dtype, tmp_path):
    spec = ri.models.get(name)
    weights = ri.init_weights(spec, 0, dtype)
    path = tmp_path / f"{name}.npz"
    ri.save_weights(path, weights)
    with np.load(path) as raw:  # the file's own keys are exactly the weight names
        assert sorted(raw.files) == sorted(weights)
    for loaded in (ri.load_weights(path), ri.load_weights(path, spec)):
        assert sorted(loaded) == sorted(weights)
        for key, w in weights.items():
            assert loaded[key].dtype == dtype
            np.testing.assert_array_equal(loaded[key], w)
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.npz"]  # no temp file left behind


def _save_modified(tmp_path, name, change):
    weights = ri.init_weights(ri.models.get(name), 0)
    change(weights)
    path = tmp_path / "weights.npz"
    ri.save_weights(path, weights)
    return path


@pytest.mark.parametrize(
    ("name", "change", "pieces"),
    [
        pytest.param("mlp", lambda w: w.pop("fc2.bias"), ["missing", "'fc2.bias'"], id="missing-key"),
        pytest.param("mlp", lambda w: w.update({"fc3.weight": np.zeros((10, 10), np.float32)}),
                     ["unexpected", "'fc3.weight'"], id="extra-key"),
        pytest.param("mlp", lambda w: w.update({"fc1.weight": w["fc1.weight"].T.copy()}),
                     ["'fc1.weight'", "(100, 64)", "(64, 100)"], id="transposed-dense"),
        pytest.param("lenet5", lambda w: w.update({"conv1.weight": w["conv1.weight"].transpose(2, 3, 1, 0).copy()}),
                     ["'conv1.weight'", "(6, 1, 5, 5)", "(5, 5, 1, 6)"], id="conv-in-HWIO"),
        pytest.param("mnist_cnn", lambda w: w.update({"dense2.bias": np.zeros(11, np.float32)}),
                     ["'dense2.bias'", "(10,)", "(11,)"], id="wrong-bias-length"),
    ],
)
def test_load_with_spec_rejects_mismatches_naming_key_and_shapes(tmp_path, name, change, pieces):
    path = _save_modified(tmp_path, name, change)
    ri.load_weights(path)  # without a spec anything loads
    with pytest.raises(ri.WeightsError) as info:
        ri.load_weights(path, ri.models.get(name))
    assert isinstance(info.value, ValueError)
    for piece in pieces:
        assert piece in str(info.value)


def test_build_rejects_weights_of_another_model():
    with pytest.raises(ri.WeightsError):
        ri.build(ri.models.get("mlp"), ri.init_weights(ri.models.get("sigmoid_mlp"), 0))


# ------------------------------------------------------------------------------------------------
# forward


@model_names
def test_forward_float32_agrees_with_float64(name):
    model64, x64, _ = make(name, np.float64)
    model32, x32, _ = make(name, np.float32)
    y64, y32 = model64.forward(x64), model32.forward(x32)
    assert y32.dtype == np.float32 and y64.dtype == np.float64
    assert np.linalg.norm(y32 - y64) <= 1e-5 * np.linalg.norm(y64)


@model_names
def test_forward_output_shape(name):
    model, x, _ = make(name, batch=4)
    assert model.forward(x).shape == (4, *ri.models.get(name).output_shape)


def test_mlp_outputs_are_softmax_probabilities():
    model, x, _ = make("mlp", batch=5)
    y = model.forward(x)
    assert (y > 0).all()
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("name", ["logistic_regression", "sigmoid_mlp"])
def test_sigmoid_outputs_lie_in_the_open_unit_interval(name):
    model, x, _ = make(name, batch=16)
    y = model.forward(x * 5)
    assert ((y > 0) & (y < 1)).all()


@model_names
def test_layer_outputs_are_named_in_order_with_nchw_shapes(name):
    model, x, _ = make(name, batch=2)
    outputs = model.layer_outputs(x)
    assert list(outputs) == list(LAYER_SHAPES[name])
    assert {k: v.shape for k, v in outputs.items()} == {k: (2, *s) for k, s in LAYER_SHAPES[name].items()}


@model_names
def test_layer_outputs_match_the_functional_ops_composed_in_nchw(name):
    """Sequential keeps images in its own internal layout; what it hands out must be what the
    canonical NCHW functions compute, layer by layer, down to the flattening order."""
    spec = ri.models.get(name)
    weights = ri.init_weights(spec, 0, np.float64)
    x, _ = ri.random_batch(spec, 3, 1, np.float64)
    model = ri.build(spec, weights)
    expected = composed.forward(spec, weights, x)
    for layer, out in model.layer_outputs(x).items():
        np.testing.assert_allclose(out, expected[layer], rtol=1e-12, atol=1e-12, err_msg=layer)
    np.testing.assert_allclose(model.forward(x), list(expected.values())[-1], rtol=1e-12, atol=1e-12)


def test_flatten_uses_nchw_order():
    spec = ri.models.get("lenet5")
    model, x, _ = make("lenet5", batch=2)
    outputs = model.layer_outputs(x)
    np.testing.assert_array_equal(outputs["flatten"], outputs["pool2"].reshape(2, 400))
    assert spec.layer("flatten").kind == "flatten"


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        pytest.param("mlp", (2, 99), id="mlp-features"),
        pytest.param("mlp", (100,), id="mlp-no-batch-axis"),
        pytest.param("mnist_cnn", (2, 28, 28), id="mnist_cnn-no-channel-axis"),
        pytest.param("mnist_cnn", (2, 1, 32, 32), id="mnist_cnn-lenet-size"),
        pytest.param("lenet5", (2, 32, 32, 1), id="lenet5-NHWC"),
    ],
)
def test_forward_rejects_a_wrong_input_shape(name, shape):
    model, _, _ = make(name)
    with pytest.raises(ValueError, match=name):
        model.forward(np.zeros(shape))


# ------------------------------------------------------------------------------------------------
# loss and gradients

LOSS_OF_OUTPUTS = {
    "mlp": losses.sparse_categorical_crossentropy,  # outputs are probabilities
    "sigmoid_mlp": losses.mse,
    "mnist_cnn": losses.sparse_softmax_cross_entropy,  # outputs are logits
    "lenet5": losses.sparse_softmax_cross_entropy,
    "linear_regression": losses.mse,
    "logistic_regression": losses.binary_crossentropy,
}


@model_names
def test_loss_is_the_spec_loss_of_the_outputs(name):
    model, x, y = make(name)
    np.testing.assert_allclose(model.loss(x, y), LOSS_OF_OUTPUTS[name](model.forward(x), y), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@model_names
def test_loss_and_grads_keys_shapes_and_dtypes(name, dtype):
    model, x, y = make(name, dtype)
    loss, grads = model.loss_and_grads(x, y)
    assert list(grads) != [] and set(grads) == set(PARAM_SHAPES[name])
    assert {k: g.shape for k, g in grads.items()} == PARAM_SHAPES[name]
    assert all(g.dtype == dtype for g in grads.values())
    np.testing.assert_allclose(loss, model.loss(x, y), rtol=1e-6 if dtype == np.float32 else 1e-14)

    _, with_input = model.loss_and_grads(x, y, input_grad=True)
    assert set(with_input) == set(PARAM_SHAPES[name]) | {"input"}
    assert with_input["input"].shape == x.shape and with_input["input"].dtype == dtype


@pytest.mark.parametrize("batch", [1, 3], ids=["batch1", "batch3"])
@model_names
def test_returned_arrays_survive_the_next_call(name, batch):
    """Buffer reuse inside the model must not leak: what a call returned stays as it was."""
    spec = ri.models.get(name)
    model = ri.build(spec, ri.init_weights(spec, 0, np.float64))
    (x1, y1), (x2, y2) = ri.random_batch(spec, batch, 1, np.float64), ri.random_batch(spec, batch, 2, np.float64)

    _, grads = model.loss_and_grads(x1, y1, input_grad=True)
    outputs = model.layer_outputs(x1)
    forward = model.forward(x1)
    kept = ({k: v.copy() for k, v in grads.items()}, {k: v.copy() for k, v in outputs.items()}, forward.copy())

    model.loss_and_grads(x2, y2, input_grad=True)
    model.layer_outputs(x2)
    model.forward(x2)

    changed = [f"grads[{k!r}]" for k in grads if not np.array_equal(grads[k], kept[0][k])]
    changed += [f"layer_outputs[{k!r}]" for k in outputs if not np.array_equal(outputs[k], kept[1][k])]
    changed += ["forward"] if not np.array_equal(forward, kept[2]) else []
    assert not changed, f"overwritten by the next call: {', '.join(changed)}"


@model_names
def test_build_copies_the_weights(name):
    spec = ri.models.get(name)
    weights = ri.init_weights(spec, 0, np.float64)
    model = ri.build(spec, weights)
    x, _ = ri.random_batch(spec, 2, 1, np.float64)
    before = model.forward(x)
    for w in weights.values():
        w *= 2
    np.testing.assert_array_equal(model.forward(x), before)


@model_names
def test_set_weights_gives_the_model_built_from_them(name):
    spec = ri.models.get(name)
    model = ri.build(spec, ri.init_weights(spec, 0, np.float64))
    new = ri.init_weights(spec, 1, np.float64)
    model.set_weights(new)
    x, _ = ri.random_batch(spec, 2, 1, np.float64)
    np.testing.assert_allclose(model.forward(x), ri.build(spec, new).forward(x), rtol=1e-14)


# ------------------------------------------------------------------------------------------------
# training

TRAIN_LR = {"mlp": 0.1, "sigmoid_mlp": 0.5, "mnist_cnn": 0.025, "lenet5": 0.05,
            "linear_regression": 0.05, "logistic_regression": 0.1}


@model_names
def test_sgd_train_steps_lower_the_loss_on_a_fixed_batch(name):
    model, x, y = make(name, np.float32, batch=8)
    optimizer = SGD(lr=TRAIN_LR[name], momentum=0.0)
    start = model.loss(x, y)
    params_before = {k: v.copy() for k, v in model.parameters().items()}
    history = [model.train_step(x, y, optimizer) for _ in range(20)]
    end = model.loss(x, y)
    assert history[0] == pytest.approx(start, rel=1e-6)  # train_step returns the loss before its update
    assert end < 0.9 * start, f"loss {start:.4g} -> {end:.4g}"
    assert all(b < a for a, b in zip(history, [*history[1:], end], strict=True)), history
    assert all(not np.array_equal(model.parameters()[k], p) for k, p in params_before.items())
    assert all(p.dtype == np.float32 for p in model.parameters().values())


def test_softmax_on_an_image_is_rejected_naming_the_layer():
    """Frameworks disagree on the axis of an image softmax, so a spec may not ask for one."""
    from reference_impl.spec import LayerSpec, ModelSpec, OptimizerSpec

    with pytest.raises(ValueError, match="'conv1'.*flatten"):
        ModelSpec("bad", (1, 8, 8), (LayerSpec("conv1", "conv2d", out_channels=2, kernel_size=3,
                                               activation="softmax"),),
                  "mse", OptimizerSpec("sgd", lr=0.1, momentum=0.0))
