"""Statistics by level for benchmark timings (Kalibera & Jones, "Rigorous Benchmarking in Reasonable
Time", ISMM 2013). Pure functions, no I/O.

A cell's samples (seconds per call) carry two labels: the pass (an independent run in fresh
processes) and the round within the pass; samples of one (pass, round) were taken back to back.
Noise comes in levels: a pass draws its own memory layout, JIT decisions and clock state, so samples
of one pass share an offset that no number of samples within it averages away. A bootstrap that
treats every sample as independent is then far too narrow. Here the interval comes from a
hierarchical (cluster) bootstrap: resample passes, then rounds within each drawn pass; the statistic
of a resample is the median of its round medians.

A bootstrap over k top-level units is narrow for small k: its variance carries a factor (k-1)/k,
and it ignores that the spread itself is estimated from k units. So the interval is the point -+
z(q) * sqrt(k/(k-1)) * t_{k-1}(q) / z(q) * (the resamples' standard deviation), in log space: a
Student interval with the bootstrap's standard error. (Widening the percentile interval instead, with
rounds resampled within passes too, missed the 93-97% coverage band of tests/harness/test_levels.py
for 3 passes and over-covered for 10.)

Pooling rule: an F test (one-way ANOVA of log round medians by pass) asks whether passes differ more
than their rounds do. If its p-value exceeds POOL_P = 0.5, there is no evidence of a pass effect and
the rounds of all passes are the exchangeable top level, which gives a tighter interval when passes
do not differ. The threshold is lax on purpose: pooling when passes do differ is the costly mistake
(the interval then misses the pass effect entirely), and with 3 passes the test has 2 degrees of
freedom; at 0.25 it pooled 29% of runs with a pass effect as large as the round noise, and coverage
fell to 92%.

Past 400 lines: the summary and the paired, unpaired and to-the-fastest ratios share the resampling
and pooling helpers; split apart, the modules would import each other's private parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import numpy.typing as npt

from .distributions import f_sf, t_quantile, z_quantile
from .stats import _as_samples, _check_bootstrap_args

__all__ = ["POOL_P", "NOISY_DETECTABLE", "LevelStats", "RatioStats", "round_medians", "level_summary",
           "paired_ratio", "unpaired_ratio", "verdict", "ratios_to_fastest"]

POOL_P = 0.5  # pool passes (rounds become the top level) when the F test's p-value exceeds this
NOISY_DETECTABLE = 0.10  # a cell whose CI cannot resolve a 10% change is flagged noisy

Unit = tuple[int, int]  # (pass, round)


@dataclass(frozen=True, slots=True)
class LevelStats:
    """A summary of one cell's timings by level. Every time is in seconds per call."""

    n: int  # samples
    n_passes: int
    n_rounds: int  # (pass, round) units, over all passes
    median: float  # median of all samples
    ci_low: float  # hierarchical-bootstrap CI of the median, at `confidence`
    ci_high: float
    confidence: float
    pass_spread: float  # (max - min) / median of the pass medians; 0 for one pass
    round_spread: float  # IQR of the round medians / median
    pass_p: float | None  # F-test p-value of a pass effect; None when it cannot be computed
    top: str  # the level resampled at the top: "passes", "rounds" or "samples"

    @property
    def detectable(self) -> float:
        """The smallest relative change the CI can resolve."""
        if self.median <= 0:
            return 0.0 if self.ci_high <= 0 else math.inf
        return max(self.ci_high / self.median - 1, 1 - self.ci_low / self.median)

    @property
    def noisy(self) -> bool:
        return self.detectable > NOISY_DETECTABLE

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(detectable=self.detectable, noisy=self.noisy)
        return out


