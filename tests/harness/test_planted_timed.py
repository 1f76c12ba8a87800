""""Verified" means the code that was timed: planted bugs the contract methods alone let through.

Each adapter of tests/harness/planted_timed.py is opened as a `bench run` worker opens a cell
(harness.worker_main's own `open`, in this process): the contract check at batch 8, what the
timed phase computed on its first call at the cell's batch, and the float64 check. Each bug must
fail its cell and name the right place; the unmodified adapter and two correct rewrites must pass.
The last test goes through `bench run` itself, with plugin adapters registered by FWBENCH_ADAPTERS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import reference_impl as ri  # noqa: E402
from harness import worker_main  # noqa: E402
from harness.cells import Cell  # noqa: E402
from harness.checks import ReferenceRun, check_cell  # noqa: E402
from tests.harness import planted  # noqa: E402
from tests.harness import planted_timed as pt  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _open(adapter, model: str, phase: str, batch: int, cache_dir, dtype: str = "float32") -> dict:
    """The check a `bench run` worker records for this cell (CellRecord.check)."""
    session = worker_main._Session()
    session.adapter = adapter
    cell = Cell(model, adapter.name, "cpu", dtype, "eager", batch, phase, 1)
    reply = session.open({"cell": cell.to_dict(), "timing": {"warmup": 0, "min_sample_s": 1e-4}, "verify": True,
                          "seed": 0, "cache_dir": str(cache_dir)})
    assert reply["ok"], reply
    return reply["record"]["check"]


@cache
def _reference(model: str) -> ReferenceRun:
    spec = ri.models.get(model)
    return ReferenceRun(spec, ri.init_weights(spec, 0, np.float64), 8, 0, 10)


def _failed(tensors: list[dict]) -> set[str]:
    return {t["tensor"] for t in tensors if not t["passed"]}


# -- controls -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["forward", "forward_backward", "backward", "train_step"])
@pytest.mark.parametrize("model", ["mlp", "lenet5"])
def test_control_the_unmodified_adapter_passes_every_part(tmp_path, model, phase):
    check = _open(planted.PlantedAdapter(), model, phase, 32, tmp_path)
    assert check["status"] == "pass", check["reason"] or check["first_divergence"]
    assert check["contract_status"] == "pass" and check["float64"]["status"] == "pass"
    timed = check["timed"]
    assert timed["status"] == "pass" and timed["batch"] == 32 and timed["phase"] == phase
    kinds = {t["tensor"].partition(":")[0] for t in timed["tensors"]}
    assert kinds == {"forward": {"output"}, "forward_backward": {"loss", "grad"}, "backward": {"grad"},
                     "train_step": {"loss", "train_step"}}[phase]


@pytest.mark.parametrize("adapter, model", [
    (pt.SigmoidThroughTanhAdapter, "sigmoid_mlp"),
    (pt.HandFusedCrossEntropyAdapter, "mlp"),
    (pt.HandFusedCrossEntropyAdapter, "lenet5"),
])
def test_a_function_written_another_correct_way_raises_no_alarm(tmp_path, adapter, model):
    """Other rounding, the same function: every part passes, in float32 and float64, at batch 128."""
    for dtype in ("float32", "float64"):
        result = check_cell(adapter(), _reference(model), dtype=dtype)
        assert result.status == "pass", [(t.tensor, t.normwise) for t in result.failures]
    for phase in ("forward", "forward_backward", "train_step"):
        check = _open(adapter(), model, phase, 128, tmp_path)
        assert check["status"] == "pass", (phase, check["first_divergence"], check["reason"])


# -- the timed path ----------------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", [pt.Bfloat16TimedForwardAdapter, pt.SkippedLayerTimedAdapter])
def test_a_timed_forward_other_than_the_checked_one_fails_the_cell(tmp_path, adapter):
    check = _open(adapter(), "mlp", "forward", 32, tmp_path)
    assert check["contract_status"] == "pass"  # forward() itself is right
    assert check["timed"]["status"] == "fail" and _failed(check["timed"]["tensors"]) == {"output"}
    assert check["status"] == "fail"
    assert check["first_divergence"] == "output, in the timed forward at batch 32"
    # its other phases are the adapter's own, and right
    assert _open(adapter(), "mlp", "train_step", 32, tmp_path)["status"] == "pass"


def test_a_phase_that_cannot_hand_its_result_back_leaves_its_cell_unverified(tmp_path):
    check = _open(pt.NoReadbackAdapter(), "mlp", "forward", 8, tmp_path)
    assert check["contract_status"] == "pass" and check["status"] == "unverified"
    assert check["timed"]["status"] == "unverified" and "no readback" in check["reason"]


def test_a_bug_from_batch_16_on_passes_at_the_check_batch_and_fails_at_the_timed_one(tmp_path):
    assert check_cell(pt.LargeBatchBugAdapter(), _reference("mlp")).status == "pass"  # batch 8
    assert _open(pt.LargeBatchBugAdapter(), "mlp", "forward", 8, tmp_path)["status"] == "pass"
    for phase in ("forward", "forward_backward", "train_step"):
        check = _open(pt.LargeBatchBugAdapter(), "mlp", phase, 32, tmp_path)
        assert check["contract_status"] == "pass" and check["timed"]["status"] == "fail", phase
        assert check["first_divergence"].endswith(f", in the timed {phase} at batch 32")


def test_a_wrong_timed_optimizer_setting_fails_the_timed_train_step(tmp_path):
    check = _open(pt.TutorialLrTimedAdapter(), "lenet5", "train_step", 32, tmp_path)
    assert check["contract_status"] == "pass"
    assert check["first_divergence"] == "conv1 (train_step update), in the timed train_step at batch 32"
    assert "loss" not in _failed(check["timed"]["tensors"])  # the loss before the update is right


# -- updates ----------------------------------------------------------------------------------------


def test_an_update_10_percent_too_large_on_one_layer_is_caught_in_float32(tmp_path):
    """fc1's step is 10% too large: relative to the step that is 0.1, far above float32's
    tolerance; relative to the parameter, as the checks once compared, it is below 1e-3. Over
    10 steps every layer follows it off (their gradients change); fc1 is furthest off, and the
    one-step check of the timed train step fails fc1 alone."""
    result = check_cell(pt.OversizedStepAdapter(), _reference("lenet5"), dtype="float32")
    assert result.status == "fail"
    assert result.first_divergence == "fc1 (train_step update)"
    failed = {t.tensor for t in result.failures}
    assert {f"{opt}:fc1.weight" for opt in ("train_step", "sgd", "sgd_plain", "rmsprop", "adam")} <= failed
    check = _open(pt.OversizedStepAdapter(), "lenet5", "train_step", 32, tmp_path)
    assert _failed(check["timed"]["tensors"]) == {"train_step:fc1.weight"}
    assert check["timed"]["first_divergence"] == "fc1 (train_step update), in the timed train_step at batch 32"
    step = next(t for t in result.tensors if t.tensor == "train_step:fc1.weight")
    assert step.normwise > 0.09  # momentum carries the extra 10% into later steps: more by the tenth
    one = next(t for t in check["timed"]["tensors"] if t["tensor"] == "train_step:fc1.weight")
    assert one["normwise"] == pytest.approx(0.1, rel=1e-3)
    weights = ri.init_weights(ri.models.get("lenet5"), 0, np.float64)["fc1.weight"]
    reference_step = _reference("lenet5").tensors["train_step:fc1.weight"]
    assert 0.1 * np.linalg.norm(reference_step) / np.linalg.norm(weights) < 1e-3


def test_a_bug_visible_only_in_float64_fails_the_float32_cell_by_its_float64_part(tmp_path):
    """A weight decay of 1e-5 passes every float32 tolerance; bench run's float64 part finds it."""
    assert check_cell(pt.WeightDecayAdapter(), _reference("lenet5"), dtype="float32").status == "pass"
    check = _open(pt.WeightDecayAdapter(), "lenet5", "train_step", 32, tmp_path)
    assert check["contract_status"] == "pass" and check["timed"]["status"] == "pass"
    assert check["float64"]["status"] == "fail"
    assert check["status"] == "fail"
    assert check["first_divergence"] == "conv1 (train_step update) in float64"


