"""The summary of a run: for every workload its contenders fastest first, each with its time relative
to the fastest and the bootstrap 95% CI of that ratio; the headline workloads; what failed, was
skipped, is noisy or did not match the reference; the machine. Analysis only: no text, no files.

A ratio is the contender's median over the fastest's median, the numbers of the tables. Its CI
comes from harness.levels.ratios_to_fastest over the one run's rounds: the contenders of a workload
were timed in the same (pass, round)s, so their ratios are paired by round (a drift of the machine
hits every contender of a round alike and cancels), and the CI redoes the choice of the fastest in
every resample (picking the fastest from noisy data flatters it: the winner's curse); its relative
width is carried over to the ratio of the medians (`_ratio`). A difference is called significant
when the ratio's CI lies wholly above 1: the contender is then slower than the fastest in this run,
by at least the CI's lower bound, at 95% confidence.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from .. import levels, results
from ..cells import FAILED, PHASES, WORKLOAD_FIELDS
from ..fmt import contender_label, marks
from ..results import Run

__all__ = ["Contender", "Workload", "Summary", "summarize", "HEADLINE_PHASES", "machine_of", "versions_of"]

# A model's headline is the first of these phases it has: a training step is what a practitioner pays for.
HEADLINE_PHASES = ("train_step", "forward_backward", "forward", "backward")


@dataclass(frozen=True, slots=True)
class Contender:
    """One framework and mode within a workload. ratio = median / the fastest's median (1 for the fastest)."""

    label: str
    key: str
    median_s: float
    ratio: float
    ci_low: float  # of the ratio
    ci_high: float
    noisy: bool
    verified: bool | None
    median_ci_s: tuple[float, float] = (math.nan, math.nan)  # bootstrap 95% CI of the median itself
    n: int = 0
    cv: float = math.nan
    samples_per_s: float = math.nan
    gflops_per_s: float = math.nan
    peak_share: float = math.nan

    @property
    def significant(self) -> bool:
        """Slower than the fastest beyond doubt: the ratio's 95% CI lies above 1."""
        return self.ci_low > 1

    @property
    def marks(self) -> str:
        """'~' noisy, '!' unverified: the marks every table and plot of the report uses."""
        return marks(self.noisy, self.verified)


@dataclass(frozen=True, slots=True)
class Workload:
    model: str
    device: str
    dtype: str
    batch_size: int
    phase: str
    threads: int
    contenders: list[Contender]  # fastest first

    @property
    def fastest(self) -> Contender:
        return self.contenders[0]

    @property
    def name(self) -> str:
        return f"{self.model} {self.phase}, batch {self.batch_size}, {self.device} {self.dtype}, {self.threads} threads"


@dataclass(frozen=True, slots=True)
class Summary:
    run_id: str
    suite: str
    description: str
    machine: str
    versions: dict[str, str]
    environment: dict
    peak_gflops: dict
    counts: dict[str, int]
    workloads: list[Workload]
    headlines: list[Workload]  # per model, device, dtype: its largest batch, its headline phase, most threads
    failed: list[dict] = field(default_factory=list)  # {key, status, reason}
    skipped: list[dict] = field(default_factory=list)
    noisy: list[str] = field(default_factory=list)
    unverified: list[dict] = field(default_factory=list)  # {key, model, framework, status, first_divergence, reason}
    # one per model, framework, device, dtype and mode checked: {model, ..., status, tensors, worst_tensor,
    # worst_normwise, worst_tolerance, first_divergence}
    checks: list[dict] = field(default_factory=list)

    @property
    def not_significant(self) -> list[tuple[Workload, Contender]]:
        """Every contender that cannot be told apart from its workload's fastest (the CI contains 1)."""
        return [(w, c) for w in self.workloads for c in w.contenders[1:] if not c.significant]


def _ratio(row, best, paired: levels.RatioStats) -> tuple[float, float, float]:
    """A contender's time over the fastest's, as the tables show it (the ratio of the two medians),
    with the CI of the paired, selection-aware ratio (levels.ratios_to_fastest) carried over to it:
    the same relative width around the medians' ratio, so that every number a reader compares is
    the table's, and the interval still knows the rounds were paired and the fastest was chosen. As
    there, the interval never reaches below 1, and a low end at 1 (a contender that may be the
    fastest) stays at 1 rather than moving with the scale."""
    ratio = float(row["median_s"]) / float(best["median_s"])
    scale = ratio / paired.ratio if paired.ratio > 0 else 1.0
    low = 1.0 if paired.ci_low <= 1.0 else max(1.0, paired.ci_low * scale)
    return ratio, low, max(ratio, paired.ci_high * scale)


def _label(row) -> str:
    return contender_label(row["framework"], row["mode"])


