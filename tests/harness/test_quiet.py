"""Quiet neighbours: while one worker is timed, the others of the run cannot use a CPU.

A 'spinner' framework (tests/harness/busy.py) starts one never-sleeping thread per core as soon as
it builds a model, the worst case of an idle framework's thread pools. Beside it, a 'work'
framework's cell (fixed CPU work on every core, as a framework's pool does it) must measure what it
measures alone; and with the runner's
stopping of idle workers disabled, the same cell must measure slower, which shows that the check
can fail and that the spinner really spins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import results
from tests.harness import busy

REPO = Path(__file__).resolve().parents[2]

# The parent with Worker.pause made a no-op: the neighbours are left running, as before SIGSTOP.
_UNPROTECTED = ("import sys; import harness.workers as w; w.Worker.pause = lambda self: None; "
                "from harness.cli import main; sys.argv[0] = 'bench'; main()")


def _suite(path: Path, frameworks: list[str]) -> Path:
    path.write_text(
        f'name = "quiet"\nmodels = ["linear_regression"]\nframeworks = {json.dumps(frameworks)}\n'
        'devices = ["cpu"]\ndtypes = ["float32"]\nmodes = ["eager"]\nbatch_sizes = [4]\nphases = ["forward"]\n'
        "threads = [2]\nverify = false\n"
        "[timing]\npasses = 1\nsamples = 12\nrounds = 6\nwarmup = 1\nmin_sample_s = 0.005\ncell_timeout_s = 60\n")
    return path


def _work_median(tmp: Path, frameworks: list[str], *, protected: bool = True) -> float:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    env["FWBENCH_ADAPTERS"] = ",".join(f"{k}={v}" for k, v in busy.QUIET_ADAPTERS.items())
    out = tmp / "results"
    before = set(out.iterdir()) if out.exists() else set()
    suite = _suite(tmp / f"quiet-{len(frameworks)}-{protected}.toml", frameworks)
    head = [sys.executable, "-m", "harness.cli"] if protected else [sys.executable, "-c", _UNPROTECTED]
    proc = subprocess.run([*head, "run", str(suite), "--results-dir", str(out), "--no-report"], env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = set(out.iterdir()) - before
    table = results.load(run)
    return float(table.loc[table["framework"] == "work", "median_s"].iloc[0])


@pytest.mark.skipif(sys.platform != "linux", reason="SIGSTOP of process groups and PR_SET_PDEATHSIG: Linux")
def test_a_spinning_neighbour_does_not_slow_the_timed_cell(tmp_path):
    # Five runs of each setting, interleaved, and the fastest of each. Work on both cores of this
    # 2-vCPU VM runs in one of two modes from one process to the next (0.67 ms in one, 1.0-1.2 ms in
    # another; a CI once had two of three runs alone in the slow one, median 1.02 ms against 0.68
    # beside the stopped spinner). The mode is the process's luck, not the neighbour's doing, and the
    # fastest run of five is the fast mode unless all five drew the slow one. A spinner that kept a
    # share of the cores would slow every run, the fastest included.
    runs = [(_work_median(tmp_path, ["work"]), _work_median(tmp_path, ["work", "spinner"]),
             _work_median(tmp_path, ["work", "spinner"], protected=False)) for _ in range(5)]
    alone, beside, _ = (min(x) for x in zip(*runs, strict=True))
    # The control takes the middle run beside the running spinner, not its fastest: a CI once had one
    # of five at 0.73 ms beside the running spinner (for a reason this test does not see), the other
    # four at 1.17-1.64 ms. A spinner that takes the cores slows most runs, and the middle one with them.
    unprotected = sorted(one[2] for one in runs)[len(runs) // 2]
    print(f"\nwork alone {alone * 1e3:.3f} ms, beside a stopped spinner {beside * 1e3:.3f} ms "
          f"(fastest of 5 runs each), beside a running one {unprotected * 1e3:.3f} ms (middle of 5)")
    for one in runs:
        print("  one run: " + ", ".join(f"{t * 1e3:.3f} ms" for t in one))
    # Each worker is a session of its own, so the kernel's autogroups share the cores between the
    # processes, not their threads: a 1-thread cell would keep its core beside any spinner, which is
    # why the work uses every core.
    assert beside == pytest.approx(alone, rel=0.2)
    # The control: the spinner's threads take the cores when it is not stopped, in most runs.
    assert unprotected > 1.3 * alone