@dataclass(frozen=True, slots=True)
class RatioStats:
    """A ratio of timings b / a with its CI: above 1 means b is slower."""

    ratio: float
    ci_low: float
    ci_high: float
    confidence: float
    n_units: int  # paired: units measured in both; unpaired: units of a plus units of b
    unit: str  # the top-level unit of the interval: "passes", "rounds" or "samples"
    n_a: int | None = None  # unpaired: the units of a and of b (None when paired: both are n_units)
    n_b: int | None = None

    @property
    def detectable(self) -> float:
        """The smallest relative change the CI can resolve."""
        return max(self.ci_high / self.ratio - 1, 1 - self.ci_low / self.ratio)

    def significant(self) -> bool:
        """Whether the CI excludes 1: a difference either way at the CI's confidence."""
        return self.ci_low > 1 or self.ci_high < 1

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(detectable=self.detectable, significant=self.significant())
        return out


def _labelled(samples: npt.ArrayLike, passes: npt.ArrayLike, rounds: npt.ArrayLike,
              name: str = "samples") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples and their labels as arrays of one length, or a ValueError that says what is wrong."""
    x = _as_samples(samples, name)
    labels = []
    for label, values in (("passes", passes), ("rounds", rounds)):
        v = np.asarray(values)
        if v.ndim != 1 or v.size != x.size:
            raise ValueError(f"{label} has {v.size} label(s) (shape {v.shape}) but {name} has {x.size} sample(s): "
                             f"every sample needs one pass label and one round label")
        if v.size and not np.issubdtype(v.dtype, np.integer):
            if not (np.issubdtype(v.dtype, np.floating) and np.all(v == np.round(v))):
                raise ValueError(f"{label} must be integer labels, got dtype {v.dtype}")
        labels.append(v.astype(np.int64))
    return x, labels[0], labels[1]


def round_medians(samples: npt.ArrayLike, passes: npt.ArrayLike, rounds: npt.ArrayLike) -> dict[Unit, float]:
    """The median of each (pass, round) unit's samples: {(pass, round): median}."""
    x, p, r = _labelled(samples, passes, rounds)
    order = np.lexsort((r, p))
    x, p, r = x[order], p[order], r[order]
    starts = np.flatnonzero(np.r_[True, (p[1:] != p[:-1]) | (r[1:] != r[:-1])])
    ends = np.r_[starts[1:], x.size]
    return {(int(p[s]), int(r[s])): float(np.median(x[s:e])) for s, e in zip(starts, ends, strict=True)}


def _groups(keys: list[Unit]) -> np.ndarray:
    """The pass of each unit as a dense index 0..k-1."""
    _, inverse = np.unique(np.array([k[0] for k in keys]), return_inverse=True)
    return inverse.reshape(-1)


def _pass_p(values: np.ndarray, groups: np.ndarray) -> float | None:
    """The one-way ANOVA F test's p-value of a group effect on values; None without two groups and a
    within-group degree of freedom."""
    k, n = int(groups.max()) + 1, values.size
    if k < 2 or n - k < 1:
        return None
    counts = np.bincount(groups, minlength=k)
    means = np.bincount(groups, weights=values, minlength=k) / counts
    between = float((counts * (means - values.mean()) ** 2).sum())
    within = float(((values - means[groups]) ** 2).sum())
    if within <= 0:
        return 1.0 if between <= 0 else 0.0
    return f_sf((between / (k - 1)) / (within / (n - k)), k - 1, n - k)


def _draw(groups: np.ndarray | None, n_units: int, n_boot: int, rng: np.random.Generator
          ) -> tuple[np.ndarray, np.ndarray | None]:
    """Unit indices of n_boot resamples, (n_boot, m), and a mask of the valid ones (None when all are).

    groups=None resamples the units flat. Otherwise whole groups (passes) are drawn with replacement
    and each keeps its own units (rounds): the lower level is not resampled again. A drawn pass's
    median already carries its rounds' noise; resampling the rounds too counts that noise twice and
    over-covers when the pass effect is small (Davison & Hinkley 1997, section 3.8; Ren et al. 2010).
    """
    if groups is None:
        return rng.integers(0, n_units, size=(n_boot, n_units)), None
    order = np.argsort(groups, kind="stable")
    counts = np.bincount(groups)
    k, width = counts.size, int(counts.max())
    offsets = np.r_[0, np.cumsum(counts)[:-1]]
    top = rng.integers(0, k, size=(n_boot, k))
    inner = np.arange(width)
    idx = order[np.minimum(offsets[top][..., None] + inner, n_units - 1)].reshape(n_boot, k * width)
    if counts.min() == width:
        return idx, None
    return idx, (inner < counts[top][..., None]).reshape(n_boot, k * width)


