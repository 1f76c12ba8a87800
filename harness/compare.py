"""Two runs of the same cells side by side: what got slower, what got faster, and whether to believe it.

For every cell that finished ('ok') in both runs, the ratio of medians B / A with its bootstrap 95%
CI (harness.stats.ratio_ci) and a two-sided Mann-Whitney U test on the two sets of samples
(harness.stats.mann_whitney_u). A cell is a regression when B is slower by at least the minimum
effect (ratio >= 1 + min_effect) and the test says the difference is real (p < alpha); an
improvement when B is faster by as much, on the same log scale (ratio <= 1 / (1 + min_effect)).
Both conditions matter: with many samples the test finds differences of 1% that nobody should act
on, and on a noisy machine a 15% difference between two medians can be chance.

A suite compares a hundred cells or more at once; at alpha = 0.05 a handful would pass the test by
chance alone. The p-values are therefore Holm-corrected by default (correction='holm'), which
bounds the chance of any false alarm in the whole comparison by alpha, whatever the dependence
between cells; correction='none' tests each cell on its own.

What no test on the samples can see is a change of the machine between the runs: the samples of
one run share its state (other tenants, clock speed, thermal limits), so the test compares machine
states as much as code. Two runs of the same code on this project's shared 2-core VM differ in many
cells by 20-50%. relative_to='reference' divides every sample by the control framework's sample of
the same round, which cancels whatever hit the whole machine. A minimum effect larger than the
machine's run-to-run noise (measure it: compare two runs of the same code) is the other defence.

Cells that ran in A but failed in B (error, crashed, timeout, oom), and cells whose equivalence
check passed in A but not in B, are listed as broken: a gate must not go green because a cell
stopped producing timings.

Timings of two runs are comparable only on the same machine with the same framework versions and
the same speed-changing environment; `compare_runs` refuses other pairs (IncomparableRuns, naming
each field and both values) unless force=True.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import metadata, results, stats
from .cells import CELL_FIELDS, FAILED, WORKLOAD_FIELDS
from .errors import BadInput, UnknownName
from .results import Run

__all__ = ["DEFAULT_MIN_EFFECT", "DEFAULT_ALPHA", "CORRECTIONS", "IncomparableRuns", "CellChange", "Broken",
           "Comparison", "compare_runs", "holm", "environment_differences"]

DEFAULT_MIN_EFFECT = 0.10
DEFAULT_ALPHA = 0.05
CORRECTIONS = ("holm", "none")


class IncomparableRuns(results.ResultsError):
    """Two runs whose timings are not comparable (different machine, versions or settings)."""


@dataclass(frozen=True, slots=True)
class CellChange:
    """One cell in both runs. Times in seconds per call; ratio = median B / median A (> 1: B slower)."""

    key: str
    cell: dict
    median_a_s: float
    median_b_s: float
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float  # two-sided Mann-Whitney U
    p_adjusted: float  # after the correction for testing every cell (Holm), what the verdict uses
    test: str  # how p was computed: 'exact' or 'normal' (harness.stats.MannWhitney.method)
    n_a: int
    n_b: int
    noisy: bool  # either run flagged the cell noisy (CV >= 10% or IQR >= 25% of the median)
    verdict: str  # 'regression', 'improvement' or 'unchanged'
    why: str  # for 'unchanged': what it missed; otherwise the evidence

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
    alpha: float
    changes: list[CellChange]
    broken: list[Broken]
    only_a: list[str]  # keys finished in A only (missing, skipped or failed in B and not broken)
    only_b: list[str]
    differences: list[tuple[str, Any, Any]]  # (field, value in A, value in B): machine, versions, settings
    forced: bool
    notes: list[tuple[str, Any, Any]] = field(default_factory=list)  # differences that do not refuse: commits
    relative_to: str | None = None  # the control framework, when times are ratios to it (compare_runs)
    correction: str = "holm"  # for testing many cells at once: 'holm' or 'none'

    @property
    def regressions(self) -> list[CellChange]:
        return sorted((c for c in self.changes if c.verdict == "regression"), key=lambda c: -c.ratio)

    @property
    def improvements(self) -> list[CellChange]:
        return sorted((c for c in self.changes if c.verdict == "improvement"), key=lambda c: c.ratio)

    @property
    def failed(self) -> bool:
        """What a CI gate fails on: a regression that passed both tests, or a broken cell."""
        return bool(self.regressions or self.broken)

    def to_dict(self) -> dict:
        return {
            "run_a": self.run_a, "run_b": self.run_b, "min_effect": self.min_effect, "alpha": self.alpha,
            "forced": self.forced, "failed": self.failed, "relative_to": self.relative_to,
            "correction": self.correction,
            "differences": [{"field": f, "a": a, "b": b} for f, a, b in self.differences],
            "notes": [{"field": f, "a": a, "b": b} for f, a, b in self.notes],
            "regressions": [c.key for c in self.regressions],
            "improvements": [c.key for c in self.improvements],
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
                 min_effect: float = DEFAULT_MIN_EFFECT, alpha: float = DEFAULT_ALPHA, force: bool = False,
                 relative_to: str | None = None, correction: str = "holm") -> Comparison:
    """Compare run B with run A (the baseline), cell by cell. See the module docstring.

    run_a and run_b are Runs already read (harness.results.read), or their folders, read here once.
    With relative_to (a framework both runs timed, e.g. 'reference'), each cell's time is divided,
    sample by sample, by the time of that framework's cell of the same workload in the same
    round, and those ratios are compared instead of seconds: a slowdown of the whole machine
    between the runs (another tenant, a slower host, thermal limits) cancels out, and what is left
    is the framework's own change. The control framework's own cells are not compared.

    Raises IncomparableRuns when the runs' machines, versions or settings differ and not force;
    BadInput for a min_effect, alpha, correction or relative_to that cannot be used;
    results.ResultsError for a folder that is not a run.
    """
    if not 0 <= min_effect < 10:
        raise BadInput(f"min_effect must be a fraction between 0 and 10, got {min_effect}: e.g. 0.10 for 10%",
                       key="min_effect", value=min_effect)
    if not 0 < alpha < 1:
        raise BadInput(f"alpha must lie strictly between 0 and 1, got {alpha}: e.g. 0.05", key="alpha", value=alpha)
    if correction not in CORRECTIONS:
        raise UnknownName("correction", correction, CORRECTIONS)
    run_a = run_a if isinstance(run_a, Run) else results.read(run_a)
    run_b = run_b if isinstance(run_b, Run) else results.read(run_b)
    name_a, name_b = str(run_a.path), str(run_b.path)
    refusing, informing = environment_differences(run_a.meta, run_b.meta)
    if refusing and not force:
        lines = "\n".join(f"  {f}: {a!r} in A, {b!r} in B" for f, a, b in refusing)
        raise IncomparableRuns(f"{name_a} and {name_b} were measured on different machines, framework versions "
                               f"or settings, so their timings are not comparable:\n{lines}\n"
                               "compare them anyway with --force (the differences are printed with the result)")
    a = run_a.table(raw=True).set_index("key", drop=False)
    b = run_b.table(raw=True).set_index("key", drop=False)
    if relative_to is not None:
        for name, df in (("A", a), ("B", b)):
            if not ((df["framework"] == relative_to) & (df["status"] == "ok")).any():
                found = tuple(sorted(df["framework"].unique()))
                raise UnknownName("framework", relative_to, found or ("none",), key="--relative-to",
                                  hint=f": run {name} has no finished cell of it")
        a, b = _relative(a, relative_to), _relative(b, relative_to)
    measured, broken = [], []
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
            measured.append(_measure(key, cell, ra, rb))
    adjusted = holm([m["p_value"] for m in measured]) if correction == "holm" else [m["p_value"] for m in measured]
    changes = [_judge(m, p, min_effect, alpha) for m, p in zip(measured, adjusted, strict=True)]
    ok_a = set(a.index[a["status"] == "ok"])
    ok_b = set(b.index[b["status"] == "ok"])
    compared = {c.key for c in changes} | {x.key for x in broken}
    return Comparison(
        run_a=name_a, run_b=name_b, min_effect=min_effect, alpha=alpha,
        changes=sorted(changes, key=lambda c: c.key), broken=sorted(broken, key=lambda x: x.key),
        only_a=sorted(ok_a - compared), only_b=sorted(ok_b - compared),
        differences=refusing, forced=force and bool(refusing), notes=informing, relative_to=relative_to,
        correction=correction)


def _relative(df, control: str):
    """df without the control framework's cells, every other ok cell's samples divided by the
    control's sample of the same round (the i-th sample of two cells of one workload come from
    the same interleaved round), its median the median of those ratios. A cell whose workload the
    control did not finish, or whose sample count differs from the control's, becomes 'skipped'."""
    df = df.copy()
    ok = df[(df["framework"] == control) & (df["status"] == "ok")]
    controls: dict[tuple, list] = {}
    # the control's eager cell when it has several modes
    for _, r in ok.assign(_other=ok["mode"] != "eager").sort_values("_other", kind="stable").iterrows():
        controls.setdefault(tuple(r[c] for c in WORKLOAD_FIELDS), list(r["samples_s"]))
    for key, row in df.iterrows():
        if row["framework"] == control or row["status"] != "ok":
            continue
        base = controls.get(tuple(row[c] for c in WORKLOAD_FIELDS))
        samples = list(row["samples_s"])
        if base is None or len(base) != len(samples):
            why = "no finished cell" if base is None else f"{len(base)} samples against {len(samples)}"
            df.at[key, "status"] = "skipped"
            df.at[key, "reason"] = f"not compared relative to {control}: {why} of {control} for this workload"
            continue
        ratios = [x / y for x, y in zip(samples, base, strict=True) if y > 0]
        df.at[key, "samples_s"] = ratios
        df.at[key, "median_s"] = float(np.median(ratios))
    return df[df["framework"] != control]


