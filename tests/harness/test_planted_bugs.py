"""Planted bugs: each classic porting mistake must fail the check and be localised.

The adapters of tests/harness/planted.py are the torch adapter with one mistake each, and those of
tests/harness/planted_jax.py the same mistakes written in JAX (the `kit` fixture runs every test on
both). For every one, check_cell must fail, fail on the right tensors, and name the first layer where the model
parts from the reference (docs/equivalence.md): forward failures by the first failing layer in
spec order, gradient failures by the first in backward order, update failures by optimizer.
The controls (the unmodified adapter, and the planted machinery without the mistake) pass the
same cells, so the failures come from the mistakes. One test goes end to end through
`bench check`, with the planted adapters registered as entry points, as a plugin would be.
Eager mode only, batch 8, 3 steps: the whole file runs in seconds.
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

import reference_impl as ri  # noqa: E402
from harness import adapters, checks  # noqa: E402
from harness.adapters.torch_adapter import TorchAdapter  # noqa: E402
from harness.checks import CheckResult, ReferenceRun, check_cell  # noqa: E402
from harness.cli import cli  # noqa: E402
from tests.harness import planted  # noqa: E402

DTYPES = ("float32", "float64")
MISSING = "missing from the framework's results"


@pytest.fixture(params=["torch", "jax"])
def kit(request):
    """The planted adapters of one framework: tests/harness/planted.py (torch) or planted_jax.py."""
    if request.param == "jax":
        pytest.importorskip("jax")
        from tests.harness import planted_jax

        return planted_jax
    return planted


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread while these tiny models run: faster, and on a busy machine immune to
    OpenMP threads spinning against other processes (seconds per cell instead of 0.1 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@cache
def _reference(model: str) -> ReferenceRun:
    spec = ri.models.get(model)
    return ReferenceRun(spec, ri.init_weights(spec, 0, np.float64), 8, 0, 3)


def _check(adapter, model: str, dtype: str) -> CheckResult:
    return check_cell(adapter, _reference(model), dtype=dtype, mode="eager")


def _by_name(result: CheckResult) -> dict:
    return {t.tensor: t for t in result.tensors}


def _failed(result: CheckResult) -> set[str]:
    return {t.tensor for t in result.failures}


def _describe(result: CheckResult) -> str:
    return f"{result.status} {result.first_divergence} {result.reason} failures={sorted(_failed(result))}"


# -- controls ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model", ["mlp", "lenet5", "mnist_cnn"])
@pytest.mark.parametrize("which", ["adapter", "planted-plumbing"])
def test_control_the_unmodified_adapter_passes(kit, which, model, dtype):
    adapter_cls = {"adapter": getattr(kit, "BaseAdapter", TorchAdapter), "planted-plumbing": kit.PlantedAdapter}[which]
    result = _check(adapter_cls(), model, dtype)
    assert result.status == "pass", _describe(result)
    assert result.first_divergence is None
    assert result.deterministic is True


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model", ["lenet5", "mnist_cnn"])
def test_control_nhwc_flatten_with_the_row_permutation_passes(kit, model, dtype):
    """The machinery of bug 2 (NHWC flatten, flatten output reported canonically) is right when
    the first dense weight's rows are permuted: the bug is the missing permutation alone."""
    result = _check(kit.NhwcFlattenPermutedAdapter(), model, dtype)
    assert result.status == "pass", _describe(result)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model", ["mlp", "lenet5"])
def test_control_hand_written_adam_with_eps_outside_the_root_passes(kit, model, dtype):
    result = _check(kit.CustomAdamAdapter(), model, dtype)
    assert result.status == "pass", _describe(result)