def _boot_median(values: np.ndarray, idx: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The median of each resample; values may be (units,) or (units, columns)."""
    drawn = values[idx]
    if mask is None:
        return np.median(drawn, axis=1)
    drawn = np.where(mask[..., None] if drawn.ndim == 3 else mask, drawn, np.nan)
    return np.nanmedian(drawn, axis=1)


def _small_k(k: int, confidence: float) -> float:
    """The factor from a normal interval with a bootstrap's standard error over k top-level units to
    Student's: t_{k-1}(q) / z(q) for the estimated spread, sqrt(k / (k-1)) for the bootstrap's bias."""
    q = (1 + confidence) / 2
    return t_quantile(q, k - 1) / z_quantile(q) * math.sqrt(k / (k - 1)) if k >= 2 else 1.0


def _se_interval(point: float, boot: np.ndarray, k: int, confidence: float) -> tuple[float, float]:
    """point -+ t_{k-1}(q) * sqrt(k/(k-1)) * the resamples' standard deviation.

    The standard error rather than the percentiles: with few passes the bootstrap distribution of a
    median is a handful of atoms (10 distinct resamples for 3 passes) and its 2.5% point is the
    slowest pass itself, which undercovers however it is widened; the standard deviation of those
    atoms is a steadier estimate of the spread.
    """
    half = z_quantile((1 + confidence) / 2) * _small_k(k, confidence) * float(boot.std())
    return point - half, point + half


def _widen(log_point: float, log_lo: float, log_hi: float, k: int, confidence: float) -> tuple[float, float]:
    """A percentile interval (in log space) widened around the point for k top-level units."""
    factor = _small_k(k, confidence)
    low = log_point - max(0.0, log_point - log_lo) * factor
    high = log_point + max(0.0, log_hi - log_point) * factor
    return math.exp(low), math.exp(high)


def _top(groups: np.ndarray, p: float | None) -> tuple[np.ndarray | None, int, str]:
    """The top level by the pooling rule: (groups or None for flat, k, name)."""
    k = int(groups.max()) + 1
    if k >= 2 and (p is None or p <= POOL_P):
        return groups, k, "passes"
    return None, groups.size, "rounds"


def level_summary(samples: npt.ArrayLike, passes: npt.ArrayLike, rounds: npt.ArrayLike, *,
                  confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> LevelStats:
    """Summarize one cell's timings by level: the median with a hierarchical-bootstrap CI.

    The top level is passes, or rounds when there is one pass or the F test finds no pass effect
    (p > POOL_P), or samples when there is a single pass of a single round. Raises ValueError for
    mismatched labels, an empty sample, NaN, Inf or a negative time.
    """
    x, p, r = _labelled(samples, passes, rounds)
    _check_bootstrap_args(confidence, n_boot)
    medians = round_medians(x, p, r)
    keys = list(medians)
    rm = np.array([medians[k] for k in keys])
    groups = _groups(keys)
    k = int(groups.max()) + 1
    median = float(np.median(x))
    pass_medians = np.array([np.median(rm[groups == g]) for g in range(k)])
    pass_spread = float(np.ptp(pass_medians) / median) if median > 0 and k > 1 else 0.0
    q1, q3 = np.quantile(rm, [0.25, 0.75])
    round_spread = float((q3 - q1) / median) if median > 0 else 0.0
    positive = bool(np.all(x > 0))
    pass_p = _pass_p(np.log(rm) if positive else rm, groups)
    rng = np.random.default_rng(seed)
    if rm.size == 1:
        top_groups, n_top, top = None, x.size, "samples"
        idx, mask = _draw(None, x.size, n_boot, rng)
        boot = _boot_median(x, idx, mask)
    else:
        top_groups, n_top, top = _top(groups, pass_p)
        idx, mask = _draw(top_groups, rm.size, n_boot, rng)
        boot = _boot_median(rm, idx, mask)
    if positive:  # in log space: timing noise is multiplicative, and the interval stays above 0
        low, high = _se_interval(math.log(median), np.log(boot), n_top, confidence)
        ci_low, ci_high = math.exp(low), math.exp(high)
    else:  # a time of 0 has no logarithm
        ci_low, ci_high = _se_interval(median, boot, n_top, confidence)
        ci_low = max(0.0, ci_low)
    return LevelStats(n=int(x.size), n_passes=k, n_rounds=int(rm.size), median=median, ci_low=ci_low,
                      ci_high=ci_high, confidence=confidence, pass_spread=pass_spread, round_spread=round_spread,
                      pass_p=pass_p, top=top)


def _positive_logs(values: np.ndarray, name: str) -> np.ndarray:
    if np.any(values <= 0):
        raise ValueError(f"{name} has a round median of 0: a ratio of times needs positive times; were its "
                         "samples shorter than the clock's resolution? Calibrate iterations per sample")
    return np.log(values)


ORDER_MIN_PASSES = 6  # from this many passes a paired ratio's CI comes from order statistics


def _order_rank(k: int, confidence: float) -> int:
    """The largest j with P(X < j) * 2 <= 1 - confidence for X ~ Binomial(k, 1/2): the j-th smallest
    and j-th largest of k values bound their distribution's median with at least that confidence."""
    j, below = 0, 0.0
    while j < k // 2:
        below += math.comb(k, j) / 2 ** k  # P(X = j) added: now P(X <= j)
        if 2 * below > 1 - confidence:
            break
        j += 1
    return j


def paired_ratio(a: dict[Unit, float], b: dict[Unit, float], *, confidence: float = 0.95, n_boot: int = 2000,
                 seed: int = 0, method: str = "auto") -> RatioStats:
    """The ratio b / a of two contenders measured in the same rounds: a and b map (pass, round) to that
    round's median (see round_medians). Pairing cancels what a round shares (the machine's state at
    the time); what it cannot cancel is the pass: a fresh process can run 10-40% off for its whole
    life (measured on a 2-vCPU VM, where one pass in ten of torch's was), and that hits one side only.

    method "order" (the default from ORDER_MIN_PASSES passes on): each pass gives one value, the
    median of its rounds' log ratios; the point is the median of those, and the CI the j-th smallest
    to the j-th largest of them (the sign test's interval: for independent passes it covers their
    distribution's median with at least `confidence`, whatever that distribution, and one or two
    disturbed passes move it by one rank, not by their size). method "bootstrap" (the default below
    ORDER_MIN_PASSES, where the order interval would be every pass's range): the median of the
    per-unit ratios with a hierarchical bootstrap of the per-unit log ratios, the small-k widening
    and the pooling rule of level_summary. Judged on the same 9 A/B runs (Intel Xeon, 2 vCPUs, 10
    passes, threshold 2%), "order" flagged 1 of 144 cells where nothing was planted and found 30 of
    36 planted 5% slowdowns and 31 of 36 of 10%; "bootstrap" flagged 4 and found 27 and 33.
    """
    _check_bootstrap_args(confidence, n_boot)
    keys = sorted(set(a) & set(b))
    if len(keys) < 2:
        raise ValueError(f"paired_ratio needs at least 2 (pass, round) units measured in both a and b, got "
                         f"{len(keys)} (a has {len(a)}, b has {len(b)}); compare unpaired runs with unpaired_ratio")
    if method not in ("auto", "order", "bootstrap"):
        raise ValueError(f"method must be 'auto', 'order' or 'bootstrap', got {method!r}")
    la = _positive_logs(np.array([a[k] for k in keys], dtype=np.float64), "a")
    lb = _positive_logs(np.array([b[k] for k in keys], dtype=np.float64), "b")
    logs = lb - la
    groups = _groups(keys)
    k = int(groups.max()) + 1
    j = _order_rank(k, confidence)
    if method == "order" and j == 0:
        raise ValueError(f"{k} passes are too few for an order-statistic interval at {confidence:.0%}")
    if method == "order" or (method == "auto" and k >= ORDER_MIN_PASSES):
        per_pass = np.sort([np.median(logs[groups == g]) for g in range(k)])
        return RatioStats(math.exp(float(np.median(per_pass))), math.exp(per_pass[j - 1]),
                          math.exp(per_pass[k - j]), confidence, len(keys), "passes")
    top_groups, n_top, top = _top(groups, _pass_p(logs, groups))
    idx, mask = _draw(top_groups, logs.size, n_boot, np.random.default_rng(seed))
    ratio = float(np.median(np.exp(logs)))
    low, high = _se_interval(math.log(ratio), _boot_median(logs, idx, mask), n_top, confidence)
    ci_low, ci_high = math.exp(low), math.exp(high)
    return RatioStats(ratio, ci_low, ci_high, confidence, len(keys), top)


def _log_units(samples: npt.ArrayLike, passes: npt.ArrayLike, rounds: npt.ArrayLike, name: str
               ) -> dict[str, np.ndarray]:
    """A side's log pass medians, log round medians and log samples: the candidate units of Welch's test;
    and under "pass_p" the F test's p-value of a pass effect on its log round medians (as level_summary)."""
    x, p, r = _labelled(samples, passes, rounds, name)
    medians = round_medians(x, p, r)
    keys = list(medians)
    rm = np.array([medians[k] for k in keys])
    groups = _groups(keys)
    pm = np.array([np.median(rm[groups == g]) for g in range(int(groups.max()) + 1)])
    logs = _positive_logs(rm, name)
    return {"passes": _positive_logs(pm, name), "rounds": logs, "samples": _positive_logs(x, name),
            "pass_p": _pass_p(logs, groups)}


def unpaired_ratio(a_samples: npt.ArrayLike, a_passes: npt.ArrayLike, a_rounds: npt.ArrayLike,
                   b_samples: npt.ArrayLike, b_passes: npt.ArrayLike, b_rounds: npt.ArrayLike,
                   confidence: float = 0.95, unit: str | None = None) -> RatioStats:
    """The ratio b / a of two separate runs (bench compare), with Welch's t interval on log pass medians.

    The pass is the independent unit of a run, so each pass's median (the median of its round medians)
    is one observation: ratio = exp(mean log b - mean log a), CI = exp(diff -+ t_df(q) * se) with the
    Welch-Satterthwaite df. When either side has fewer than 2 passes the units are rounds (log round
    medians), and when either has fewer than 2 rounds, samples: the interval then ignores the pass
    effect and is too narrow, which the `unit` field says. `unit` asks for a level, used when both
    sides have 2 units of it; "auto" (bench compare) takes rounds when neither side shows a pass
    effect (the F test's p > POOL_P on each), passes otherwise.
    """
    _check_bootstrap_args(confidence, 1)
    ua = _log_units(a_samples, a_passes, a_rounds, "a_samples")
    ub = _log_units(b_samples, b_passes, b_rounds, "b_samples")
    if unit == "auto":
        pooled = all(u["pass_p"] is not None and u["pass_p"] > POOL_P for u in (ua, ub))
        unit = "rounds" if pooled else "passes"
    order = ("passes", "rounds", "samples")[("passes", "rounds", "samples").index(unit or "passes"):]
    unit = next((u for u in order if ua[u].size >= 2 and ub[u].size >= 2), None)
    if unit is None:
        raise ValueError("unpaired_ratio needs at least 2 samples on each side to estimate a spread, got "
                         f"{ua['samples'].size} and {ub['samples'].size}")
    la, lb = ua[unit], ub[unit]
    diff = float(lb.mean() - la.mean())
    va, vb = la.var(ddof=1) / la.size, lb.var(ddof=1) / lb.size
    se = math.sqrt(va + vb)
    if se > 0:
        df = (va + vb) ** 2 / (va ** 2 / (la.size - 1) + vb ** 2 / (lb.size - 1))
        half = t_quantile((1 + confidence) / 2, df) * se
    else:
        half = 0.0
    return RatioStats(math.exp(diff), math.exp(diff - half), math.exp(diff + half), confidence,
                      int(la.size + lb.size), unit, n_a=int(la.size), n_b=int(lb.size))


def verdict(ratio: RatioStats, threshold: float) -> str:
    """What a ratio b / a says at a noise threshold (e.g. 0.05 for 5%): "slower", "faster", "same" or
    "unknown".

    "slower": the CI lies above 1 (significant) and the point exceeds 1 + threshold; "faster", the
    mirror image: the CI below 1 and the point under 1 / (1 + threshold). A significant change smaller
    than the threshold is noise to this rule, as in criterion.rs's noise threshold. "same": the whole
    CI lies within [1 / (1 + threshold), 1 + threshold], so any change is known to be small (an
    equivalence test, not a failure to find one). Otherwise "unknown": the CI is too wide to tell,
    and more passes are needed rather than a guess (as Pinpoint reports for an unresolved bisection).
    """
    if threshold < 0:
        raise ValueError(f"threshold must be non-negative, got {threshold}: e.g. 0.05 for 5%")
    up, down = 1 + threshold, 1 / (1 + threshold)
    if ratio.ci_low > 1 and ratio.ratio > up:
        return "slower"
    if ratio.ci_high < 1 and ratio.ratio < down:
        return "faster"
    if down <= ratio.ci_low and ratio.ci_high <= up:
        return "same"
    return "unknown"


def ratios_to_fastest(cells: dict[str, tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike]], *,
                      confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict[str, RatioStats]:
    """Each contender's ratio to the fastest, for contenders of one workload measured in the same rounds.

    cells maps a name to (samples, passes, rounds). The point is each contender's median over the
    units common to all, divided by the least of those medians. Picking the fastest from noisy data
    flatters it (the winner's curse), so the CI redoes the pick in every resample: the same (pass,
    round) units are drawn for every contender, and each contender's median over them is divided by
    the least median of that resample; the percentile interval keeps the upward shift this gives, widened
    for few passes as in level_summary. With fewer than 2 common units, each contender is compared
    with the point-fastest by unpaired_ratio. No contender's time is below the fastest's, so no CI
    reaches below 1: the widening for few passes could take it there (a 1.60x read [0.60, 1.66] in a
    3-pass report), and it is cut at 1, which a contender that may be the fastest reads as [1.00, ...].
    """
    if not cells:
        raise ValueError("ratios_to_fastest needs at least one contender")
    _check_bootstrap_args(confidence, n_boot)
    names = list(cells)
    medians = {name: round_medians(*cells[name]) for name in names}
    keys = sorted(set.intersection(*(set(m) for m in medians.values())))
    if len(keys) < 2:
        fastest = min(names, key=lambda name: float(np.median(_as_samples(cells[name][0], name))))
        out = {name: unpaired_ratio(*cells[fastest], *cells[name], confidence=confidence) for name in names}
        return {name: replace(r, ci_low=max(1.0, r.ci_low)) for name, r in out.items()}
    raw = np.column_stack([np.array([medians[n][k] for k in keys]) for n in names])
    logs = np.column_stack([_positive_logs(raw[:, j], n) for j, n in enumerate(names)])
    point = np.log(np.median(raw, axis=0))
    best = int(np.argmin(point))
    groups = _groups(keys)
    ps = [_pass_p(logs[:, j] - logs[:, best], groups) for j in range(len(names)) if j != best]
    pool = bool(ps) and all(p is not None and p > POOL_P for p in ps)
    top_groups, n_top, top = _top(groups, 1.0 if pool else 0.0)
    idx, mask = _draw(top_groups, len(keys), n_boot, np.random.default_rng(seed))
    boot = _boot_median(logs, idx, mask)
    lo, hi = np.quantile(boot - boot.min(axis=1, keepdims=True), [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    out = {}
    for j, name in enumerate(names):
        log_ratio = float(point[j] - point[best])
        ci_low, ci_high = _widen(log_ratio, float(lo[j]), float(hi[j]), n_top, confidence)
        out[name] = RatioStats(math.exp(log_ratio), max(1.0, ci_low), ci_high, confidence, len(keys), top)
    return out
