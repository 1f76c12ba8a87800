import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from harness import __version__, adapters
from harness.cli import cli
from reference_impl import models


@pytest.fixture
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, list(args), prog_name="bench")


def test_help_shows_the_commands(run):
    result = run("--help")
    assert result.exit_code == 0
    assert "list" in result.output and "Examples" in result.output


def test_version(run):
    result = run("--version")
    assert result.exit_code == 0
    assert __version__ in result.output


def test_list_table_shows_every_model_with_params_and_flops(run):
    result = run("list")
    assert result.exit_code == 0, result.output
    for spec in models.all_specs():
        line = next(line for line in result.output.splitlines() if line.split()[:1] == [spec.name])
        assert f"{spec.num_params:,}" in line
    assert "93,322" in result.output  # mnist_cnn, counted by hand in tests/reference_impl
    for name in adapters.names():
        assert any(line.split()[:1] == [name] for line in result.output.splitlines())


def test_list_json(run):
    result = run("list", "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert [m["name"] for m in data["models"]] == models.names()
    by_name = {m["name"]: m for m in data["models"]}
    assert by_name["lenet5"]["params"] == 61_706
    assert by_name["mnist_cnn"]["flops_per_sample"] == models.get("mnist_cnn").flops_per_sample
    reference = next(f for f in data["frameworks"] if f["name"] == "reference")
    assert reference["available"] and reference["version"].startswith("numpy ")


def test_bad_option_value_exits_2_naming_the_choices(run):
    result = run("list", "--format", "xml")
    assert result.exit_code == 2
    assert "'table'" in result.output and "'json'" in result.output


def test_unknown_command_exits_2(run):
    assert run("frobnicate").exit_code == 2


def test_unknown_framework_lists_the_valid_names():
    with pytest.raises(KeyError, match="torch"):
        adapters.get("caffe")


def test_a_missing_framework_is_unavailable_with_the_install_hint(monkeypatch):
    import importlib.util

    from harness.adapters.torch_adapter import TorchAdapter

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    status = TorchAdapter().availability()
    assert not status.available and "pip install" in status.reason


def test_bench_list_imports_no_framework():
    """`bench list` must work with NumPy alone: it may not import torch or tensorflow."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from harness.cli import cli\n"
        "r = CliRunner().invoke(cli, ['list'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("statuses, verified, check_statuses, expected", [
    (["ok", "ok"], [True, None], ["pass", None], 0),
    (["ok", "ok"], [True, False], ["pass", "fail"], 1),
    (["ok", "ok"], [False, True], ["error", "pass"], 1),
    (["ok", "ok"], [False, False], ["unverified", "unverified"], 0),  # said in the report, not a fault found
    (["ok", "timeout"], [True, None], ["pass", None], 1),
    (["skipped", "ok"], [None, True], [None, "pass"], 0),
])
def test_bench_run_exits_1_on_a_failed_cell_or_a_failed_check_never_on_an_unverified_one(
        statuses, verified, check_statuses, expected):
    import pandas as pd

    from harness.cli import run_exit_status

    df = pd.DataFrame({"status": statuses, "verified": pd.array(verified, dtype="boolean"),
                       "check_status": check_statuses})
    assert run_exit_status(df) == expected