# -- 1. true convolution (flipped kernel) in conv1 ---------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model", ["lenet5", "mnist_cnn"])
def test_flipped_conv_kernel_is_found_at_conv1_forward(kit, model, dtype):
    result = _check(kit.FlippedConvAdapter(), model, dtype)
    assert result.status == "fail", _describe(result)
    assert result.first_divergence == "conv1 (forward)"
    tensors = _by_name(result)
    assert not tensors["layer:conv1"].passed
    assert not tensors["grad:conv1.weight"].passed
    assert not tensors["output"].passed
    # failed by value, not by shape: the flipped kernel has the canonical shape
    assert tensors["grad:conv1.weight"].note == "" and tensors["layer:conv1"].note == ""
    assert tensors["grad:conv1.weight"].normwise > 1e-2


# -- 2. NHWC flatten without the row permutation -----------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model, dense, convs", [
    ("mnist_cnn", "dense1", ["conv1", "pool1", "conv2", "pool2", "conv3"]),
    ("lenet5", "fc1", ["conv1", "pool1", "conv2", "pool2"]),
])
def test_nhwc_flatten_without_row_permutation_is_found_at_the_first_dense(kit, model, dense, convs, dtype):
    result = _check(kit.NhwcFlattenAdapter(), model, dtype)
    assert result.status == "fail", _describe(result)
    assert result.first_divergence == f"{dense} (forward)"
    tensors = _by_name(result)
    for layer in [*convs, "flatten"]:  # everything up to and including the flatten agrees
        assert tensors[f"layer:{layer}"].passed, layer
    assert not tensors[f"layer:{dense}"].passed
    assert not tensors[f"grad:{dense}.weight"].passed


# -- 3. a dropped bias --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropped_bias_reported_as_zeros_is_found_at_fc2_forward(kit, dtype):
    """The port keeps the key 'fc2.bias' (zeros) but has no such parameter: it fails by value."""
    result = _check(kit.DroppedBiasZerosAdapter(), "lenet5", dtype)
    assert result.status == "fail", _describe(result)
    assert result.first_divergence == "fc2 (forward)"
    tensors = _by_name(result)
    assert tensors["layer:fc1"].passed
    assert not tensors["layer:fc2"].passed
    for key in ("grad:fc2.bias", "sgd:fc2.bias", "adam:fc2.bias"):
        assert not tensors[key].passed and tensors[key].note == "", key
        assert tensors[key].shape == (84,)
    assert not any(t.note for t in result.tensors)  # nothing missing, nothing extra


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropped_bias_missing_from_the_results_is_reported_missing(kit, dtype):
    """The port drops the key too: the check reports the tensor missing, and still localises."""
    result = _check(kit.DroppedBiasMissingAdapter(), "lenet5", dtype)
    assert result.status == "fail", _describe(result)
    assert result.first_divergence == "fc2 (forward)"
    tensors = _by_name(result)
    notes = {t.tensor: t.note for t in result.tensors if t.note}
    optimizers = checks.check_optimizers(ri.models.get("lenet5"))
    assert notes == {"grad:fc2.bias": MISSING, **{f"{key}:fc2.bias": MISSING for key in optimizers}}
    assert tensors["grad:fc2.bias"].layer == "fc2" and tensors["grad:fc2.bias"].stage == "gradient"
    assert tensors["adam:fc2.bias"].stage == "update"


# -- 4. softmax over the batch axis -------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_over_the_batch_axis_is_found_at_fc2_forward(kit, dtype):
    result = _check(kit.SoftmaxOverBatchAdapter(), "mlp", dtype)
    assert result.status == "fail", _describe(result)
    assert result.first_divergence == "fc2 (forward)"
    # The loss is taken from the logits, so only the probabilities are wrong.
    assert _failed(result) == {"output", "layer:fc2"}
    tensors = _by_name(result)
    assert tensors["layer:fc1"].passed and tensors["loss"].passed


# -- 5. gradients of the summed loss -------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model, first", [("lenet5", "loss"), ("mnist_cnn", "loss"), ("mlp", "fc2"),
                                          ("linear_regression", "loss")])