def summarize(run: Run | str | os.PathLike) -> Summary:
    """The summary of a run (a Run already read, or its folder), from its stored raw samples."""
    run = run if isinstance(run, Run) else results.read(run)
    df, meta = run.table(raw=True), run.meta
    env = meta.get("environment") or {}
    ok = df[df["status"] == "ok"]
    workloads = []
    for values, group in ok.groupby(list(WORKLOAD_FIELDS), sort=True):
        ratios = levels.ratios_to_fastest({row["key"]: (row["samples_s"], row["sample_passes"], row["sample_rounds"])
                                           for _, row in group.iterrows()})
        group = group.sort_values("median_s")
        best = group.iloc[0]
        contenders = []
        for _, row in group.iterrows():
            ratio, low, high = _ratio(row, best, ratios[row["key"]])
            contenders.append(Contender(
                _label(row), row["key"], float(row["median_s"]), ratio, low, high,
                bool(results.flag(row["noisy"])),
                results.flag(row["verified"]), (float(row["ci_low_s"]), float(row["ci_high_s"])), int(row["n"]),
                float(row["cv"]), float(row["samples_per_s"]), float(row["gflops_per_s"]), float(row["peak_share"])))
        workloads.append(Workload(*(results.plain(v) for v in values), contenders=contenders))
    order = {p: i for i, p in enumerate(PHASES)}
    workloads.sort(key=lambda w: (w.model, w.device, w.dtype, w.threads, w.batch_size, order.get(w.phase, 9)))
    not_ok = [{"key": r["key"], "label": _label(r),
               **{f: results.plain(r[f]) for f in (*WORKLOAD_FIELDS, "status", "reason")}}
              for _, r in df[df["status"] != "ok"].iterrows()]
    failed = [x for x in not_ok if x["status"] in FAILED]
    skipped = [x for x in not_ok if x["status"] == "skipped"]
    suite = meta.get("suite") or {}
    return Summary(
        run_id=run.id, suite=str(suite.get("name", "?")),
        description=str(suite.get("description", "")), machine=_machine(env), versions=_versions(env),
        environment=env, peak_gflops=dict(meta.get("peak_gflops") or {}),
        counts=df["status"].value_counts().to_dict(), workloads=workloads, headlines=_headlines(workloads),
        failed=failed, skipped=skipped,
        noisy=[r.key for r in ok.itertuples() if results.flag(r.noisy)],
        unverified=[{"key": r.key, "model": r.model, "framework": r.framework, "status": results.plain(r.check_status),
                     "first_divergence": results.plain(r.first_divergence), "reason": results.plain(r.check_reason)}
                    for r in ok.itertuples() if results.flag(r.verified) is False],
        checks=_checks(run.checks()))


def _checks(checks) -> list[dict]:
    """Each check's verdict and its worst tensor: the one with the largest error relative to its tolerance."""
    found = []
    which = ["model", "framework", "device", "dtype", "mode"]
    for values, group in checks.groupby(which, sort=True):
        relative = (group["normwise"] / group["normwise_tol"]).fillna(math.inf)  # NaN (shape, Inf) is the worst
        worst = group.loc[relative.idxmax()]
        found.append({**dict(zip(which, values, strict=True)), "status": worst["check_status"],
                      "tensors": len(group), "failed": int((~group["passed"].fillna(False)).sum()),
                      "worst_tensor": worst["tensor"], "worst_normwise": float(worst["normwise"]),
                      "worst_tolerance": float(worst["normwise_tol"]),
                      "first_divergence": worst["first_divergence"] if isinstance(worst["first_divergence"], str)
                      else None})
    return found


def _headlines(workloads: list[Workload]) -> list[Workload]:
    """Per model, device and dtype, the workload a practitioner asks about first: among those with at
    least two contenders when there are any (a race needs two runners), the most threads, then the
    largest batch, then the first phase of HEADLINE_PHASES it has."""
    preference = {p: i for i, p in enumerate(HEADLINE_PHASES)}
    groups: dict[tuple, list[Workload]] = {}
    for w in workloads:
        groups.setdefault((w.model, w.device, w.dtype), []).append(w)
    return [max(groups[k], key=lambda w: (len(w.contenders) > 1, w.threads, w.batch_size,
                                          -preference.get(w.phase, len(preference))))
            for k in sorted(groups)]


def _machine(env: dict) -> str:
    cpu = env.get("cpu") or {}
    parts = [f"{cpu.get('model') or 'unknown CPU'}, {cpu.get('logical_cores') or '?'} logical cores"]
    if env.get("memory_bytes"):
        parts.append(f"{env['memory_bytes'] / 2**30:.0f} GiB")
    gpus = env.get("gpus") or []
    parts.append(", ".join(g.get("name", "?") for g in gpus) if gpus else "no GPU")
    os_info = env.get("os") or {}
    if os_info.get("system"):
        parts.append(f"{os_info['system']} {os_info.get('release', '')}".strip())
    return "; ".join(parts)


def _versions(env: dict) -> dict[str, str]:
    found = {"python": (env.get("python") or {}).get("version")}
    found.update({k: v for k, v in (env.get("packages") or {}).items() if v})
    blas = env.get("blas") or {}
    if blas.get("name"):
        found["blas"] = f"{blas['name']} {blas.get('version') or ''}".strip()
    git = env.get("git") or {}
    if git.get("commit"):
        found["fwbench commit"] = git["commit"][:12] + (" (uncommitted changes)" if git.get("dirty") else "")
    return {k: str(v) for k, v in found.items() if v}


# What a report prints of the machine and the versions; `bench train`'s report says it the same way.
machine_of = _machine
versions_of = _versions
