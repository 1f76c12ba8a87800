"""The tensorflow adapter against the NumPy reference: layouts, losses, gradients, modes, optimizers."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import reference_impl as ri  # noqa: E402
from harness import adapters, tolerances  # noqa: E402
from harness.adapters.base import Unavailable  # noqa: E402
from harness.adapters.tensorflow import TensorFlowAdapter, from_canonical, knobs, to_canonical  # noqa: E402
from reference_impl.spec import LayerSpec, ModelSpec, OptimizerSpec  # noqa: E402

MODELS = ri.models.names()
SGD_MOMENTUM = OptimizerSpec("sgd", lr=0.01, momentum=0.9)
ADAM = OptimizerSpec("adam", lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7)
RMSPROP = OptimizerSpec("rmsprop", lr=1e-3, rho=0.9, eps=1e-7)
ROOT = Path(__file__).resolve().parents[2]

# Specs outside the catalogue, for the code paths it does not reach: explicit conv padding
# (ZeroPadding2D), -inf padding before pooling, asymmetric 'same' with strides, activations between
# the flatten and the dense (features still in Keras's order), a standalone softmax, a flattened image
# as the output (flattened in NCHW order), image outputs, no bias, tanh.
_SGD = OptimizerSpec("sgd", lr=0.1, momentum=0.0)
EXTRA_SPECS = [
    ModelSpec("paddings", (3, 11, 10), (
        LayerSpec("c1", "conv2d", out_channels=4, kernel_size=3, padding=1, activation="tanh"),
        LayerSpec("p1", "max_pool2d", kernel_size=3, stride=2, padding=1),
        LayerSpec("c2", "conv2d", out_channels=5, kernel_size=(2, 3), stride=2, padding="same", activation="relu"),
        LayerSpec("p2", "max_pool2d", kernel_size=2, stride=1, padding="same"),
        LayerSpec("c3", "conv2d", out_channels=3, kernel_size=2, padding=(2, 0)),
        LayerSpec("p3", "max_pool2d", kernel_size=2, padding=(1, 0)),
        LayerSpec("flat", "flatten"), LayerSpec("r", "relu"),
        LayerSpec("d", "dense", out_features=7), LayerSpec("sm", "softmax")),
        "sparse_categorical_crossentropy", _SGD),
    ModelSpec("flat_output", (2, 5, 4), (
        LayerSpec("c1", "conv2d", out_channels=3, kernel_size=2, activation="sigmoid"),
        LayerSpec("flat", "flatten"), LayerSpec("t", "tanh")), "mse", _SGD),
    ModelSpec("image_output", (2, 6, 6), (
        LayerSpec("c1", "conv2d", out_channels=3, kernel_size=3, padding="same", activation="relu"),
        LayerSpec("c2", "conv2d", out_channels=2, kernel_size=3, use_bias=False)), "mse", _SGD),
]


def nerr(a, b) -> float:
    """Normwise relative error of a against b."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.fixture(scope="module")
def tfa() -> TensorFlowAdapter:
    return TensorFlowAdapter()


def spec_of(name: str) -> ModelSpec:
    return ri.models.get(name)


@cache
def weights(name: str) -> dict[str, np.ndarray]:
    return ri.init_weights(spec_of(name), seed=0, dtype=np.float64)


@cache
def batch(name: str):
    return ri.random_batch(spec_of(name), 4, 1, np.float64)


@cache
def reference(name: str):
    """(loss, grads with 'input', forward, layer outputs) of the float64 reference, once per model."""
    model = ri.build(spec_of(name), weights(name))
    x, y = batch(name)
    loss, grads = model.loss_and_grads(x, y, input_grad=True)
    return float(loss), grads, model.forward(x), model.layer_outputs(x)


@cache
def built(name: str, dtype: str, mode: str):
    """One TF model per (model, dtype, mode) for the tests that do not train it."""
    return TensorFlowAdapter().build(spec_of(name), weights(name), dtype=dtype, mode=mode)


def assert_matches_reference(model, name: str, tol: float) -> None:
    ref_loss, ref_grads, _, _ = reference(name)
    loss, grads = model.loss_and_grads(*batch(name))
    assert set(grads) == set(ref_grads)
    assert abs(loss - ref_loss) <= tol * abs(ref_loss), (loss, ref_loss)
    for key, ref in ref_grads.items():
        assert grads[key].shape == ref.shape, key
        assert nerr(grads[key], ref) < tol, (key, nerr(grads[key], ref))