def test_summed_gradients_are_found_where_the_backward_starts(kit, model, first, dtype):
    """The loss's backward is wrong: where the loss sees the last layer's output, that output's
    gradient is the first wrong one (the loss's backward); where the loss takes the logits of a
    final softmax (mlp), the last layer's backward is the first that can be seen."""
    result = _check(kit.SummedGradientsAdapter(), model, dtype)
    assert result.status == "fail", _describe(result)
    assert result.first_divergence == f"{first} (backward)"
    forward = [t for t in result.tensors if t.stage == "forward"]
    assert forward and all(t.passed for t in forward), [t.tensor for t in forward if not t.passed]
    grads = [t for t in result.tensors if t.stage == "gradient"]
    spec = ri.models.get(model)
    outputs = [layer.name for layer in spec.layers][: -1 if spec.loss_takes_logits else None]
    assert {t.tensor for t in grads} == ({f"grad:{k}" for k in spec.param_shapes()} | {"grad:input"}
                                         | {f"dlayer:{name}" for name in outputs})
    for t in grads:
        assert not t.passed, t.tensor
        # batch 8: every gradient is 8 times the reference's, a normwise error of 7
        assert t.normwise == pytest.approx(7.0, rel=1e-3), t.tensor
    assert all(not t.passed for t in result.tensors if t.tensor.startswith("sgd:"))


# -- 6. Adam's eps inside the square root ---------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model, first", [("mlp", "fc1"), ("lenet5", "fc1")])
def test_adam_eps_inside_the_root_fails_only_the_adam_update(kit, model, first, dtype):
    """Every Adam update fails, the timed one too where the model trains with Adam (mlp; LeNet-5
    trains with SGD), and nothing else. Every layer's step is off; the one named is the layer
    furthest off (fc1, the largest, on both)."""
    result = _check(kit.EpsInsideSqrtAdamAdapter(), model, dtype)
    assert result.status == "fail", _describe(result)
    adams = [k for k, o in checks.check_optimizers(ri.models.get(model)).items() if o.kind == "adam"]
    assert adams == (["train_step", "adam"] if model == "mlp" else ["adam"])
    assert result.first_divergence == f"{first} ({adams[0]} update)"
    for t in result.tensors:
        if t.stage in ("forward", "gradient") or not t.tensor.startswith(tuple(f"{a}:" for a in adams)):
            assert t.passed, t.tensor
    adam = [t for t in result.tensors if t.tensor.startswith(tuple(f"{a}:" for a in adams))
            and not t.tensor.endswith(":losses")]
    assert adam and not any(t.passed for t in adam)
    # the losses train_step returns are the loss before each update: the first is still right
    assert _failed(result) - {t.tensor for t in adam} <= {f"{a}:losses" for a in adams}


# -- JAX's jit: the layers' outputs and their gradients from compiled functions ----------------------


def test_jax_jit_finds_planted_bugs_where_eager_does():
    """In 'jit' mode JaxModel hands back every layer's output, and every output's gradient, from
    one compiled function each, not op by op: the check names the layers the eager tests above
    name. float32, as `bench run` times it; the updates with the timed optimizer only (each
    optimizer is a compilation)."""
    pytest.importorskip("jax")
    from tests.harness import planted_jax

    spec = ri.models.get("lenet5")
    reference = ReferenceRun(spec, ri.init_weights(spec, 0, np.float64), 8, 0, 3,
                             optimizers={checks.TIMED_OPTIMIZER: spec.optimizer})

    def jit_check(adapter_cls):
        return check_cell(type("Jit", (adapter_cls,), {"modes": ("eager", "jit")})(), reference, dtype="float32",
                          mode="jit")

    control = jit_check(planted_jax.PlantedAdapter)
    assert control.status == "pass", _describe(control)
    flipped = jit_check(planted_jax.FlippedConvAdapter)
    assert flipped.first_divergence == "conv1 (forward)", _describe(flipped)
    assert {"layer:conv1", "grad:conv1.weight", "output"} <= _failed(flipped)
    summed = jit_check(planted_jax.SummedGradientsAdapter)
    assert summed.first_divergence == "loss (backward)", _describe(summed)
    assert all(t.passed for t in summed.tensors if t.stage == "forward")
    dlayers = {t.tensor: t for t in summed.tensors if t.tensor.startswith("dlayer:")}
    outputs = [layer.name for layer in spec.layers][: -1 if spec.loss_takes_logits else None]
    assert set(dlayers) == {f"dlayer:{name}" for name in outputs}
    for t in dlayers.values():  # batch 8: every gradient 8 times the reference's
        assert not t.passed and t.normwise == pytest.approx(7.0, rel=1e-3), t.tensor


