"""Are `bench compare`'s verdicts right on this machine? The figures of issue 10's "Done when", measured.

    python scripts/validate_verdicts.py                    # 10 pairs: about 30 min on 2 cores
    python scripts/validate_verdicts.py --pairs 3          # a first look
    python scripts/validate_verdicts.py --part alone       # only the alone-against-together check
    python scripts/validate_verdicts.py --part ab --pairs 2 --ab-passes 10 --threads 1   # README's bench ab columns

It runs a small suite (mlp, lenet5, mnist_cnn; the reference and torch; batch 32 and 128;
forward_backward and train_step: 24 cells, 3 passes) through `bench run`, many times, and reports:

- bench noise: 3 runs of their own calibrate the machine's floors first (as a user would), and
  every comparison below uses that calibration.
- A/A: 2 x PAIRS runs of identical code, compared in disjoint pairs: the share of cells flagged
  slower or faster (the false alarms) and how many comparisons came out all green.
- planted: PAIRS runs in which torch is exactly 10% slower (scripts/planted_slowdown.py busy-waits
  10% of each timed call's own duration), and PAIRS with 5%, each compared with an A/A run: the
  share of torch's cells flagged slower, and of the reference's cells flagged at all.
- bench ab: PAIRS runs of `bench ab --passes AB_PASSES` (15) with the same environment on both
  sides (A/A), and PAIRS each with torch 5% and 10% slower in B only (B is a second virtualenv
  seeing this one's packages), at bench ab's defaults (threshold 2%): the share of torch's cells
  flagged slower, of the others flagged at all.
- alone: one run of the reference, torch and TensorFlow together (mlp and mnist_cnn train steps
  among them), and one of each framework alone: every cell's median together against alone, and
  whether they differ by more than the two runs' CIs allow (no artifact of a neighbour may reach a
  headline).

Every run is a normal `bench run` in a subprocess; the compare is harness.compare at its defaults
(threshold 5%, raised to the calibration's floors), and again with --relative-to reference, from
the same runs. Nothing is asserted: the figures are printed, as a table, with the machine they come from.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness import compare, metadata, noise, results  # noqa: E402

PLANTED = "torch-planted"

SUITE = """name = "verdicts"
models = ["mlp", "lenet5", "mnist_cnn"]
frameworks = {frameworks}
devices = ["cpu"]
dtypes = ["float32"]
modes = ["eager"]
batch_sizes = [32, 128]
phases = {phases}
threads = [{threads}]
verify = false