def _measure(key: str, cell: dict, ra, rb) -> dict:
    samples_a, samples_b = list(ra["samples_s"]), list(rb["samples_s"])
    ratio, low, high = stats.ratio_ci(samples_b, samples_a)
    test = stats.mann_whitney_u(samples_b, samples_a)
    return dict(key=key, cell=cell, median_a_s=float(ra["median_s"]), median_b_s=float(rb["median_s"]),
                ratio=ratio, ci_low=low, ci_high=high, p_value=test.p, test=test.method,
                n_a=len(samples_a), n_b=len(samples_b),
                noisy=bool(results.flag(ra["noisy"]) or results.flag(rb["noisy"])))


def _judge(m: dict, p: float, min_effect: float, alpha: float) -> CellChange:
    ratio = m["ratio"]
    slower, faster = ratio >= 1 + min_effect, ratio <= 1 / (1 + min_effect)
    if p < alpha and slower:
        verdict, why = "regression", f"{ratio - 1:+.0%}, p={p:.2g}"
    elif p < alpha and faster:
        verdict, why = "improvement", f"{ratio - 1:+.0%}, p={p:.2g}"
    elif slower or faster:
        verdict, why = "unchanged", f"{ratio - 1:+.0%} but not significant (p={p:.2g} >= {alpha:g})"
    else:
        verdict, why = "unchanged", f"{ratio - 1:+.1%}, within the minimum effect of {min_effect:.0%}"
    return CellChange(**m, p_adjusted=p, verdict=verdict, why=why)


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given: rejecting every p_adjusted < alpha keeps
    the chance of any false alarm among all the tests at most alpha (for any dependence between them)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
