"""`bench ab`: one suite in two Python environments, their workers in the same rounds, verdicts paired.

Environment B is a second virtualenv that sees this one's packages (a .pth file), so that its
interpreter is another executable; the busy-waiting adapters of tests/harness/busy.py plant an
exact 30% slowdown of one framework in B's workers only (FWBENCH_TEST_SLOWDOWN_FOR).
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from harness import ab
from tests.harness import busy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env_b(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("env-b") / "venv"
    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "fwbench-test.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return folder


def _suite(path: Path) -> Path:
    path.write_text(
        'name = "ab"\nmodels = ["linear_regression", "mlp"]\nframeworks = ["steady", "slowed"]\ndevices = ["cpu"]\n'
        'dtypes = ["float32"]\nmodes = ["eager"]\nbatch_sizes = [4]\nphases = ["forward", "train_step"]\n'
        "threads = [1]\nverify = false\n"
        "[timing]\npasses = 2\nsamples = 4\nrounds = 4\nwarmup = 1\nmin_sample_s = 0.004\ncell_timeout_s = 60\n")
    return path


def _bench_ab(tmp_path: Path, env_b: Path, slowdown: str | None, *extra: str) -> subprocess.CompletedProcess:
    env = busy.environment(REPO, slowdown, only_for=str(env_b / "bin" / "python") if slowdown else None)
    return subprocess.run([sys.executable, "-m", "harness.cli", "ab", sys.executable, str(env_b),
                           str(_suite(tmp_path / "ab.toml")), "--results-dir", str(tmp_path / "results"), *extra],
                          env=env, capture_output=True, text=True, timeout=300)


def test_a_slowdown_planted_in_b_is_found_in_exactly_its_cells(tmp_path, env_b):
    proc = _bench_ab(tmp_path, env_b, "slowed=1.3", "--format", "json", "--passes", "6")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["paired"] is True and doc["format"] == 2
    slower = {c["key"] for c in doc["cells"] if c["verdict"] == "slower"}
    assert slower == {c["key"] for c in doc["cells"] if c["cell"]["framework"] == "slowed"}, doc["cells"]
    assert len(slower) == 4
    for c in doc["cells"]:
        assert c["unit"].startswith("paired") and not c["loops_differ"]  # B times A's loops
        if c["cell"]["framework"] == "slowed":
            assert c["ratio"] == pytest.approx(1.3, abs=0.05)
        else:  # never flagged; "same" needs every one of the 6 pass ratios within ±2%, which a noisy
            # VM does not always give (1 run in 4 here had one steady cell "unknown")
            assert c["verdict"] in ("same", "unknown") and c["ratio"] == pytest.approx(1.0, abs=0.05), c
    (folder,) = (tmp_path / "results").iterdir()
    assert json.loads((folder / ab.AB_FILE).read_text())["counts"]["slower"] == 4
    # each side is an ordinary run, with its own interpreter's environment
    a_meta = json.loads((folder / "a" / "run.json").read_text())
    b_meta = json.loads((folder / "b" / "run.json").read_text())
    assert b_meta["environment"]["python"]["executable"] == str(env_b / "bin" / "python")
    assert a_meta["ab"]["side"] == "a" and b_meta["ab"]["python"] == str(env_b / "bin" / "python")


def test_the_same_environment_twice_changes_nothing(tmp_path, env_b):
    proc = _bench_ab(tmp_path, env_b, None, "--passes", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 slower, 0 faster" in proc.stdout and "same rounds (bench ab)" in proc.stdout
    (folder,) = (tmp_path / "results").iterdir()
    for side in ab.SIDES:  # --passes overrides the suite's 2
        assert json.loads((folder / side / "run.json").read_text())["suite"]["timing"]["passes"] == 3
        cell = json.loads(next((folder / side / "cells").glob("mlp.slowed.*.json")).read_text())
        assert cell["passes_done"] == 3 and set(cell["sample_passes"]) == {0, 1, 2}
    # a cell's unit count is that of its CI's level: 3 passes, or 3 x 4 (pass, round) pairs
    for c in json.loads((folder / ab.AB_FILE).read_text())["cells"]:
        assert c["n_a"] == c["n_b"] == {"paired passes": 3, "paired rounds": 12}[c["unit"]], c


def test_an_environment_that_is_not_one_exits_2(tmp_path, env_b):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "ab", str(tmp_path), str(env_b), "smoke"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not a Python environment" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_the_command_line_threshold_is_the_module_s():
    from harness.cli import cli

    option = next(p for p in cli.commands["ab"].params if p.name == "min_effect")
    assert option.default == ab.AB_MIN_EFFECT == 0.02