# -- end to end through `bench check`, the planted adapters registered as entry points ------------


@pytest.fixture
def register_adapters(tmp_path, monkeypatch):
    """register({'name': 'module:Class'}): entry points of 'harness.adapters', as a plugin
    package's metadata declares them, visible to a fresh registry until the test ends."""

    def register(entries: dict[str, str]) -> None:
        dist = tmp_path / "fwbench_planted_bugs-0.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fwbench-planted-bugs\nVersion: 0.0\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
        (dist / "entry_points.txt").write_text(f"[{adapters.ENTRY_POINT_GROUP}]\n{lines}")
        monkeypatch.syspath_prepend(str(tmp_path))
        adapters._registered.cache_clear()
        adapters.get.cache_clear()

    yield register
    adapters._registered.cache_clear()
    adapters.get.cache_clear()


@pytest.fixture
def bench():
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, list(args), prog_name="bench")


def _entry(cls) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def test_bench_check_fails_and_names_the_layer_of_a_planted_bug(register_adapters, bench):
    register_adapters({cls.name: _entry(cls) for cls in (planted.FlippedConvAdapter,
                                                          planted.SoftmaxOverBatchAdapter)})
    assert "torch_flipped_conv" in adapters.names()

    listed = bench("list", "--format", "json")
    assert listed.exit_code == 0, listed.output
    row = next(f for f in json.loads(listed.stdout)["frameworks"] if f["name"] == "torch_flipped_conv")
    assert row["available"] and row["modes"] == ["eager"]

    result = bench("check", "lenet5", "--framework", "torch_flipped_conv", "--dtype", "float32")
    assert result.exit_code == 1, result.output
    assert "conv1 (forward)" in result.output
    assert "FAIL: lenet5/torch_flipped_conv/cpu/float32/eager first divergence: conv1 (forward)" in result.output
    assert "grad:conv1.weight" in result.output  # failing tensors are listed under the cell

    # A planted bug among passing cells: exit 1, and only the planted cell is named.
    result = bench("check", "mlp", "--framework", "torch", "--framework", "torch_softmax_dim0",
                   "--dtype", "float64", "--mode", "eager", "--format", "json")
    assert result.exit_code == 1, result.output
    cells = {c["framework"]: c for c in json.loads(result.stdout)}
    assert cells["torch"]["status"] == "pass"
    assert cells["torch_softmax_dim0"]["status"] == "fail"
    assert cells["torch_softmax_dim0"]["first_divergence"] == "fc2 (forward)"
    failed = {t["tensor"] for t in cells["torch_softmax_dim0"]["tensors"] if not t["passed"]}
    assert failed == {"output", "layer:fc2"}


def test_bench_check_reports_the_adam_bug_by_optimizer(register_adapters, bench):
    register_adapters({planted.EpsInsideSqrtAdamAdapter.name: _entry(planted.EpsInsideSqrtAdamAdapter)})
    result = bench("check", "mlp", "--framework", "torch_adam_eps_inside", "--dtype", "float64")
    assert result.exit_code == 1, result.output
    assert "first divergence: fc1 (train_step update)" in result.output  # mlp's timed optimizer is Adam
