"""`bench ab ENV_A ENV_B SUITE`: one suite in two Python environments, measured in the same rounds.

Two separate runs compare machine states as much as code: the machine drifts between them, and only
a noise floor (`bench noise`) keeps that from reading as a change. Here the two environments' workers
(each in its own interpreter, e.g. two virtualenvs with torch 2.12 and 2.13, or two versions of a
plugin) take turns within every round of one run (asv's `continuous --interleave-rounds`, Chromium
Pinpoint), so that whatever the machine does in a round it does to both. Each cell's verdict then
comes from the ratio of B's round median to A's in the same (pass, round), a paired ratio
(harness.levels.paired_ratio: from 6 passes on, the median of the passes' ratios and the sign
test's interval around it), and the verdict rule of `bench compare` (harness.levels.verdict) at a
threshold of AB_MIN_EFFECT (2%) rather than compare's 5%.

What pairing cannot cancel is a process's own luck in a pass, which hits one side only. Two kinds
were measured on a 2-vCPU VM (AMD EPYC, 2026-12-07). glibc's adjusting mmap threshold put a torch
process's large tensors on fresh pages, faulted in on every call, or on reused heap memory,
depending on its allocation history: 45% apart for the process's whole life in torch's mnist_cnn
at batch 128 (harness/workers.py now fixes the threshold in every worker). And with 2 threads on 2
vCPUs, a process ran in one of two modes (torch's lenet5 forward at batch 128: 3.3 or 4.9 ms),
which one thread does not (6.2-6.4 ms in every process). Only more passes draw that luck again, so
`--passes` sets their number; README, "bench ab", has what 10 and 15 passes found at 1 and 2
threads.

The folder results/<run-id>-ab/ holds two ordinary runs, `a/` and `b/` (each with its own
environment's metadata in run.json, so `bench report` reads either), and `ab.json`: the
comparison, in `bench compare --format json`'s format 2, with `"paired": true`. Both environments
run this fwbench's own code (harness and reference_impl are put on their path, nothing else of
this environment's), with their own frameworks and NumPy.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from . import levels, results, runner
from .cells import CELL_FIELDS, FAILED
from .compare import Broken, CellChange, Comparison, environment_differences, explain
from .errors import BadInput
from .suites import Suite
from .workers import code_path

__all__ = ["SIDES", "AB_FILE", "AB_MIN_EFFECT", "python_of", "start", "run", "judge"]

SIDES = ("a", "b")
AB_FILE = "ab.json"
# The threshold of a paired verdict. bench compare's 5% is set above what two separate runs of the
# same code differ by; in the same rounds that drift cancels: identical environments measured here
# (A against A, 3 runs of 10 passes, Intel Xeon 2 vCPUs) stayed within ±1.7% in the reference's
# cells and ±4.6% in torch's, whose wide CIs said so. 2% leaves a planted 5% room to clear it.
AB_MIN_EFFECT = 0.02


def python_of(env: str | os.PathLike, name: str) -> str:
    """The interpreter of an environment given as a virtualenv folder (its bin/python) or as a Python
    executable; BadInput naming the argument otherwise."""
    path = Path(env)
    candidates = [path / "bin" / "python", path / "Scripts" / "python.exe"] if path.is_dir() else [path]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate.absolute())
    raise BadInput(f"{env}: not a Python environment (a virtualenv folder with bin/python, or a Python "
                   "executable)", key=name, value=str(env))


def _environment(python: str, name: str) -> dict:
    """metadata.environment() as that interpreter sees it: its Python, NumPy and frameworks."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (code_path(), os.environ.get("PYTHONPATH"))))}
    code = "import json, harness.metadata as m; print(json.dumps(m.environment()))"
    proc = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise BadInput(f"{python} cannot run fwbench's code (it needs at least NumPy): {proc.stderr.strip()[-600:]}",
                       key=name, value=python)
    return json.loads(proc.stdout)


def start(suite: Suite, pythons: dict[str, str], results_dir: str | os.PathLike = "results") -> Path:
    """The folder of an A/B run: a/ and b/, each an ordinary run with its environment's metadata."""
    folder = Path(results_dir) / results.new_run_id(f"{suite.name}-ab", results_dir=results_dir)
    for side in SIDES:
        run_dir = runner.start_run(suite, folder, run_id=side)
        meta = results.read_run(run_dir)
        meta["environment"] = _environment(pythons[side], f"ENV_{side.upper()}")
        meta["ab"] = {"side": side, "python": pythons[side], "other": "b" if side == "a" else "a"}
        results.write_run(run_dir, meta)
    return folder


def run(suite: Suite, folder: str | os.PathLike, progress=None) -> dict:
    """Measure both sides, every cell of each in the same groups and rounds; {side: RunSummary}."""
    folder = Path(folder)
    sides = {}
    for side in SIDES:
        meta = results.read_run(folder / side)
        sides[side] = (folder / side, meta["ab"]["python"])
    return runner.run_sides(suite, sides, progress=progress)


def judge(folder: str | os.PathLike, min_effect: float = AB_MIN_EFFECT) -> Comparison:
    """Each cell's verdict from the paired ratio of B's round medians to A's; written to ab.json."""
    folder = Path(folder)
    run_a, run_b = results.read(folder / "a"), results.read(folder / "b")
    changes, broken = [], []
    for key in sorted(set(run_a.records) & set(run_b.records)):
        ra, rb = run_a.records[key], run_b.records[key]
        cell = {name: getattr(ra.cell, name) for name in CELL_FIELDS}
        if ra.status == "ok" and rb.status in FAILED:
            broken.append(Broken(key, cell, "ok", rb.status, rb.reason))
            continue
        if ra.status != "ok" or rb.status != "ok" or not ra.samples_s or not rb.samples_s:
            continue
        a = levels.round_medians(ra.samples_s, *ra.sample_labels())
        b = levels.round_medians(rb.samples_s, *rb.sample_labels())
        if len(set(a) & set(b)) < 2:
            continue
        r = levels.paired_ratio(a, b)
        # n_a/n_b count the units of the CI's level, as in bench compare: passes, not (pass, round) pairs
        n = len({p for p, _ in set(a) & set(b)}) if r.unit == "passes" else r.n_units
        verdict = levels.verdict(r, min_effect)
        sa, sb = ra.level_stats(), rb.level_stats()
        changes.append(CellChange(
            key=key, cell=cell, median_a_s=sa.median, median_b_s=sb.median, ratio=r.ratio, ci_low=r.ci_low,
            ci_high=r.ci_high, unit=f"paired {r.unit}", n_a=n, n_b=n, threshold=min_effect,
            detectable=r.detectable, noisy=sa.noisy or sb.noisy,
            loops_differ=ra.iters_per_sample != rb.iters_per_sample, verdict=verdict,
            why=explain(r, verdict, min_effect)))
    differences, notes = environment_differences(run_a.meta, run_b.meta)
    ok_a = {k for k, r in run_a.records.items() if r.status == "ok"}
    ok_b = {k for k, r in run_b.records.items() if r.status == "ok"}
    compared = {c.key for c in changes} | {x.key for x in broken}
    comparison = Comparison(
        run_a=str(run_a.path), run_b=str(run_b.path), min_effect=min_effect, changes=changes, broken=broken,
        only_a=sorted(ok_a - compared), only_b=sorted(ok_b - compared), differences=[], forced=False,
        notes=differences + notes, paired=True)
    results.atomic_write_text(folder / AB_FILE, json.dumps(comparison.to_dict(), indent=2) + "\n")
    return comparison