# -- registry, availability, knobs ------------------------------------------------------------------


def test_registry_gives_the_tensorflow_adapter():
    adapter = adapters.get("tensorflow")
    assert isinstance(adapter, TensorFlowAdapter)
    assert adapter.modes == ("eager", "function", "xla")


def test_availability_and_knobs_do_not_import_tensorflow():
    code = ("import sys; from harness.adapters.tensorflow import TensorFlowAdapter, knobs; "
            "s = TensorFlowAdapter().availability(); k = knobs(); "
            "assert s.available and s.version, s; assert k['tensorflow'] == s.version, k; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported'")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


def test_knobs_report_onednn_as_set_and_the_versions():
    found = knobs()
    assert found["TF_ENABLE_ONEDNN_OPTS"] == os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    assert found["tensorflow"] == TensorFlowAdapter().availability().version
    assert found["keras"].split(".")[0] == "3"


def test_devices_are_cpu_then_cuda(tfa):
    devices = tfa.devices()
    assert devices[0] == "cpu"
    assert devices[1:] == [f"cuda:{i}" for i in range(len(tf.config.list_physical_devices("GPU")))]


def test_unknown_mode_is_unavailable_with_a_reason(tfa):
    with pytest.raises(Unavailable, match="no mode 'compile'.*eager, function, xla"):
        tfa.build(spec_of("mlp"), weights("mlp"), mode="compile")


def test_unknown_dtype_is_unavailable(tfa):
    with pytest.raises(Unavailable, match="float16"):
        tfa.build(spec_of("mlp"), weights("mlp"), dtype="float16")


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_is_unavailable_without_a_gpu(tfa, device):
    if len(tfa.devices()) > 1:
        pytest.skip("this machine has a GPU")
    with pytest.raises(Unavailable, match="CUDA"):
        tfa.build(spec_of("mlp"), weights("mlp"), device=device)


def test_malformed_device_is_an_error(tfa):
    with pytest.raises(ValueError, match="unknown device"):
        tfa.build(spec_of("mlp"), weights("mlp"), device="gpu")


def test_xla_is_usable_on_this_cpu(tfa):
    assert tfa.unavailable_reason("cpu", "float64", "xla") is None
    assert tfa.unavailable_reason("cpu", "float32", "xla") is None


# -- the conversion pair -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS + [s.name for s in EXTRA_SPECS])
def test_conversion_round_trips_both_ways_exactly(name):
    spec = next((s for s in EXTRA_SPECS if s.name == name), None) or spec_of(name)
    canonical = ri.init_weights(spec, seed=3, dtype=np.float64)
    native = from_canonical(spec, canonical)
    assert set(native) == set(canonical)
    for key, a in native.items():
        if a.ndim == 4:  # Keras's conv kernel: (kh, kw, in, out)
            out, cin, kh, kw = canonical[key].shape
            assert a.shape == (kh, kw, cin, out)
            np.testing.assert_array_equal(a, canonical[key].transpose(2, 3, 1, 0))
        else:
            assert a.shape == canonical[key].shape
    back = to_canonical(spec, native)
    for key in canonical:
        assert back[key].dtype == canonical[key].dtype
        np.testing.assert_array_equal(back[key], canonical[key])
    # And the other way: any native arrays survive canonical and back.
    rng = np.random.default_rng(1)
    native2 = {k: rng.standard_normal(a.shape).astype(np.float32) for k, a in native.items()}
    again = from_canonical(spec, to_canonical(spec, native2))
    for key in native2:
        assert again[key].dtype == np.float32
        np.testing.assert_array_equal(again[key], native2[key])


def test_conversion_rejects_wrong_keys_and_shapes():
    spec = spec_of("mlp")
    w = dict(weights("mlp"))
    with pytest.raises(ValueError, match="fc2.bias"):
        from_canonical(spec, {k: v for k, v in w.items() if k != "fc2.bias"})
    with pytest.raises(ValueError, match="fc1.weight"):
        from_canonical(spec, {**w, "fc1.weight": w["fc1.weight"].T})


