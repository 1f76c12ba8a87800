"""`bench check` through its command line: exit codes, bad input, skips and the output formats.

Exit status (harness/cli.py): 0 when every cell checked passes (skips listed with their reason),
1 when any fails or errors (tests/harness/test_planted_bugs.py), 2 on bad input, with a message
that lists the valid names. Small selections, eager mode: seconds in all.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from harness import adapters
from harness.cli import cli
from reference_impl import models

GROUND_TRUTH = "the float64 reference is the ground truth it would be compared with"
CSV_COLUMNS = ["model", "framework", "device", "dtype", "mode", "status", "tensor", "stage", "layer", "shape",
               "max_abs", "normwise", "atol", "rtol", "normwise_tol", "passed", "note", "first_divergence",
               "deterministic", "reason"]
# Every tensor the check compares for mlp (Dense(64, relu) -> Dense(10, softmax)).
MLP_TENSORS = {
    "output", "loss", "layer:fc1", "layer:fc2", "grad:input", "dlayer:fc1",
    *(f"{kind}:{layer}.{p}" for kind in ("grad", "train_step", "sgd", "sgd_plain", "rmsprop", "adam")
      for layer in ("fc1", "fc2") for p in ("weight", "bias")),
    *(f"{kind}:losses" for kind in ("train_step", "sgd", "sgd_plain", "rmsprop", "adam")),
}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread for torch's tiny cells: faster, and on a busy machine immune to OpenMP
    threads spinning against other processes. Nothing to do where torch is not installed."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def bench():
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, list(args), prog_name="bench")


def _cell_lines(output: str) -> list[list[str]]:
    """The table's cell rows, split into words (model, framework, device, dtype, mode, status, ...)."""
    names = set(models.names())
    return [line.split() for line in output.splitlines() if line.split()[:1] and line.split()[0] in names]


# -- passing selections ------------------------------------------------------------------------------


def test_a_passing_selection_exits_0():
    pytest.importorskip("torch")
    result = CliRunner().invoke(cli, ["check", "linear_regression", "mlp", "--framework", "torch",
                                      "--framework", "reference", "--mode", "eager"], prog_name="bench")
    assert result.exit_code == 0, result.output
    cells = _cell_lines(result.output)
    # 2 models x 2 frameworks x 2 dtypes, eager only: torch's compile mode is not run
    assert sorted((c[0], c[1], c[3], c[4], c[5]) for c in cells) == sorted(
        (m, fw, dt, "eager", "skip" if (fw, dt) == ("reference", "float64") else "pass")
        for m in ("linear_regression", "mlp") for fw in ("torch", "reference") for dt in ("float32", "float64"))
    assert "6 pass, 0 fail, 0 error, 2 skip of 8 cells" in result.output
    assert "FAIL" not in result.output and "ERROR" not in result.output


def test_the_float64_reference_cell_is_a_skip_with_its_reason(bench):
    result = bench("check", "mlp", "--framework", "reference")
    assert result.exit_code == 0, result.output
    assert f"skipped 1: {GROUND_TRUTH}" in result.output
    result = bench("check", "mlp", "--framework", "reference", "--format", "json")
    assert result.exit_code == 0, result.output
    cells = {c["dtype"]: c for c in json.loads(result.stdout)}
    assert cells["float64"]["status"] == "skip" and cells["float64"]["reason"] == GROUND_TRUTH
    assert cells["float64"]["tensors"] == []
    assert cells["float32"]["status"] == "pass" and cells["float32"]["reason"] == ""


def test_verbose_lists_every_tensor(bench):
    result = bench("check", "linear_regression", "--framework", "reference", "--dtype", "float32", "-v")
    assert result.exit_code == 0, result.output
    listed = {line.split()[1] for line in result.output.splitlines() if line.strip().startswith("ok ")}
    assert {"output", "loss", "layer:linear", "grad:linear.weight", "grad:linear.bias", "grad:input",
            "sgd:linear.weight", "adam:linear.bias"} <= listed
    quiet = bench("check", "linear_regression", "--framework", "reference", "--dtype", "float32")
    assert not any(line.strip().startswith("ok ") for line in quiet.output.splitlines())


# -- bad input: exit 2, naming the valid values, before any cell runs ----------------------------------


