"""The development scripts run end to end on a tiny suite (their figures are for reading, never asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_profile_run_prints_where_the_time_went(tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text('name = "tiny"\nmodels = ["linear_regression"]\nframeworks = ["reference"]\n'
                     'devices = ["cpu"]\ndtypes = ["float32"]\nmodes = ["eager"]\nbatch_sizes = [4]\n'
                     'phases = ["forward"]\nthreads = [1]\nverify = true\n'
                     "[timing]\npasses = 2\nsamples = 2\nrounds = 2\nwarmup = 1\nmin_sample_s = 0.001\n")
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "profile_run.py"), str(suite),
                           "--results-dir", str(tmp_path / "results")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "tiny: 1 cells (1 ok" in out and "2 passes" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for step in ("start-ups", "prepare", "open", "sample", "close"):
        assert step in lines, out
    # two passes, two prepares side by side: the first pass's check, the second's build (the first
    # pass's worker may have started already, for the peak measurement)
    assert out.count("  prepare") == 2 and out.count("  start-ups") >= 1, out
    assert int(lines["open"].split()[3]) == 2 and int(lines["sample"].split()[3]) == 4, out  # 2 opens, 2 rounds each
    (run,) = (tmp_path / "results").iterdir()
    assert (run / "run.json").exists()


def test_profile_run_names_a_suite_it_cannot_find(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "profile_run.py"), "no-such-suite"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2 and "no-such-suite" in done.stderr and "Traceback" not in done.stderr
