"""`bench compare`: the verdict per cell, the refusal of incomparable runs, and the exit status CI gates on.

The unit tests write small run folders with chosen samples. The end-to-end tests run a suite twice
through `bench run` with the busy-waiting adapters of tests/harness/busy.py, once with a planted
30% slowdown in one framework, and check that exactly that framework's cells come out as
regressions, and that two runs without a change give none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness import compare, results
from harness.cli import cli
from tests.harness import busy

REPO = Path(__file__).resolve().parents[2]

ENV = {
    "cpu": {"model": "Test CPU 3000", "machine": "x86_64", "logical_cores": 2, "affinity_cores": 2},
    "packages": {"numpy": "2.4.6", "torch": "2.13.0", "tensorflow": "2.21.0"},
    "blas": {"name": "openblas", "version": "0.3.31"},
    "gpus": [],
    "thread_env": {"TF_ENABLE_ONEDNN_OPTS": "1", "OMP_NUM_THREADS": None},
    "git": {"commit": "a" * 40, "dirty": False},
    "hostname": "runner-1",
}


def _samples(median: float, n: int = 15, spread: float = 0.02, seed: int = 0) -> list[float]:
    """n timings around median, with a relative spread (uniform jitter)."""
    rng = np.random.default_rng(seed)
    return list(median * (1 + spread * rng.uniform(-1, 1, n)))


def _cell(model="mlp", framework="torch", phase="forward", batch_size=32) -> dict:
    return {"model": model, "framework": framework, "device": "cpu", "dtype": "float32", "mode": "eager",
            "batch_size": batch_size, "phase": phase, "threads": 2}


def _key(cell: dict) -> str:
    return ".".join(str(cell[f]) for f in ("model", "framework", "device", "dtype", "mode")) + \
        f".b{cell['batch_size']}.{cell['phase']}.t{cell['threads']}"


def _run(path: Path, cells: dict[str, tuple[dict, list[float] | str]], env: dict | None = None) -> Path:
    """A run folder: cells {name: (cell, samples or a failure status)}."""
    results.write_run(path, {"suite": {"name": "t"}, "environment": env or ENV, "peak_gflops": {}})
    for cell, outcome in cells.values():
        doc = {"cell": cell, "status": "ok", "reason": "", "verified": True, "samples_s": outcome}
        if isinstance(outcome, str):
            doc.update(status=outcome, reason=f"it {outcome}", samples_s=[], verified=None)
        results.write_cell(path, _key(cell), doc)
    return path


# --------------------------------------------------------------------------------------------
# verdicts


def test_a_30_percent_slowdown_is_a_regression_and_the_rest_is_unchanged(tmp_path):
    cells_a = {"t": (_cell(framework="torch"), _samples(1e-3, seed=1)),
               "f": (_cell(framework="tensorflow"), _samples(2e-3, seed=2))}
    cells_b = {"t": (_cell(framework="torch"), _samples(1.3e-3, seed=3)),
               "f": (_cell(framework="tensorflow"), _samples(2e-3, seed=4))}
    c = compare.compare_runs(_run(tmp_path / "a", cells_a), _run(tmp_path / "b", cells_b))
    assert [x.key for x in c.regressions] == [_key(_cell(framework="torch"))]
    assert c.improvements == [] and c.broken == [] and c.failed
    reg = c.regressions[0]
    assert reg.ratio == pytest.approx(np.median(cells_b["t"][1]) / np.median(cells_a["t"][1]))
    assert reg.ci_low > 1.2 and reg.p_value < 1e-4
    unchanged = next(x for x in c.changes if x.cell["framework"] == "tensorflow")
    assert unchanged.verdict == "unchanged" and "within the minimum effect" in unchanged.why


def test_a_faster_cell_is_an_improvement_and_does_not_fail_the_gate(tmp_path):
    a = _run(tmp_path / "a", {"t": (_cell(), _samples(1e-3, seed=1))})
    b = _run(tmp_path / "b", {"t": (_cell(), _samples(0.7e-3, seed=2))})
    c = compare.compare_runs(a, b)
    assert [x.key for x in c.improvements] == [_key(_cell())] and c.regressions == [] and not c.failed


def test_a_significant_change_below_the_minimum_effect_is_unchanged(tmp_path):
    # 5% slower with a 0.5% spread: the test is certain, the effect too small to act on
    a = _run(tmp_path / "a", {"t": (_cell(), _samples(1e-3, spread=0.005, seed=1))})
    b = _run(tmp_path / "b", {"t": (_cell(), _samples(1.05e-3, spread=0.005, seed=2))})
    c = compare.compare_runs(a, b)
    assert c.changes[0].p_value < 1e-4
    assert c.changes[0].verdict == "unchanged" and not c.failed
    assert compare.compare_runs(a, b, min_effect=0.03).changes[0].verdict == "regression"


def test_a_large_change_that_is_not_significant_is_unchanged(tmp_path):
    # medians 30% apart, but three samples each with a spread that overlaps: chance explains it
    a = _run(tmp_path / "a", {"t": (_cell(), [1.0e-3, 1.6e-3, 0.5e-3])})
    b = _run(tmp_path / "b", {"t": (_cell(), [1.3e-3, 0.6e-3, 1.7e-3])})
    c = compare.compare_runs(a, b)
    change = c.changes[0]
    assert change.ratio == pytest.approx(1.3) and change.p_value > 0.05
    assert change.verdict == "unchanged" and "not significant" in change.why and not c.failed


def test_a_cell_that_fails_in_b_is_broken_and_fails_the_gate(tmp_path):
    a = _run(tmp_path / "a", {"t": (_cell(), _samples(1e-3)), "u": (_cell(phase="train_step"), _samples(1e-3))})
    b = _run(tmp_path / "b", {"t": (_cell(), "crashed"), "u": (_cell(phase="train_step"), _samples(1e-3))})
    c = compare.compare_runs(a, b)
    assert [(x.key, x.status_b) for x in c.broken] == [(_key(_cell()), "crashed")] and c.failed
    assert c.regressions == []


def test_a_cell_that_no_longer_matches_the_reference_is_broken(tmp_path):
    a = _run(tmp_path / "a", {"t": (_cell(), _samples(1e-3))})
    b = _run(tmp_path / "b", {"t": (_cell(), _samples(1e-3))})
    path = results.cell_path(b, _key(_cell()))
    doc = json.loads(path.read_text())
    doc.update(verified=False, check={"status": "fail", "first_divergence": "fc1 (forward)"})
    results.write_cell(b, _key(_cell()), doc)
    c = compare.compare_runs(a, b)
    assert [x.status_b for x in c.broken] == ["unverified"] and "fc1 (forward)" in c.broken[0].reason


def test_cells_in_one_run_only_are_listed_not_compared(tmp_path):
    a = _run(tmp_path / "a", {"t": (_cell(), _samples(1e-3)), "x": (_cell(batch_size=1), _samples(1e-3))})
    b = _run(tmp_path / "b", {"t": (_cell(), _samples(1e-3)), "y": (_cell(batch_size=8), _samples(1e-3))})
    c = compare.compare_runs(a, b)
    assert [x.key for x in c.changes] == [_key(_cell())]
    assert c.only_a == [_key(_cell(batch_size=1))] and c.only_b == [_key(_cell(batch_size=8))]


# --------------------------------------------------------------------------------------------
# incomparable runs


@pytest.mark.parametrize("field, change", [
    ("cpu.model", lambda e: e["cpu"].update(model="Other CPU 9000")),
    ("packages.torch", lambda e: e["packages"].update(torch="2.14.0")),
    ("thread_env.TF_ENABLE_ONEDNN_OPTS", lambda e: e["thread_env"].update(TF_ENABLE_ONEDNN_OPTS="0")),
])
def test_runs_from_different_machines_or_versions_are_refused_naming_the_field(tmp_path, field, change):
    env_b = json.loads(json.dumps(ENV))
    change(env_b)
    a = _run(tmp_path / "a", {"t": (_cell(), _samples(1e-3))})
    b = _run(tmp_path / "b", {"t": (_cell(), _samples(1e-3))}, env=env_b)
    with pytest.raises(compare.IncomparableRuns, match=field.replace(".", r"\.")):
        compare.compare_runs(a, b)
    result = CliRunner().invoke(cli, ["compare", str(a), str(b)])
    assert result.exit_code == 2 and field in result.output and "--force" in result.output
    forced = CliRunner().invoke(cli, ["compare", str(a), str(b), "--force"])
    assert forced.exit_code == 0, forced.output
    assert "compared with --force although these differ" in forced.output and field in forced.output


def test_a_different_commit_or_host_is_not_refused_but_shown(tmp_path):
    env_b = json.loads(json.dumps(ENV))
    env_b["git"]["commit"] = "b" * 40
    env_b["hostname"] = "runner-2"
    a = _run(tmp_path / "a", {"t": (_cell(), _samples(1e-3))})
    b = _run(tmp_path / "b", {"t": (_cell(), _samples(1e-3))}, env=env_b)
    result = CliRunner().invoke(cli, ["compare", str(a), str(b)])
    assert result.exit_code == 0, result.output
    assert "git.commit" in result.output and "runner-2" in result.output


def test_bad_arguments_exit_2(tmp_path):
    a = _run(tmp_path / "a", {"t": (_cell(), _samples(1e-3))})
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    for args in (["compare", str(a), str(not_a_run)], ["compare", str(a), str(a), "--min-effect", "-1"],
                 ["compare", str(a), str(a), "--alpha", "1.5"], ["compare", str(a), str(tmp_path / "missing")]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


def test_formats(tmp_path):
    a = _run(tmp_path / "a", {"t": (_cell(), _samples(1e-3, seed=1))})
    b = _run(tmp_path / "b", {"t": (_cell(), _samples(1.3e-3, seed=2))})
    as_json = CliRunner().invoke(cli, ["compare", str(a), str(b), "--format", "json"])
    assert as_json.exit_code == 1
    doc = json.loads(as_json.output)
    assert doc["regressions"] == [_key(_cell())] and doc["failed"] is True
    assert doc["cells"][0]["ratio"] == pytest.approx(1.3, rel=0.03)
    md = CliRunner().invoke(cli, ["compare", str(a), str(b), "--format", "markdown"])
    assert md.exit_code == 1 and "### Regressions (B slower)" in md.output and f"`{_key(_cell())}`" in md.output


# --------------------------------------------------------------------------------------------
# end to end: `bench run` twice, then `bench compare`


def _suite(path: Path) -> Path:
    path.write_text(
        'name = "busy"\nmodels = ["linear_regression", "mlp"]\nframeworks = ["steady", "slowed"]\n'
        'devices = ["cpu"]\ndtypes = ["float32"]\nmodes = ["eager"]\nbatch_sizes = [4]\n'
        'phases = ["forward", "forward_backward", "train_step"]\nthreads = [1]\nverify = false\n'
        "[timing]\nsamples = 24\nrounds = 6\nwarmup = 1\nmin_sample_s = 0.004\ncell_timeout_s = 60\n")
    return path


def _bench_run(suite: Path, results_dir: Path, slowdown: str | None) -> Path:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    env["FWBENCH_ADAPTERS"] = ",".join(f"{k}={v}" for k, v in busy.ADAPTERS.items())
    env.pop(busy.SLOWDOWN_VAR, None)
    if slowdown:
        env[busy.SLOWDOWN_VAR] = slowdown
    before = set(results_dir.iterdir()) if results_dir.exists() else set()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suite), "--results-dir",
                           str(results_dir), "--no-report"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = set(results_dir.iterdir()) - before
    return run


@pytest.fixture(scope="module")
def busy_runs(tmp_path_factory):
    """Three runs of one suite: a baseline, the same again, and one with 'slowed' 30% slower."""
    root = tmp_path_factory.mktemp("busy")
    suite = _suite(root / "busy.toml")
    out = root / "results"
    base = _bench_run(suite, out, None)
    same = _bench_run(suite, out, None)
    slowed = _bench_run(suite, out, "slowed=1.3")
    return base, same, slowed


def test_a_planted_30_percent_slowdown_is_reported_exactly(busy_runs):
    base, _, slowed = busy_runs
    c = compare.compare_runs(base, slowed)
    expected = {k for k, v in results.finished_cells(base).items() if v["cell"]["framework"] == "slowed"}
    assert len(expected) == 6
    assert {x.key for x in c.regressions} == expected, [(x.key, x.ratio, x.p_adjusted) for x in c.changes]
    assert c.improvements == [] and c.broken == []
    for x in c.regressions:
        assert x.ratio == pytest.approx(1.3, abs=0.1), x
    result = CliRunner().invoke(cli, ["compare", str(base), str(slowed)])
    assert result.exit_code == 1, result.output
    assert "6 regressions, 0 improvements, 0 broken, 6 unchanged" in result.output


def test_two_runs_without_a_change_report_nothing(busy_runs):
    base, same, _ = busy_runs
    c = compare.compare_runs(base, same)
    assert len(c.changes) == 12
    assert c.regressions == [] and c.improvements == [] and not c.failed
    result = CliRunner().invoke(cli, ["compare", str(base), str(same)])
    assert result.exit_code == 0, result.output
    assert "0 regressions, 0 improvements, 0 broken, 12 unchanged" in result.output


# --------------------------------------------------------------------------------------------
# relative to a control framework


def _drifting_run(path: Path, drift: float, slow: dict[str, float], seed: int) -> Path:
    """Every framework's samples scaled by a machine-wide drift that changes from round to round
    (the same factor for the samples of one round), and some frameworks slowed on their own."""
    rng = np.random.default_rng(seed)
    per_round = drift * (1 + 0.15 * rng.uniform(-1, 1, 12))  # the machine: +-15% from round to round
    cells = {}
    for fw, base in (("reference", 1e-3), ("torch", 2e-3), ("tensorflow", 3e-3)):
        jitter = 1 + 0.01 * rng.uniform(-1, 1, 12)
        cells[fw] = (_cell(framework=fw), list(base * slow.get(fw, 1.0) * per_round * jitter))
    return _run(path, cells)


def test_relative_to_a_control_cancels_a_machine_wide_slowdown(tmp_path):
    a = _drifting_run(tmp_path / "a", drift=1.0, slow={}, seed=1)
    b = _drifting_run(tmp_path / "b", drift=1.3, slow={"tensorflow": 1.25}, seed=2)
    absolute = compare.compare_runs(a, b)
    assert len(absolute.regressions) == 3  # everything is slower: the machine was
    relative = compare.compare_runs(a, b, relative_to="reference")
    assert [x.cell["framework"] for x in relative.regressions] == ["tensorflow"]
    assert relative.regressions[0].ratio == pytest.approx(1.25, rel=0.03)
    assert [x.cell["framework"] for x in relative.changes] == ["tensorflow", "torch"]  # not the control
    result = CliRunner().invoke(cli, ["compare", str(a), str(b), "--relative-to", "reference"])
    assert result.exit_code == 1 and "relative to reference's in the same round" in result.output


def test_relative_to_a_framework_a_run_lacks_exits_2(tmp_path):
    a = _run(tmp_path / "a", {"t": (_cell(), _samples(1e-3))})
    result = CliRunner().invoke(cli, ["compare", str(a), str(a), "--relative-to", "jax"])
    assert result.exit_code == 2 and "'jax'" in result.output and "torch" in result.output


# --------------------------------------------------------------------------------------------
# many cells at once


def test_holm_adjusts_by_rank_and_keeps_the_order():
    assert compare.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert compare.holm([]) == [] and compare.holm([0.5]) == [0.5]
    assert compare.holm([0.3, 0.4]) == [0.6, 0.6]  # capped at 1 only above 1, monotone in rank


def test_weak_evidence_in_many_cells_is_not_a_regression_after_correction(tmp_path):
    # 20 cells, each 5 samples 20% slower without overlap: p = 2/252 = 0.008 each, a false alarm
    # in 20 tests at alpha 0.05 is likely; Holm multiplies the smallest p by 20: 0.16, not below 0.05
    cells_a, cells_b = {}, {}
    for i in range(20):
        cell = _cell(batch_size=i + 1)
        cells_a[i] = (cell, [1.00e-3, 1.01e-3, 1.02e-3, 1.03e-3, 1.04e-3])
        cells_b[i] = (cell, [1.20e-3, 1.21e-3, 1.22e-3, 1.23e-3, 1.24e-3])
    a, b = _run(tmp_path / "a", cells_a), _run(tmp_path / "b", cells_b)
    corrected = compare.compare_runs(a, b)
    assert corrected.regressions == [] and not corrected.failed
    assert all(c.p_value == pytest.approx(2 / 252) and c.p_adjusted == pytest.approx(20 * 2 / 252)
               for c in corrected.changes)
    assert len(compare.compare_runs(a, b, correction="none").regressions) == 20
    result = CliRunner().invoke(cli, ["compare", str(a), str(b), "--correction", "none"])
    assert result.exit_code == 1 and "20 regressions" in result.output
