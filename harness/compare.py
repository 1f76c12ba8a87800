"""Two runs of the same cells side by side: what got slower, what got faster, and whether to believe it.

Every cell that finished ('ok') in both runs gets a verdict: slower, faster, same or unknown.

The unit is the pass. A run takes each cell's samples in independent passes (fresh processes, the
groups reshuffled: harness.runner), and samples of one pass share that pass's luck; so the ratio
B / A and its 95% CI come from the pass medians of the two runs (Welch's t on their logs:
harness.levels.unpaired_ratio), never from samples treated as independent. When neither run shows a
pass effect for the cell (the F test of harness.levels, p > POOL_P), its rounds are the units.

The verdict (harness.levels.verdict) reads the CI against a threshold: slower when the CI lies above
1 and the ratio beyond 1 + threshold; faster, the mirror image; same when the whole CI lies within
±threshold; unknown when the CI is too wide to tell: an honest answer, with the smallest change the
cell could have detected printed beside it (`detectable`, the CI's half-width), so that a reader
knows whether to add passes. No p-values and no multiple-testing correction: a verdict needs both
a CI that excludes no change and an effect past the threshold, and the threshold is set above what
identical code shows on the machine.

The threshold of a cell is the larger of `min_effect` (default 5%) and its kind's noise floor
(framework, phase, device) from a `bench noise` calibration of the machine (harness.noise): two runs
differ by more than either run's spread says, because the machine changes between them, and
only an A/A calibration measures by how much. relative_to='reference' divides each cell's round
medians by the control framework's in the same round (harness.relative), which cancels what hit the
whole machine; its thresholds then use the floors the calibration measured on such ratios
(`noise_relative`), or its floors of absolute times when it has none for that control.

Cells that ran in A but failed in B (error, crashed, timeout, oom), and cells whose equivalence
check passed in A but not in B, are listed as broken: a gate must not go green because a cell
stopped producing timings. `loops_differ` says when the two runs timed a cell with different
iterations per sample (`bench run --loops-from A` pins them).

Timings of two runs are comparable only on the same machine with the same framework versions and
the same speed-changing environment; `compare_runs` refuses other pairs (IncomparableRuns, naming
each field and both values) unless force=True.

`to_dict()` (bench compare --format json) is format 2: verdicts slower/faster/same/unknown with
their thresholds (format 1, before passes: regression/improvement/unchanged from Mann-Whitney).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from . import levels, metadata, noise, relative, results
from .cells import CELL_FIELDS, FAILED
from .errors import BadInput, UnknownName
from .results import Run

__all__ = ["DEFAULT_MIN_EFFECT", "FORMAT", "VERDICTS", "IncomparableRuns", "CellChange", "Broken", "Comparison",
           "compare_runs", "environment_differences", "explain"]

DEFAULT_MIN_EFFECT = 0.05
FORMAT = 2
VERDICTS = ("slower", "faster", "same", "unknown")


class IncomparableRuns(results.ResultsError):
    """Two runs whose timings are not comparable (different machine, versions or settings)."""


@dataclass(frozen=True, slots=True)
class CellChange:
    """One cell in both runs. Times in seconds per call; ratio = B / A (> 1: B slower), from pass medians."""

    key: str
    cell: dict
    median_a_s: float
    median_b_s: float
    ratio: float
    ci_low: float
    ci_high: float
    unit: str  # what the CI treats as independent: 'passes', 'rounds' (no pass effect) or 'samples'
    n_a: int  # units of A and of B
    n_b: int
    threshold: float  # the change that counts: max(min_effect, the kind's noise floor)
    detectable: float  # the smallest change this comparison could resolve (the CI's half-width)
    noisy: bool  # either run flagged the cell noisy (its own CI wider than ±10%)
    loops_differ: bool  # the runs timed different iterations per sample
    verdict: str  # one of VERDICTS
    why: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Broken:
    """A cell that worked in A and does not in B: it failed, or it no longer matches the reference."""

    key: str
    cell: dict
    status_a: str
    status_b: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Comparison:
    run_a: str
    run_b: str
    min_effect: float
    changes: list[CellChange]
    broken: list[Broken]
    only_a: list[str]  # keys finished in A only (missing, skipped or failed in B and not broken)
    only_b: list[str]
    differences: list[tuple[str, Any, Any]]  # (field, value in A, value in B): machine, versions, settings
    forced: bool
    notes: list[tuple[str, Any, Any]] = field(default_factory=list)  # differences that do not refuse: commits
    relative_to: str | None = None  # the control framework, when times are ratios to it (compare_runs)
    noise: str | None = None  # the `bench noise` calibration whose floors raised the thresholds
    paired: bool = False  # bench ab: A and B measured in the same rounds, ratios paired by round
    noise_relative: bool = False  # the floors were measured on times relative to relative_to, as compared

    def _having(self, verdict: str) -> list[CellChange]:
        return [c for c in self.changes if c.verdict == verdict]

    @property
    def slower(self) -> list[CellChange]:
        return sorted(self._having("slower"), key=lambda c: -c.ratio)

    @property
    def faster(self) -> list[CellChange]:
        return sorted(self._having("faster"), key=lambda c: c.ratio)

    @property
    def same(self) -> list[CellChange]:
        return self._having("same")

    @property
    def unknown(self) -> list[CellChange]:
        return sorted(self._having("unknown"), key=lambda c: -c.detectable)

    regressions = slower  # the names of format 1
    improvements = faster

    @property
    def failed(self) -> bool:
        """What a CI gate fails on: a cell slower past its threshold, or a broken cell."""
        return bool(self.slower or self.broken)

    def counts(self) -> dict[str, int]:
        return {**{v: len(self._having(v)) for v in VERDICTS}, "broken": len(self.broken)}

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "run_a": self.run_a, "run_b": self.run_b, "min_effect": self.min_effect,
            "noise": self.noise, "paired": self.paired, "forced": self.forced, "failed": self.failed,
            "relative_to": self.relative_to, "noise_relative": self.noise_relative,
            "counts": self.counts(),
            "differences": [{"field": f, "a": a, "b": b} for f, a, b in self.differences],
            "notes": [{"field": f, "a": a, "b": b} for f, a, b in self.notes],
            "slower": [c.key for c in self.slower], "faster": [c.key for c in self.faster],
            "unknown": [c.key for c in self.unknown],
            "regressions": [c.key for c in self.slower], "improvements": [c.key for c in self.faster],
            "broken": [b.to_dict() for b in self.broken],
            "only_a": self.only_a, "only_b": self.only_b,
            "cells": [c.to_dict() for c in self.changes],
        }


def environment_differences(run_a: dict, run_b: dict) -> tuple[list[tuple[str, Any, Any]], list[tuple[str, Any, Any]]]:
    """(what makes the runs' timings incomparable, what differs without mattering to timings).

    The first list holds metadata.COMPARED_FIELDS (CPU, cores, GPUs, BLAS, framework versions) and
    every speed-changing environment variable (metadata.THREAD_ENV_VARS: thread counts, oneDNN, XLA
    flags, TF32) that differ; the second, the git commits of fwbench and the host names.
    """
    env_a, env_b = run_a.get("environment") or {}, run_b.get("environment") or {}
    refusing = [(f, metadata.lookup(env_a, f, None), metadata.lookup(env_b, f, None))
                for f in metadata.same_machine(env_a, env_b)]
    threads_a, threads_b = env_a.get("thread_env") or {}, env_b.get("thread_env") or {}
    for name in metadata.THREAD_ENV_VARS:
        if name in threads_a and name in threads_b and threads_a[name] != threads_b[name]:
            refusing.append((f"thread_env.{name}", threads_a[name], threads_b[name]))
    informing = []
    for dotted in ("git.commit", "git.dirty", "hostname", "fwbench"):
        a, b = metadata.lookup(env_a, dotted, None), metadata.lookup(env_b, dotted, None)
        if a != b:
            informing.append((dotted, a, b))
    return refusing, informing


def compare_runs(run_a: Run | str | os.PathLike, run_b: Run | str | os.PathLike, *,
                 min_effect: float = DEFAULT_MIN_EFFECT, force: bool = False, relative_to: str | None = None,
                 noise_file: str | os.PathLike | None = None, use_noise: bool = True) -> Comparison:
    """Compare run B with run A (the baseline), cell by cell. See the module docstring.

    run_a and run_b are Runs already read (harness.results.read), or their folders, read here once.
    With relative_to (a framework both runs timed, e.g. 'reference'), each cell's round medians are
    divided by that framework's cell of the same workload in the same (pass, round), and those
    ratios are compared instead of seconds: a slowdown of the whole machine between the runs
    cancels out. The control framework's own cells are not compared. noise_file: a `bench noise`
    calibration; without one, the newest beside run A made on the same machine (unless not use_noise).

    Raises IncomparableRuns when the runs' machines, versions or settings differ and not force;
    BadInput for a min_effect, relative_to or noise file that cannot be used;
    results.ResultsError for a folder that is not a run.
    """
    if not 0 <= min_effect < 10:
        raise BadInput(f"min_effect must be a fraction between 0 and 10, got {min_effect}: e.g. 0.05 for 5%",
                       key="min_effect", value=min_effect)
    run_a = run_a if isinstance(run_a, Run) else results.read(run_a)
    run_b = run_b if isinstance(run_b, Run) else results.read(run_b)
    name_a, name_b = str(run_a.path), str(run_b.path)
    refusing, informing = environment_differences(run_a.meta, run_b.meta)
    if refusing and not force:
        lines = "\n".join(f"  {f}: {a!r} in A, {b!r} in B" for f, a, b in refusing)
        raise IncomparableRuns(f"{name_a} and {name_b} were measured on different machines, framework versions "
                               f"or settings, so their timings are not comparable:\n{lines}\n"
                               "compare them anyway with --force (the differences are printed with the result)")
    if noise_file is None and use_noise:
        noise_file = noise.find(run_a.path, run_a.meta.get("environment") or {})
    calibration = noise.read(noise_file) if noise_file is not None else None
    a = run_a.table(raw=True).set_index("key", drop=False)
    b = run_b.table(raw=True).set_index("key", drop=False)
    if relative_to is not None:
        for name, df in (("A", a), ("B", b)):
            if not ((df["framework"] == relative_to) & (df["status"] == "ok")).any():
                found = tuple(sorted(df["framework"].unique()))
                raise UnknownName("framework", relative_to, found or ("none",), key="--relative-to",
                                  hint=f": run {name} has no finished cell of it")
        a, b = relative.relative_table(a, relative_to), relative.relative_table(b, relative_to)
    changes, broken = [], []
    for key in a.index.intersection(b.index):
        ra, rb = a.loc[key], b.loc[key]
        cell = {name: results.plain(ra[name]) for name in CELL_FIELDS}
        if ra["status"] == "ok" and rb["status"] in FAILED:
            broken.append(Broken(key, cell, "ok", rb["status"], str(rb["reason"])))
            continue
        no_longer_verified = results.flag(ra["verified"]) is True and results.flag(rb["verified"]) is False
        if ra["status"] == "ok" and rb["status"] == "ok" and no_longer_verified:
            broken.append(Broken(key, cell, "ok", "unverified",
                                 f"no longer matches the reference: first divergence {rb['first_divergence']}"))
            continue
        if ra["status"] == "ok" and rb["status"] == "ok" and ra["samples_s"] and rb["samples_s"]:
            threshold = max(min_effect, noise.floor_for(calibration, cell, relative_to))
            changes.append(_judge(key, cell, ra, rb, threshold))
    ok_a = set(a.index[a["status"] == "ok"])
    ok_b = set(b.index[b["status"] == "ok"])
    compared = {c.key for c in changes} | {x.key for x in broken}
    return Comparison(
        run_a=name_a, run_b=name_b, min_effect=min_effect,
        changes=sorted(changes, key=lambda c: c.key), broken=sorted(broken, key=lambda x: x.key),
        only_a=sorted(ok_a - compared), only_b=sorted(ok_b - compared),
        differences=refusing, forced=force and bool(refusing), notes=informing, relative_to=relative_to,
        noise=str(noise_file) if noise_file is not None else None,
        noise_relative=relative_to is not None and noise.has_relative(calibration, relative_to))


def explain(r: levels.RatioStats, verdict: str, threshold: float) -> str:
    """A verdict's reason, for people: the change, its CI and the threshold it was read against."""
    change = f"{r.ratio - 1:+.1%} [{r.ci_low - 1:+.1%}, {r.ci_high - 1:+.1%}]"
    if verdict in ("slower", "faster"):
        return f"{change}, past the threshold of {threshold:.0%}"
    if verdict == "same":
        return f"{change}, within ±{threshold:.0%}"
    if r.significant():
        return f"{change}: a change, smaller than the threshold of {threshold:.0%} or not surely past it"
    return f"{change}: too wide to tell against ±{threshold:.0%}; add passes"


def _judge(key: str, cell: dict, ra, rb, threshold: float) -> CellChange:
    r = levels.unpaired_ratio(*relative.labels(ra), *relative.labels(rb), unit="auto")
    verdict = levels.verdict(r, threshold)
    loops_a, loops_b = results.plain(ra["iters_per_sample"]), results.plain(rb["iters_per_sample"])
    return CellChange(key=key, cell=cell, median_a_s=float(ra["median_s"]), median_b_s=float(rb["median_s"]),
                      ratio=r.ratio, ci_low=r.ci_low, ci_high=r.ci_high, unit=r.unit, n_a=r.n_a, n_b=r.n_b,
                      threshold=threshold, detectable=r.detectable,
                      noisy=bool(results.flag(ra["noisy"]) or results.flag(rb["noisy"])),
                      loops_differ=loops_a is not None and loops_b is not None and loops_a != loops_b,
                      verdict=verdict, why=explain(r, verdict, threshold))