def test_a_declared_float64_limitation_leaves_a_cell_unverified_never_passed(tmp_path):
    """Keras 3 on JAX and torch declares that it cannot compute float64 (Adapter.float64_limitation):
    the float64 part that fails then makes its float32 cell unverified, with the reason, not failed;
    a bug visible only in float64 is therefore not caught, but the cell cannot claim to be verified."""
    check = _open(pt.WeightDecayExcusedAdapter(), "lenet5", "train_step", 32, tmp_path)
    assert check["contract_status"] == "pass" and check["timed"]["status"] == "pass"
    assert check["float64"]["status"] == "fail"
    assert check["float64"]["limitation"] == pt.WeightDecayExcusedAdapter.float64_limitation
    assert check["status"] == "unverified"
    assert check["first_divergence"] == "conv1 (train_step update) in float64"
    assert check["reason"] == "float64: this framework says it cannot compute float64"
    # a declaration that does not hold changes nothing: the float64 part passes, and so does the cell
    control = _open(pt.ExcusedAdapter(), "lenet5", "train_step", 32, tmp_path)
    assert control["status"] == "pass" and "limitation" not in control["float64"]


def test_hyperparameters_stored_in_float32_pass_in_float32_and_fail_in_float64():
    """lr 0.01 held as float32 is off by 2.2e-8 and momentum 0.9 by 2.6e-8: every step of lenet5's
    SGD is too, which float32 cannot see and float64's update tolerance (1e-11 normwise) does."""
    assert check_cell(pt.Float32HyperparamsAdapter(), _reference("lenet5"), dtype="float32").status == "pass"
    result = check_cell(pt.Float32HyperparamsAdapter(), _reference("lenet5"), dtype="float64")
    assert result.status == "fail" and result.first_divergence.endswith("(train_step update)")
    step = next(t for t in result.tensors if t.tensor == "train_step:fc1.weight")
    # the rounding of lr (2.2e-8), and of momentum, which compounds over the 10 steps: 1.04e-7 measured
    assert 1e-8 < step.normwise < 1e-6
    assert all(t.passed for t in result.tensors if t.stage != "update")