@pytest.mark.parametrize("args, message", [
    (["check", "resnet50"], f"unknown model 'resnet50'; valid: {', '.join(models.names())}"),
    (["check", "mlp", "lenet6"], "unknown model 'lenet6'; valid: mlp, "),
    (["check", "mlp", "--framework", "caffe"], "unknown framework 'caffe'; valid: reference, torch, "),
    (["check", "mlp", "--dtype", "float16"], "unknown dtype 'float16'; valid: float32, float64"),
    (["check", "mlp", "--dtype", "float32", "--dtype", "bf16"], "unknown dtype 'bf16'; valid: float32, float64"),
    (["check", "mlp", "--device", "tpu"], "unknown device 'tpu'; valid: cpu, cuda, cuda:N"),
    (["check", "mlp", "--device", "cuda:x"], "unknown device 'cuda:x'; valid: cpu, cuda, cuda:N"),
    (["check", "mlp", "--device", "cpu:0"], "unknown device 'cpu:0'; valid: cpu, cuda, cuda:N"),
    (["check", "mlp", "--framework", "torch", "--mode", "jit"], "unknown mode 'jit'; valid: compile, eager"),
    (["check", "mlp", "--framework", "reference", "--mode", "compile"], "unknown mode 'compile'; valid: eager"),
])
def test_bad_input_exits_2_listing_the_valid_values(bench, args, message):
    result = bench(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Usage: bench check" in result.output
    assert "first divergence" not in result.output  # no cell ran: not even the table's header


def test_an_unknown_framework_message_lists_every_registered_name(bench):
    result = bench("check", "mlp", "--framework", "caffe")
    assert result.exit_code == 2
    assert f"valid: {', '.join(adapters.names())}" in result.output


def test_bad_option_values_exit_2(bench):
    assert bench("check", "mlp", "--batch", "0").exit_code == 2
    assert bench("check", "mlp", "--steps", "0").exit_code == 2
    result = bench("check", "mlp", "--format", "xml")
    assert result.exit_code == 2 and "'csv'" in result.output


# -- devices ---------------------------------------------------------------------------------------------


def test_cuda_without_a_gpu_gives_skipped_cells_with_the_reason(bench):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the cells would run")
    result = bench("check", "linear_regression", "--framework", "torch", "--framework", "reference",
                   "--device", "cuda", "--mode", "eager", "--format", "json")
    assert result.exit_code == 0, result.output
    cells = json.loads(result.stdout)
    assert len(cells) == 4 and all(c["status"] == "skip" and c["device"] == "cuda" for c in cells)
    reasons = {(c["framework"], c["dtype"]): c["reason"] for c in cells}
    assert reasons == {
        ("torch", "float32"): "torch sees no CUDA device here",
        ("torch", "float64"): "torch sees no CUDA device here",
        ("reference", "float32"): "reference sees no CUDA device here",
        ("reference", "float64"): GROUND_TRUTH,
    }
    table = bench("check", "linear_regression", "--framework", "torch", "--device", "cuda", "--mode", "eager")
    assert table.exit_code == 0, table.output
    assert "skipped 2: torch sees no CUDA device here" in table.output


def test_a_cuda_index_on_the_cpu_only_reference_is_a_skip(bench):
    result = bench("check", "linear_regression", "--framework", "reference", "--device", "cuda:7",
                   "--dtype", "float32", "--format", "json")
    assert result.exit_code == 0, result.output
    (cell,) = json.loads(result.stdout)
    assert cell["status"] == "skip" and "reference sees no CUDA device here" == cell["reason"]


# -- output formats ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlp_outputs():
    """The same selection as JSON and as CSV: torch float32 (runs) and the reference (skip, then runs)."""
    pytest.importorskip("torch")
    runner = CliRunner()
    args = ["check", "mlp", "--framework", "torch", "--framework", "reference", "--mode", "eager",
            "--dtype", "float32", "--dtype", "float64"]
    out = {}
    for fmt in ("json", "csv"):
        result = runner.invoke(cli, [*args, "--format", fmt], prog_name="bench")
        assert result.exit_code == 0, result.output
        out[fmt] = result.stdout
    return out


def test_json_has_per_tensor_entries(mlp_outputs):
    cells = json.loads(mlp_outputs["json"])  # nothing but the JSON on stdout
    assert [(c["framework"], c["dtype"], c["status"]) for c in cells] == [
        ("torch", "float32", "pass"), ("torch", "float64", "pass"),
        ("reference", "float32", "pass"), ("reference", "float64", "skip")]
    for cell in cells[:3]:
        assert cell["model"] == "mlp" and cell["device"] == "cpu" and cell["mode"] == "eager"
        assert cell["first_divergence"] is None and cell["deterministic"] is True
        tensors = {t["tensor"]: t for t in cell["tensors"]}
        assert set(tensors) == MLP_TENSORS
        for t in tensors.values():
            assert t["passed"] is True and t["note"] == ""
            assert t["normwise"] <= t["normwise_tol"] and t["max_abs"] >= 0
        assert tensors["grad:fc1.weight"]["shape"] == [100, 64]  # canonical (in, out)
        assert tensors["grad:fc1.weight"]["stage"] == "gradient" and tensors["grad:fc1.weight"]["layer"] == "fc1"
        assert tensors["adam:fc2.bias"]["stage"] == "update" and tensors["adam:fc2.bias"]["layer"] == "fc2"
        assert tensors["grad:input"]["layer"] is None and tensors["grad:input"]["shape"] == [8, 100]
        assert tensors["output"]["stage"] == "forward" and tensors["loss"]["shape"] == []


def test_csv_has_a_header_and_one_row_per_tensor(mlp_outputs):
    rows = list(csv.reader(io.StringIO(mlp_outputs["csv"])))
    assert rows[0] == CSV_COLUMNS
    records = [dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:]]
    cells = json.loads(mlp_outputs["json"])
    # one row per tensor of each cell, and one row for a cell without tensors (the skip)
    assert len(records) == sum(len(c["tensors"]) or 1 for c in cells) == 3 * len(MLP_TENSORS) + 1
    for fw, dtype in (("torch", "float32"), ("torch", "float64"), ("reference", "float32")):
        mine = [r for r in records if (r["framework"], r["dtype"]) == (fw, dtype)]
        assert sorted(r["tensor"] for r in mine) == sorted(MLP_TENSORS)
        assert all(r["status"] == "pass" and r["passed"] == "True" and r["model"] == "mlp" for r in mine)
    by_tensor = {r["tensor"]: r for r in records if (r["framework"], r["dtype"]) == ("torch", "float32")}
    assert by_tensor["grad:fc1.weight"]["shape"] == "100x64" and by_tensor["grad:fc1.weight"]["layer"] == "fc1"
    assert float(by_tensor["output"]["normwise"]) <= float(by_tensor["output"]["normwise_tol"])
    (skip,) = [r for r in records if r["status"] == "skip"]
    assert (skip["framework"], skip["dtype"], skip["tensor"], skip["reason"]) == ("reference", "float64", "",
                                                                                   GROUND_TRUTH)
