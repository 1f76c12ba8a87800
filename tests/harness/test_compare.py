"""`bench compare`: the verdict per cell, the refusal of incomparable runs, and the exit status CI gates on.

The unit tests write small run folders with chosen samples. The end-to-end tests run a suite twice
through `bench run` with the busy-waiting adapters of tests/harness/busy.py, once with a planted
30% slowdown in one framework, and check that exactly that framework's cells come out as
regressions, and that two runs without a change give none.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness import compare, noise, results, stats
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
    """n timings around median, with a relative spread (uniform jitter): a run from before passes."""
    rng = np.random.default_rng(seed)
    return list(median * (1 + spread * rng.uniform(-1, 1, n)))


def _passes(median: float, *, passes: int = 3, rounds: int = 4, per_round: int = 2, pass_sd: float = 0.01,
            round_sd: float = 0.01, seed: int = 0) -> dict:
    """Samples of a run with passes: log-normal pass and round effects, each sample labelled."""
    rng = np.random.default_rng(seed)
    samples, labels_p, labels_r = [], [], []
    for p in range(passes):
        offset = rng.normal(0, pass_sd)
        for r in range(rounds):
            level = median * np.exp(offset + rng.normal(0, round_sd))
            for _ in range(per_round):
                samples.append(float(level * np.exp(rng.normal(0, 0.003))))
                labels_p.append(p)
                labels_r.append(r)
    return {"samples_s": samples, "sample_passes": labels_p, "sample_rounds": labels_r, "passes_done": passes}


def _cell(model="mlp", framework="torch", phase="forward", batch_size=32) -> dict:
    return {"model": model, "framework": framework, "device": "cpu", "dtype": "float32", "mode": "eager",
            "batch_size": batch_size, "phase": phase, "threads": 2}


def _key(cell: dict) -> str:
    return ".".join(str(cell[f]) for f in ("model", "framework", "device", "dtype", "mode")) + \
        f".b{cell['batch_size']}.{cell['phase']}.t{cell['threads']}"


def _run(path: Path, cells: dict, env: dict | None = None) -> Path:
    """A run folder: cells {name: (cell, samples, or _passes(...), or a failure status)}."""
    results.write_run(path, {"suite": {"name": "t"}, "environment": env or ENV, "peak_gflops": {}})
    for cell, outcome in cells.values():
        doc = {"cell": cell, "status": "ok", "reason": "", "verified": True, "iters_per_sample": 10}
        if isinstance(outcome, str):
            doc.update(status=outcome, reason=f"it {outcome}", samples_s=[], verified=None)
        elif isinstance(outcome, dict):
            doc.update(outcome)
        else:
            doc["samples_s"] = outcome
        results.write_cell(path, _key(cell), doc)
    return path


# --------------------------------------------------------------------------------------------
# verdicts


def test_a_30_percent_slowdown_is_slower_and_an_unchanged_cell_is_the_same(tmp_path):
    cells_a = {"t": (_cell(framework="torch"), _passes(1e-3, seed=1)),
               "f": (_cell(framework="tensorflow"), _passes(2e-3, seed=2))}
    cells_b = {"t": (_cell(framework="torch"), _passes(1.3e-3, seed=3)),
               "f": (_cell(framework="tensorflow"), _passes(2e-3, seed=4))}
    c = compare.compare_runs(_run(tmp_path / "a", cells_a), _run(tmp_path / "b", cells_b))
    assert [x.key for x in c.slower] == [_key(_cell(framework="torch"))]
    assert c.faster == [] and c.broken == [] and c.failed
    slower = c.slower[0]
    assert slower.ratio == pytest.approx(1.3, rel=0.03) and slower.ci_low > 1.2 and slower.threshold == 0.05
    same = next(x for x in c.changes if x.cell["framework"] == "tensorflow")
    assert same.verdict == "same" and "within ±5%" in same.why and same.ci_high < 1.05
    assert c.counts() == {"slower": 1, "faster": 0, "same": 1, "unknown": 0, "broken": 0}


def test_a_faster_cell_is_faster_and_does_not_fail_the_gate(tmp_path):
    a = _run(tmp_path / "a", {"t": (_cell(), _passes(1e-3, seed=1))})
    b = _run(tmp_path / "b", {"t": (_cell(), _passes(0.7e-3, seed=2))})
    c = compare.compare_runs(a, b)
    assert [x.key for x in c.faster] == [_key(_cell())] and c.slower == [] and not c.failed


def test_a_real_change_below_the_threshold_is_not_slower(tmp_path):
    # 3% slower, measured to +-1%: certainly a change, and too small to count at 5%
    a = _run(tmp_path / "a", {"t": (_cell(), _passes(1e-3, pass_sd=0.002, round_sd=0.002, seed=1))})
    b = _run(tmp_path / "b", {"t": (_cell(), _passes(1.03e-3, pass_sd=0.002, round_sd=0.002, seed=2))})
    change = compare.compare_runs(a, b).changes[0]
    assert change.ci_low > 1 and change.verdict == "same" and not compare.compare_runs(a, b).failed
    assert compare.compare_runs(a, b, min_effect=0.01).changes[0].verdict == "slower"


def test_a_change_the_passes_cannot_resolve_is_unknown_and_says_what_could_be_detected(tmp_path):
    # 20% apart, but the passes of each run differ by as much: three passes cannot tell
    a = _run(tmp_path / "a", {"t": (_cell(), _passes(1e-3, pass_sd=0.2, seed=5))})
    b = _run(tmp_path / "b", {"t": (_cell(), _passes(1.2e-3, pass_sd=0.2, seed=6))})
    c = compare.compare_runs(a, b)
    change = c.changes[0]
    assert change.verdict == "unknown" and change.unit == "passes" and (change.n_a, change.n_b) == (3, 3)
    assert change.detectable > 0.2 and "add passes" in change.why and not c.failed
    out = CliRunner().invoke(cli, ["compare", str(a), str(b)]).output
    assert "1 unknown" in out and "could detect" in out


def test_samples_of_one_pass_are_not_independent_evidence(tmp_path):
    """The flat view (24 samples a side, 3 pass offsets of sd 10%) would call this change certain;
    with the pass as the unit it is not: the verdict must not be slower."""
    a = _run(tmp_path / "a", {"t": (_cell(), _passes(1e-3, pass_sd=0.1, round_sd=0.003, seed=4))})
    b = _run(tmp_path / "b", {"t": (_cell(), _passes(1e-3, pass_sd=0.1, round_sd=0.003, seed=104))})
    change = compare.compare_runs(a, b).changes[0]
    flat_low, flat_high = stats.ratio_ci(results.read(b).records[_key(_cell())].samples_s,
                                         results.read(a).records[_key(_cell())].samples_s)[1:]
    assert not flat_low <= 1 <= flat_high  # what treating samples as independent concludes
    assert change.unit == "passes" and change.ci_low <= 1 <= change.ci_high and change.verdict != "slower"


def test_a_run_from_before_passes_is_compared_by_its_samples(tmp_path):
    a = _run(tmp_path / "a", {"t": (_cell(), _samples(1e-3, seed=1))})
    b = _run(tmp_path / "b", {"t": (_cell(), _samples(1.3e-3, seed=2))})
    change = compare.compare_runs(a, b).changes[0]
    assert change.unit == "rounds" and change.verdict == "slower"  # one pass whose rounds are its samples


def test_different_iterations_per_sample_are_said(tmp_path):
    a = _run(tmp_path / "a", {"t": (_cell(), _passes(1e-3, seed=1))})
    b = _run(tmp_path / "b", {"t": (_cell(), {**_passes(1e-3, seed=2), "iters_per_sample": 20})})
    c = compare.compare_runs(a, b)
    assert c.changes[0].loops_differ
    assert "--loops-from" in CliRunner().invoke(cli, ["compare", str(a), str(b)]).output


def test_a_cell_that_fails_in_b_is_broken_and_fails_the_gate(tmp_path):
    a = _run(tmp_path / "a", {"t": (_cell(), _passes(1e-3)), "u": (_cell(phase="train_step"), _passes(1e-3))})
    b = _run(tmp_path / "b", {"t": (_cell(), "crashed"), "u": (_cell(phase="train_step"), _passes(1e-3))})
    c = compare.compare_runs(a, b)
    assert [(x.key, x.status_b) for x in c.broken] == [(_key(_cell()), "crashed")] and c.failed
    assert c.slower == []


def test_a_cell_that_no_longer_matches_the_reference_is_broken(tmp_path):
    a = _run(tmp_path / "a", {"t": (_cell(), _passes(1e-3))})
    b = _run(tmp_path / "b", {"t": (_cell(), _passes(1e-3))})
    path = results.cell_path(b, _key(_cell()))
    doc = json.loads(path.read_text())
    doc.update(verified=False, check={"status": "fail", "first_divergence": "fc1 (forward)"})
    results.write_cell(b, _key(_cell()), doc)
    c = compare.compare_runs(a, b)
    assert [x.status_b for x in c.broken] == ["unverified"] and "fc1 (forward)" in c.broken[0].reason


def test_cells_in_one_run_only_are_listed_not_compared(tmp_path):
    a = _run(tmp_path / "a", {"t": (_cell(), _passes(1e-3)), "x": (_cell(batch_size=1), _passes(1e-3))})
    b = _run(tmp_path / "b", {"t": (_cell(), _passes(1e-3)), "y": (_cell(batch_size=8), _passes(1e-3))})
    c = compare.compare_runs(a, b)
    assert [x.key for x in c.changes] == [_key(_cell())]
    assert c.only_a == [_key(_cell(batch_size=1))] and c.only_b == [_key(_cell(batch_size=8))]


# --------------------------------------------------------------------------------------------
# the noise floor of a machine: bench noise


def test_a_calibration_raises_the_threshold_of_its_kind_only(tmp_path):
    torch_cell, tf_cell = _cell(framework="torch"), _cell(framework="tensorflow")
    a = _run(tmp_path / "runs" / "a", {"t": (torch_cell, _passes(1e-3, seed=1)), "f": (tf_cell, _passes(1e-3, seed=2))})
    b = _run(tmp_path / "runs" / "b", {"t": (torch_cell, _passes(1.15e-3, seed=3)),
                                       "f": (tf_cell, _passes(1.15e-3, seed=4))})
    assert len(compare.compare_runs(a, b).slower) == 2  # no calibration: 15% > 5%
    doc = {"format": 1, "kind": "noise", "environment": ENV, "floors": {"tensorflow.forward.cpu": 0.25},
           "pairs": {"tensorflow.forward.cpu": 10}, "floor_all": 0.02, "quantile": 0.95}
    path = noise.write(doc, tmp_path / "runs")
    c = compare.compare_runs(a, b)  # found beside run A: same machine
    assert c.noise == str(path)
    by_fw = {x.cell["framework"]: x for x in c.changes}
    assert by_fw["torch"].verdict == "slower" and by_fw["torch"].threshold == 0.05  # floor_all 2% < 5%
    assert by_fw["tensorflow"].threshold == 0.25 and by_fw["tensorflow"].verdict != "slower"
    assert compare.compare_runs(a, b, use_noise=False).noise is None
    other = json.loads(json.dumps(ENV))
    other["cpu"]["model"] = "Other CPU"
    path.unlink()
    noise.write({**doc, "environment": other}, tmp_path / "runs")
    assert compare.compare_runs(a, b).noise is None  # another machine's calibration is not used


def test_noise_floors_are_the_quantile_of_the_a_a_ratios(tmp_path):
    runs = [_run(tmp_path / f"r{i}", {"t": (_cell(), _samples(m, seed=i))}) for i, m in enumerate((1e-3, 1.1e-3, 1e-3))]
    doc = noise.calibrate(runs)
    medians = [float(np.median(_samples(m, seed=i))) for i, m in enumerate((1e-3, 1.1e-3, 1e-3))]
    logs = sorted(abs(np.log(medians[j] / medians[i])) for i in range(3) for j in range(i + 1, 3))
    assert doc["pairs"] == {"torch.forward.cpu": 3}
    assert doc["floors"]["torch.forward.cpu"] == pytest.approx(np.expm1(np.quantile(logs, 0.95)), abs=1e-4)
    result = CliRunner().invoke(cli, ["noise", "--of", str(runs[0]), "--of", str(runs[1])])
    assert result.exit_code == 0 and "torch.forward.cpu" in result.output, result.output
    assert list(tmp_path.glob("noise-*.json"))
    assert CliRunner().invoke(cli, ["noise", "--of", str(runs[0])]).exit_code == 2  # one run: no pair
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    result = CliRunner().invoke(cli, ["compare", str(runs[0]), str(runs[1]), "--noise", str(bad)])
    assert result.exit_code == 2 and "not a noise calibration" in result.output and "bad.json" in result.output


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
                 ["compare", str(a), str(tmp_path / "missing")]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


def test_formats(tmp_path):
    a = _run(tmp_path / "a", {"t": (_cell(), _passes(1e-3, seed=1))})
    b = _run(tmp_path / "b", {"t": (_cell(), _passes(1.3e-3, seed=2))})
    as_json = CliRunner().invoke(cli, ["compare", str(a), str(b), "--format", "json"])
    assert as_json.exit_code == 1
    doc = json.loads(as_json.output)
    assert doc["format"] == 2 and doc["counts"]["slower"] == 1
    assert doc["slower"] == doc["regressions"] == [_key(_cell())] and doc["failed"] is True
    cell = doc["cells"][0]
    assert cell["ratio"] == pytest.approx(1.3, rel=0.03) and cell["verdict"] == "slower"
    assert {"threshold", "detectable", "unit", "loops_differ", "ci_low", "ci_high"} <= set(cell)
    md = CliRunner().invoke(cli, ["compare", str(a), str(b), "--format", "markdown"])
    assert md.exit_code == 1 and "### Slower in B" in md.output and f"`{_key(_cell())}`" in md.output
    old = CliRunner().invoke(cli, ["compare", str(a), str(b), "--alpha", "0.01"])  # format 1's option
    assert old.exit_code == 1 and "no longer used" in old.output


# --------------------------------------------------------------------------------------------
# end to end: `bench run` twice, then `bench compare`


def _suite(path: Path) -> Path:
    path.write_text(
        'name = "busy"\nmodels = ["linear_regression", "mlp"]\nframeworks = ["steady", "slowed"]\n'
        'devices = ["cpu"]\ndtypes = ["float32"]\nmodes = ["eager"]\nbatch_sizes = [4]\n'
        'phases = ["forward", "forward_backward", "train_step"]\nthreads = [1]\nverify = false\n'
        "[timing]\npasses = 3\nsamples = 6\nrounds = 3\nwarmup = 1\nmin_sample_s = 0.004\ncell_timeout_s = 60\n")
    return path


def _bench_run(suite: Path, results_dir: Path, slowdown: str | None) -> Path:
    env = busy.environment(REPO, slowdown)
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
    assert {x.key for x in c.slower} == expected, [(x.key, x.ratio, x.why) for x in c.changes]
    assert c.faster == [] and c.broken == []
    for x in c.slower:
        assert x.ratio == pytest.approx(1.3, abs=0.1), x
    result = CliRunner().invoke(cli, ["compare", str(base), str(slowed)])
    assert result.exit_code == 1, result.output
    assert "12 cells compared (threshold 5%): 6 slower, 0 faster" in result.output


def test_two_runs_without_a_change_report_nothing(busy_runs):
    base, same, _ = busy_runs
    c = compare.compare_runs(base, same)
    assert len(c.changes) == 12
    assert c.slower == [] and c.faster == [] and not c.failed, [(x.key, x.why) for x in c.changes]
    result = CliRunner().invoke(cli, ["compare", str(base), str(same)])
    assert result.exit_code == 0, result.output
    assert "0 slower, 0 faster" in result.output


# --------------------------------------------------------------------------------------------
# relative to a control framework


def _drifting_run(path: Path, drift: float, slow: dict[str, float], seed: int) -> Path:
    """Every framework's rounds scaled by a machine-wide drift that changes from round to round (the
    same factor for every framework's samples of one (pass, round)), and some frameworks slowed on
    their own."""
    rng = np.random.default_rng(seed)
    per_round = drift * (1 + 0.15 * rng.uniform(-1, 1, 12))  # the machine: +-15% from round to round
    labels = {"sample_passes": [u // 4 for u in range(12)], "sample_rounds": [u % 4 for u in range(12)]}
    cells = {}
    for fw, base in (("reference", 1e-3), ("torch", 2e-3), ("tensorflow", 3e-3)):
        jitter = 1 + 0.01 * rng.uniform(-1, 1, 12)
        cells[fw] = (_cell(framework=fw), {"samples_s": list(base * slow.get(fw, 1.0) * per_round * jitter),
                                           **labels})
    return _run(path, cells)


def test_relative_to_a_control_cancels_a_machine_wide_slowdown(tmp_path):
    a = _drifting_run(tmp_path / "a", drift=1.0, slow={}, seed=1)
    b = _drifting_run(tmp_path / "b", drift=1.3, slow={"tensorflow": 1.25}, seed=2)
    absolute = compare.compare_runs(a, b)
    assert {x.verdict for x in absolute.changes} <= {"slower", "unknown"} and absolute.slower  # the machine was
    relative = compare.compare_runs(a, b, relative_to="reference")
    assert [x.cell["framework"] for x in relative.slower] == ["tensorflow"]
    assert relative.slower[0].ratio == pytest.approx(1.25, rel=0.03)
    assert [x.cell["framework"] for x in relative.changes] == ["tensorflow", "torch"]  # not the control
    assert next(x for x in relative.changes if x.cell["framework"] == "torch").verdict == "same"
    result = CliRunner().invoke(cli, ["compare", str(a), str(b), "--relative-to", "reference"])
    assert result.exit_code == 1 and "relative to reference's in the same round" in result.output


def test_a_calibration_measures_floors_relative_to_each_control_and_compare_uses_them(tmp_path):
    # three A/A runs on a machine that drifts 0%, +20% and -15% between them: the absolute floors see
    # the drift, the floors relative to the reference do not
    runs = [_drifting_run(tmp_path / "cal" / f"r{i}", drift=d, slow={}, seed=10 + i)
            for i, d in enumerate((1.0, 1.2, 0.85))]
    doc = noise.calibrate(runs)
    assert doc["floors"]["torch.forward.cpu"] > 0.3  # |log(1.2 / 0.85)| = 0.34
    assert set(doc["relative"]) == {"reference", "torch", "tensorflow"}
    rel = doc["relative"]["reference"]
    assert set(rel["floors"]) == {"torch.forward.cpu", "tensorflow.forward.cpu"}
    assert rel["pairs"]["torch.forward.cpu"] == 3
    assert rel["floors"]["torch.forward.cpu"] < 0.05 and rel["floor_all"] < 0.05
    path = noise.write(doc, tmp_path / "cal")
    a = _drifting_run(tmp_path / "a", drift=1.0, slow={}, seed=1)
    b = _drifting_run(tmp_path / "b", drift=1.1, slow={"tensorflow": 1.25}, seed=2)
    relative = compare.compare_runs(a, b, relative_to="reference", noise_file=path)
    assert relative.noise_relative and relative.to_dict()["noise_relative"] is True
    assert {x.cell["framework"]: x.threshold for x in relative.changes} == {"tensorflow": 0.05, "torch": 0.05}
    assert [x.cell["framework"] for x in relative.slower] == ["tensorflow"]
    # absolute times keep the absolute floors: the 25% is within the drift identical code showed
    absolute = compare.compare_runs(a, b, noise_file=path)
    assert not absolute.noise_relative and all(x.threshold > 0.3 for x in absolute.changes)
    assert absolute.slower == []
    # a calibration from before the relative floors: the absolute ones, said so
    old = noise.write({k: v for k, v in doc.items() if k != "relative"}, tmp_path / "old")
    fallback = compare.compare_runs(a, b, relative_to="reference", noise_file=old)
    assert not fallback.noise_relative and all(x.threshold > 0.3 for x in fallback.changes)
    result = CliRunner().invoke(cli, ["compare", str(a), str(b), "--relative-to", "reference", "--noise", str(old)])
    assert "it has no floors relative to reference" in result.output, result.output
    result = CliRunner().invoke(cli, ["noise", *[x for r in runs for x in ("--of", str(r))]])
    assert result.exit_code == 0 and "relative to reference (bench compare --relative-to reference):" in result.output


def test_relative_to_a_framework_a_run_lacks_exits_2(tmp_path):
    a = _run(tmp_path / "a", {"t": (_cell(), _samples(1e-3))})
    result = CliRunner().invoke(cli, ["compare", str(a), str(a), "--relative-to", "jax"])
    assert result.exit_code == 2 and "'jax'" in result.output and "torch" in result.output