@pytest.mark.parametrize("name, dense, image", [("mnist_cnn", "dense1", (64, 3, 3)), ("lenet5", "fc1", (16, 5, 5))])
def test_flatten_permutation_maps_keras_features_to_canonical_ones(name, dense, image):
    """Keras's Flatten of the NHWC image times the native kernel equals the canonical flattening of
    the NCHW image times the canonical kernel; and the permutation is not the identity."""
    spec = spec_of(name)
    assert spec.layer_shapes()[[l.name for l in spec.layers].index(dense) - 1][1] == image
    canonical = weights(name)
    native = from_canonical(spec, canonical)
    assert not np.array_equal(native[f"{dense}.weight"], canonical[f"{dense}.weight"])
    np.testing.assert_array_equal(np.sort(native[f"{dense}.weight"], axis=None),
                                  np.sort(canonical[f"{dense}.weight"], axis=None))
    x = np.random.default_rng(0).standard_normal((2, *image))
    keras_flat = tf.keras.layers.Flatten(dtype="float64")(tf.constant(x.transpose(0, 2, 3, 1))).numpy()
    np.testing.assert_allclose(keras_flat @ native[f"{dense}.weight"], x.reshape(2, -1) @ canonical[f"{dense}.weight"],
                               rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", ["mnist_cnn", "lenet5"])
def test_forward_and_layer_outputs_match_reference_float64(name):
    model = built(name, "float64", "eager")
    _, _, ref_out, ref_layers = reference(name)
    x, _ = batch(name)
    assert nerr(model.forward(x), ref_out) < 1e-12
    layers = model.layer_outputs(x)
    assert list(layers) == [layer.name for layer in spec_of(name).layers] == list(ref_layers)
    for key, ref in ref_layers.items():
        assert layers[key].shape == ref.shape, key
        assert nerr(layers[key], ref) < 1e-12, (key, nerr(layers[key], ref))


def test_get_weights_returns_the_canonical_weights_exactly():
    got = built("lenet5", "float64", "eager").get_weights()
    for key, w in weights("lenet5").items():
        np.testing.assert_array_equal(got[key], w)


# -- losses and gradients ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_float64_loss_and_gradients_match_reference(name):
    model = built(name, "float64", "eager")
    assert_matches_reference(model, name, 1e-10)
    _, _, ref_out, _ = reference(name)
    assert nerr(model.forward(batch(name)[0]), ref_out) < 1e-12


@pytest.mark.parametrize("name", MODELS)
def test_float32_loss_and_gradients_match_reference(name):
    model = built(name, "float32", "eager")
    assert_matches_reference(model, name, 1e-5)
    out = model.forward(batch(name)[0])
    assert out.dtype == np.float32
    assert nerr(out, reference(name)[2]) < 1e-5


@pytest.mark.parametrize("spec", EXTRA_SPECS, ids=lambda s: s.name)
def test_paddings_and_layouts_outside_the_catalogue_match_reference(tfa, spec):
    w = ri.init_weights(spec, seed=0, dtype=np.float64)
    x, y = ri.random_batch(spec, 3, 2, np.float64)
    ref = ri.build(spec, w)
    ref_loss, ref_grads = ref.loss_and_grads(x, y, input_grad=True)
    model = tfa.build(spec, w, dtype="float64")
    loss, grads = model.loss_and_grads(x, y)
    assert abs(loss - ref_loss) <= 1e-12 * abs(ref_loss)
    for key, g in ref_grads.items():
        assert nerr(grads[key], g) < 1e-10, key
    assert nerr(model.forward(x), ref.forward(x)) < 1e-12
    ref_layers = ref.layer_outputs(x)
    layers = model.layer_outputs(x)
    assert list(layers) == list(ref_layers)
    for key, out in ref_layers.items():
        assert nerr(layers[key], out) < 1e-12, key


@pytest.mark.parametrize("mode", ["function", "xla"])
@pytest.mark.parametrize("name", ["mlp", "mnist_cnn"])
def test_compiled_modes_agree_with_eager(name, mode):
    eager, compiled = built(name, "float64", "eager"), built(name, "float64", mode)
    x, y = batch(name)
    loss_e, grads_e = eager.loss_and_grads(x, y)
    loss_c, grads_c = compiled.loss_and_grads(x, y)
    assert abs(loss_c - loss_e) <= 1e-12 * abs(loss_e)
    for key, g in grads_e.items():
        assert nerr(grads_c[key], g) < 1e-12, key
    assert nerr(compiled.forward(x), eager.forward(x)) < 1e-12
    layers_c, layers_e = compiled.layer_outputs(x), eager.layer_outputs(x)  # eager in every mode
    assert list(layers_c) == list(layers_e)
    for key, out in layers_e.items():
        np.testing.assert_array_equal(layers_c[key], out)


# -- optimizers ---------------------------------------------------------------------------------------


def _train_both(tfa, name: str, optimizer: OptimizerSpec, dtype: str = "float64", mode: str = "eager",
                steps: int = 3):
    spec = spec_of(name)
    w = {k: v.astype(dtype) for k, v in weights(name).items()}
    x, y = ri.random_batch(spec, 4, 5, np.dtype(dtype))
    ref, ref_opt = ri.build(spec, w), ri.optim.from_spec(optimizer)
    model = tfa.build(spec, w, dtype=dtype, mode=mode)
    model.set_optimizer(optimizer)
    losses = []
    for _ in range(steps):
        losses.append((model.train_step(x, y), float(ref.train_step(x, y, ref_opt))))
    return model.get_weights(), ref.get_weights(), losses


@pytest.mark.parametrize("optimizer", [SGD_MOMENTUM, ADAM], ids=["sgd_momentum", "adam"])
@pytest.mark.parametrize("name", MODELS)
def test_three_train_steps_match_reference_float64(tfa, name, optimizer):
    got, ref, losses = _train_both(tfa, name, optimizer)
    for key, w in ref.items():
        assert nerr(got[key], w) < 1e-10, key
        # the update itself, not only the weights (which barely move in 3 steps), must agree
        start = weights(name)[key]
        assert nerr(got[key] - start, w - start) < 1e-9, key
    for loss, ref_loss in losses:
        assert abs(loss - ref_loss) <= 1e-12 * abs(ref_loss)


@pytest.mark.parametrize("name, optimizer, mode, dtype", [
    ("lenet5", RMSPROP, "eager", "float64"),
    ("mlp", OptimizerSpec("sgd", lr=0.1, momentum=0.0), "eager", "float64"),
    ("mlp", ADAM, "xla", "float64"),
    ("lenet5", SGD_MOMENTUM, "function", "float64"),
    ("mnist_cnn", ADAM, "eager", "float32"),
])
def test_other_optimizers_modes_and_dtypes_train_like_reference(tfa, name, optimizer, mode, dtype):
    got, ref, _ = _train_both(tfa, name, optimizer, dtype=dtype, mode=mode)
    if dtype == "float64":
        for key, w in ref.items():
            assert got[key].dtype == np.dtype(dtype)
            assert nerr(got[key], w) < 1e-10, key
        return
    # float32: the steps p_3 - p_0 against the checks' own float32 update tolerance (harness.tolerances,
    # measured), as bench run checks them. A bound on the weights of 1e-5 held on the CPUs before and
    # not on an AVX-512 AMD EPYC (2026-12-07), where dense1.weight read 1.4e-5 (its step 2.1e-4
    # normwise, against 3e-2): the timed Adam's eps of 1e-7 makes a step about lr wherever |g| ~ eps.
    tol = tolerances.tolerance_for("float32", "cpu")["update"]
    for key, w in ref.items():
        assert got[key].dtype == np.dtype(dtype)
        start = weights(name)[key].astype(dtype).astype(np.float64)
        check = tolerances.compare(key, "update", None, got[key].astype(np.float64) - start,
                                   w.astype(np.float64) - start, tol)
        assert check.passed, check
        assert nerr(got[key], w) < 1e-4, key  # and the weights themselves, 7x above what that CPU gave


def test_train_step_needs_an_optimizer_and_set_optimizer_restarts_its_state(tfa):
    spec, (x, y) = spec_of("mlp"), batch("mlp")
    model = tfa.build(spec, weights("mlp"), dtype="float64")
    with pytest.raises(RuntimeError, match="set_optimizer"):
        model.train_step(x, y)
    model.set_optimizer(ADAM)
    model.train_step(x, y)
    fresh = tfa.build(spec, model.get_weights(), dtype="float64")
    fresh.set_optimizer(ADAM)
    fresh.train_step(x, y)
    model.set_optimizer(ADAM)  # empty state and step count again
    model.train_step(x, y)
    for key, w in fresh.get_weights().items():
        np.testing.assert_array_equal(model.get_weights()[key], w)