# -- backward localisation ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_wrong_input_gradient_inside_conv2_is_named_at_conv2(dtype):
    result = check_cell(pt.MiddleInputGradAdapter(), _reference("mnist_cnn"), dtype=dtype)
    assert result.status == "fail"
    assert result.first_divergence == "conv2 (backward)"
    failed = {t.tensor for t in result.failures}
    assert "dlayer:pool1" in failed and "grad:conv1.weight" in failed
    assert not failed & {"grad:conv2.weight", "grad:conv2.bias", "dlayer:conv2"}
    # without the layers' output gradients, the first wrong gradient is conv1's own
    blind = check_cell(pt.MiddleInputGradNoOutputGradsAdapter(), _reference("mnist_cnn"), dtype=dtype)
    assert blind.first_divergence == "conv1 (backward)"


# -- end to end: bench run with plugin adapters ---------------------------------------------------------


def test_bench_run_labels_planted_cells_unverified_and_names_the_place(tmp_path):
    suite = tmp_path / "planted.toml"
    suite.write_text(
        'name = "planted"\nmodels = ["lenet5"]\nframeworks = ["torch_bf16_timed_forward", "torch_weight_decay"]\n'
        'devices = ["cpu"]\ndtypes = ["float32"]\nmodes = ["eager"]\nbatch_sizes = [32]\n'
        'phases = ["forward", "train_step"]\nthreads = [1]\nverify = true\n'
        "[timing]\npasses = 1\nsamples = 2\nrounds = 1\nwarmup = 1\nmin_sample_s = 0.001\ncell_timeout_s = 120\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    env["FWBENCH_ADAPTERS"] = ",".join(f"{name}=tests.harness.planted_timed:{cls.__name__}"
                                       for name, cls in pt.ADAPTERS.items())
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suite), "--results-dir",
                           str(tmp_path / "results"), "--no-report"], env=env, capture_output=True, text=True,
                          timeout=600)
    (run,) = (tmp_path / "results").iterdir()
    cells = {}
    for path in (run / "cells").iterdir():
        doc = json.loads(path.read_text())
        cells[(doc["cell"]["framework"], doc["cell"]["phase"])] = doc
    assert set(cells) == {(f, p) for f in ("torch_bf16_timed_forward", "torch_weight_decay")
                          for p in ("forward", "train_step")}, proc.stdout + proc.stderr
    for key, doc in cells.items():
        assert doc["status"] == "ok", (key, doc.get("reason"))
    assert proc.returncode == 1, "a cell that parts from the reference fails the run"
    bf16 = cells[("torch_bf16_timed_forward", "forward")]
    assert bf16["verified"] is False
    assert bf16["check"]["first_divergence"] == "output, in the timed forward at batch 32"
    assert cells[("torch_bf16_timed_forward", "train_step")]["verified"] is True
    for phase in ("forward", "train_step"):
        decayed = cells[("torch_weight_decay", phase)]
        assert decayed["verified"] is False
        assert decayed["check"]["first_divergence"].endswith(" in float64")
