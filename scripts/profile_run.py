"""Where does `bench run SUITE`'s wall time go? The suite run as `bench run` runs it, with the
runner's steps timed from the parent process, and each pass's side-by-side work (start-ups, the
first pass's checks, a later pass's builds) broken down by worker.

    python scripts/profile_run.py quick                # writes its run under a temporary folder
    python scripts/profile_run.py quick --results-dir results

Nothing is changed in what runs: the runner's own functions are wrapped with a clock, in this
process only (the workers are not touched), and the figures are printed with the machine. A
benchmark of the harness, never a test: the figures are for reading, on the machine they come from.
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness import results, runner, suites, workers  # noqa: E402

# What each wrapped step is, in the order the table prints them.
STEPS = {
    "start-ups": "the workers' start (the framework's import), side by side, each pass",
    "prepare": "the first pass's checks, a later pass's builds and first calls, side by side",
    "open": "each cell's open: build (first pass), first call (first pass), warm-up, calibration",
    "sample": "each round's request: its untimed call and its samples",
    "close": "each cell's close (peak memory)",
    "focus": "stopping and continuing the other workers before each request",
}


class Clock:
    def __init__(self) -> None:
        self.seconds: collections.Counter = collections.Counter()
        self.calls: collections.Counter = collections.Counter()
        self.passes: list[tuple[str, float, dict[str, float]]] = []  # (what, wall, {framework: worker seconds})

    def wrap(self, owner, name: str, step: str) -> None:
        inner = getattr(owner, name)

        @functools.wraps(inner)
        def timed(*args, **kwargs):
            t0 = time.monotonic()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[step] += time.monotonic() - t0
                self.calls[step] += 1

        setattr(owner, name, timed)

    def wrap_together(self) -> None:
        inner = workers.Pool.together

        @functools.wraps(inner)
        def together(pool, jobs, at_once):
            t0 = time.monotonic()
            replies = inner(pool, jobs, at_once)
            wall = time.monotonic() - t0
            ops = sorted({message.get("op", "?") for _, message, _ in jobs})
            if not ops:  # every worker already running (the first pass's came up for the peak measurement)
                return replies
            step = "start-ups" if ops == ["setup"] else "prepare" if ops == ["prepare"] else "+".join(ops)
            self.seconds[step] += wall
            self.calls[step] += 1
            each = {w.framework: float(r.get("seconds", float("nan"))) if isinstance(r, dict) else float("nan")
                    for w, r in replies.items()}
            self.passes.append((step, wall, each))
            return replies

        workers.Pool.together = together


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", help="a suite's name or path, as `bench run` takes it")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="keep the run here (default: a temporary folder)")
    args = parser.parse_args()
    try:
        suite = suites.load(args.suite)
    except suites.SuiteError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None

    clock = Clock()
    clock.wrap_together()
    for name, step in (("_open", "open"), ("_sample", "sample"), ("_close", "close")):
        clock.wrap(runner, name, step)
    clock.wrap(workers.Pool, "focus", "focus")

    with tempfile.TemporaryDirectory(prefix="fwbench-profile-") as tmp:
        out = args.results_dir or Path(tmp)
        t0 = time.monotonic()
        run_dir = runner.start_run(suite, out)
        runner.run_suite(suite, run_dir)
        wall = time.monotonic() - t0
        table = results.load(run_dir)
        cpu = (results.read(run_dir).meta.get("environment") or {}).get("cpu") or {}
        noisy, ok = int(table["noisy"].fillna(False).astype(bool).sum()), int((table["status"] == "ok").sum())

    print(f"\n{suite.name}: {len(table)} cells ({ok} ok, {noisy} noisy), {suite.timing.passes} passes, "
          f"{wall:.1f} s; {cpu.get('model')}, {cpu.get('logical_cores')} cores")
    print(f"\n{'step':<10} {'seconds':>8} {'share':>6} {'calls':>6}  what")
    # focus is called inside open and sample: listed, not added
    for step, what in STEPS.items():
        s = clock.seconds[step]
        print(f"{step:<10} {s:8.1f} {s / wall:6.0%} {clock.calls[step]:6d}  {what}")
    counted = sum(clock.seconds[s] for s in STEPS if s != "focus")
    print(f"{'the rest':<10} {wall - counted:8.1f} {(wall - counted) / wall:6.0%}         "
          "statistics, writing results, reading the reference's tensors")
    print("\nside by side (wall; each worker's own seconds, as it reported them):")
    for step, seconds, each in clock.passes:
        told = ", ".join(f"{fw} {s:.1f}" for fw, s in each.items() if s == s)
        print(f"  {step:<9} {seconds:6.1f} s" + (f"  ({told})" if told else ""))


if __name__ == "__main__":
    main()