[timing]
passes = {passes}
samples = 6
rounds = 3
max_rounds = 9
warmup = 3
cell_timeout_s = 120
"""


THREADS = 2  # the suites' threads per cell (--threads)


def _suite(folder: Path, name: str, frameworks: list[str], phases: list[str], passes: int, models=None) -> Path:
    text = SUITE.format(frameworks=json.dumps(frameworks), phases=json.dumps(phases), passes=passes, threads=THREADS)
    if models:
        text = text.replace('models = ["mlp", "lenet5", "mnist_cnn"]', f"models = {json.dumps(models)}")
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def _run(suite: Path, out: Path, slowdown: float = 0.0) -> Path:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO / "scripts"), str(REPO), env.get("PYTHONPATH"))))
    env["FWBENCH_ADAPTERS"] = f"{PLANTED}=planted_slowdown:PlantedTorchAdapter"
    env["FWBENCH_PLANTED_SLOWDOWN"] = str(slowdown)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    before = set(out.iterdir()) if out.exists() else set()
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suite), "--results-dir", str(out),
                           "--no-report"], env=env, capture_output=True, text=True)
    (run,) = set(out.iterdir()) - before
    if proc.returncode not in (0, 1):
        raise SystemExit(f"bench run {suite} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    print(f"  {run.name}: {time.monotonic() - start:.0f} s{f' (torch {slowdown:+.0%})' if slowdown else ''}",
          flush=True)
    return run


def _flags(c: compare.Comparison, framework: str | None = None) -> tuple[int, int]:
    """(cells flagged slower or faster, cells compared), of one framework or of all."""
    cells = [x for x in c.changes if framework is None or x.cell["framework"] == framework]
    return sum(x.verdict in ("slower", "faster") for x in cells), len(cells)


def _pct(k: int, n: int) -> str:
    return f"{k} of {n} ({k / n:.1%})" if n else "none"


def verdicts(folder: Path, pairs: int, passes: int, calibration_runs: int) -> list[tuple[str, str]]:
    suite = _suite(folder, "verdicts", ["reference", PLANTED], ["forward_backward", "train_step"], passes)
    out = folder / "verdicts"
    rows = []
    print(f"bench noise: {calibration_runs} runs of their own", flush=True)
    calibration = noise.write(noise.calibrate([_run(suite, folder / "noise") for _ in range(calibration_runs)]),
                              folder / "noise")
    doc = noise.read(calibration)
    rows.append(("noise floors (bench noise, 95% quantile)",
                 ", ".join(f"{k.split('.cpu')[0]} {v:.1%}" for k, v in doc["floors"].items())))
    relative_floors = (doc.get("relative") or {}).get("reference", {}).get("floors", {})
    rows.append(("noise floors relative to the reference (what --relative-to reference uses)",
                 ", ".join(f"{k.split('.cpu')[0]} {v:.1%}" for k, v in relative_floors.items()) or "none"))
    print(f"A/A: {2 * pairs} runs", flush=True)
    base = [_run(suite, out) for _ in range(2 * pairs)]
    planted = {s: [] for s in (0.10, 0.05)}
    for slowdown in planted:
        print(f"planted {slowdown:.0%}: {pairs} runs", flush=True)
        planted[slowdown] = [_run(suite, out, slowdown) for _ in range(pairs)]
    for relative in (None, "reference"):
        tag = " (--relative-to reference)" if relative else ""

        def cmp(a, b, relative=relative):
            return compare.compare_runs(a, b, noise_file=calibration, relative_to=relative)

        comparisons = [cmp(base[2 * i], base[2 * i + 1]) for i in range(pairs)]
        flagged = [_flags(c) for c in comparisons]
        k, n = sum(f[0] for f in flagged), sum(f[1] for f in flagged)
        green = sum(f[0] == 0 and not c.failed for f, c in zip(flagged, comparisons, strict=True))
        unknown = sum(len(c.unknown) for c in comparisons)
        rows.append((f"identical code{tag}: cells flagged slower or faster", _pct(k, n)))
        rows.append((f"identical code{tag}: comparisons all green", f"{green} of {pairs}"))
        rows.append((f"identical code{tag}: cells unknown (CI too wide to tell)", _pct(unknown, n)))
        for slowdown, runs in planted.items():
            cs = [cmp(base[2 * i], runs[i]) for i in range(pairs)]
            hit = sum(sum(x.verdict == "slower" for x in c.changes if x.cell["framework"] == PLANTED) for c in cs)
            total = sum(_flags(c, PLANTED)[1] for c in cs)
            rows.append((f"planted {slowdown:.0%}{tag}: torch's cells flagged slower", _pct(hit, total)))
            if not relative:  # relative to the reference, the reference's own cells are not compared
                other = [_flags(c, "reference") for c in cs]
                rows.append((f"planted {slowdown:.0%}{tag}: the reference's cells flagged",
                             _pct(sum(o[0] for o in other), sum(o[1] for o in other))))
            ratios = sorted(x.ratio for c in cs for x in c.changes if x.cell["framework"] == PLANTED)
            if ratios:
                rows.append((f"planted {slowdown:.0%}{tag}: torch's B/A (median, min-max)",
                             f"{ratios[len(ratios) // 2]:.3f} ({ratios[0]:.3f}-{ratios[-1]:.3f})"))
    return rows


def _env_b(folder: Path) -> Path:
    """A second virtualenv that sees this one's packages (a .pth file): another interpreter, the
    same frameworks, so that a slowdown can be planted in its workers only."""
    import site
    import venv

    env = folder / "env-b"
    if not (env / "bin" / "python").exists():
        venv.EnvBuilder(with_pip=False).create(env)
        code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        purelib = subprocess.run([str(env / "bin" / "python"), "-c", code], capture_output=True, text=True,
                                 check=True).stdout.strip()
        (Path(purelib) / "fwbench-validate.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return env


def _ab(suite: Path, out: Path, env_b: Path, slowdown: float, passes: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO / "scripts"), str(REPO), env.get("PYTHONPATH"))))
    env["FWBENCH_ADAPTERS"] = f"{PLANTED}=planted_slowdown:PlantedTorchAdapter"
    env["FWBENCH_PLANTED_SLOWDOWN"] = str(slowdown)
    env["FWBENCH_PLANTED_FOR"] = str(env_b / "bin" / "python")
    before = set(out.iterdir()) if out.exists() else set()
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "ab", sys.executable, str(env_b), str(suite),
                           "--results-dir", str(out), "--passes", str(passes), "--format", "json"],
                          env=env, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"bench ab failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    (folder,) = set(out.iterdir()) - before
    print(f"  {folder.name}: {time.monotonic() - start:.0f} s{f' (torch {slowdown:+.0%} in B)' if slowdown else ''}",
          flush=True)
    return json.loads(proc.stdout)


def ab_part(folder: Path, pairs: int, passes: int) -> list[tuple[str, str]]:
    suite = _suite(folder, "ab", ["reference", PLANTED], ["forward_backward", "train_step"], 3)
    env_b = _env_b(folder)
    rows = []
    for slowdown in (0.0, 0.05, 0.10):
        print(f"bench ab, torch {slowdown:+.0%} in B: {pairs} runs", flush=True)
        docs = [_ab(suite, folder / "ab", env_b, slowdown, passes) for _ in range(pairs)]
        cells = [c for d in docs for c in d["cells"]]
        mine = [c for c in cells if c["cell"]["framework"] == PLANTED]
        other = [c for c in cells if c["cell"]["framework"] != PLANTED]
        flagged = sum(c["verdict"] in ("slower", "faster") for c in other)
        if slowdown:
            hit = sum(c["verdict"] == "slower" for c in mine)
            rows.append((f"bench ab, planted {slowdown:.0%} in B: torch's cells flagged slower", _pct(hit, len(mine))))
            ratios = sorted(c["ratio"] for c in mine)
            rows.append((f"bench ab, planted {slowdown:.0%} in B: torch's B/A (median, min-max)",
                         f"{ratios[len(ratios) // 2]:.3f} ({ratios[0]:.3f}-{ratios[-1]:.3f})"))
        else:
            flagged += sum(c["verdict"] in ("slower", "faster") for c in mine)
            other = cells
            green = sum(not d["failed"] and not d["counts"]["faster"] for d in docs)
            rows.append(("bench ab, A against A: runs all green", f"{green} of {pairs}"))
            rows.append(("bench ab, A against A: cells unknown",
                         _pct(sum(c["verdict"] == "unknown" for c in cells), len(cells))))
        rows.append((f"bench ab, {'A against A' if not slowdown else f'planted {slowdown:.0%}'}: "
                     f"{'cells' if not slowdown else 'the reference' + chr(39) + 's cells'} flagged",
                     _pct(flagged, len(other))))
    return rows


def alone(folder: Path, passes: int) -> list[tuple[str, str]]:
    frameworks = ["reference", "torch", "tensorflow"]
    phases = ["forward", "train_step"]
    models = ["mlp", "mnist_cnn"]
    out = folder / "alone"
    print("alone against together: 1 + 3 runs", flush=True)
    together = _run(_suite(folder, "together", frameworks, phases, passes, models), out)
    rows, worst = [], []
    beyond = total = 0
    for fw in frameworks:
        solo = _run(_suite(folder, f"alone-{fw}", [fw], phases, passes, models), out)
        c = compare.compare_runs(solo, together)
        for x in c.changes:
            total += 1
            # beyond what the CIs allow: the ratio's own CI excludes 1 by more than the threshold
            beyond += x.verdict in ("slower", "faster")
            worst.append((abs(x.ratio - 1), x.key, x.ratio, x.ci_low, x.ci_high))
    worst.sort(reverse=True)
    rows.append(("together vs alone: cells that differ (slower or faster)", _pct(beyond, total)))
    for _, key, ratio, low, high in worst[:3]:
        rows.append((f"  largest: {key}", f"{ratio - 1:+.1%} [{low - 1:+.1%}, {high - 1:+.1%}]"))
    table = results.load(together)
    for model in ("mlp", "mnist_cnn"):
        key = f"{model}.tensorflow.cpu.float32.eager.b128.train_step.t2"
        row = table[table["key"] == key]
        if len(row):
            rows.append((f"  together: {key}", f"{float(row['median_s'].iloc[0]) * 1e3:.2f} ms"))
    return rows


def main() -> None:
    global THREADS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10, help="pairs of A/A runs, and planted runs of each size")
    parser.add_argument("--passes", type=int, default=3, help="passes per run")
    parser.add_argument("--ab-passes", type=int, default=15,
                        help="passes per side in the bench ab part: the number `bench ab --passes` is advised at")
    parser.add_argument("--part", choices=["all", "verdicts", "ab", "alone"], default="all")
    parser.add_argument("--calibration-runs", type=int, default=3, help="runs of `bench noise` before the pairs")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs in this folder")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads per cell in every suite (1: what a 2-vCPU VM measures most steadily)")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    THREADS = args.threads
    folder = args.keep or Path(tempfile.mkdtemp(prefix="fwbench-verdicts-"))
    folder.mkdir(parents=True, exist_ok=True)
    env = metadata.environment()
    started = time.monotonic()
    rows: list[tuple[str, str]] = []
    if args.part in ("all", "verdicts"):
        rows += verdicts(folder, args.pairs, args.passes, args.calibration_runs)
        _table(rows)  # already, in case the next part fails
    if args.part in ("all", "ab"):
        rows += ab_part(folder, args.pairs, args.ab_passes)
        _table(rows)
    if args.part in ("all", "alone"):
        rows += alone(folder, args.passes)
    cpu = env.get("cpu") or {}
    print(f"\nmachine: {cpu.get('model')}, {cpu.get('logical_cores')} cores; torch "
          f"{(env.get('packages') or {}).get('torch')}; {args.threads} thread(s) a cell; {args.pairs} pairs, "
          f"{args.passes} passes a run "
          f"({args.ab_passes} in bench ab); "
          f"{time.monotonic() - started:.0f} s; runs in {folder}")
    _table(rows)


def _table(rows: list[tuple[str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"| {'measured':<{width}} | |\n|{'-' * (width + 2)}|---|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |", flush=True)


if __name__ == "__main__":
    main()
