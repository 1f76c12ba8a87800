"""Statistics over timing samples (seconds per call): summaries, bootstrap CIs, ratios. Pure functions, no I/O.

Quartiles and the median use NumPy's default quantile method ('linear': the R-7 / Excel definition,
interpolating between the two nearest order statistics). The confidence intervals are percentile
bootstraps: resample with replacement, take the median of each resample, and read the interval off
the quantiles of those medians. They are deterministic for a given seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

__all__ = [
    "NOISY_CV",
    "NOISY_IQR",
    "Stats",
    "summarize",
    "bootstrap_median_ci",
    "ratio_ci",
    "throughput",
]

# A measurement is flagged noisy at these thresholds: torch.utils.benchmark warns at a coefficient of
# variation of 10%, pyperf at an IQR of 25% of the median. Flagged is not rejected: the report says so.
NOISY_CV = 0.10
NOISY_IQR = 0.25

# NOTE: the bootstrap draws all its resample indices at once, an (n_boot, n) array; for long samples
# it goes in chunks of rows so that no draw holds more than this many elements (32 MB of int64).
_BOOT_CHUNK = 1 << 22


@dataclass(frozen=True, slots=True)
class Stats:
    """A summary of one sample of timings. Every time is in seconds per call."""

    n: int
    median: float
    q1: float
    q3: float
    iqr: float
    min: float
    max: float
    mean: float
    stdev: float  # sample standard deviation (ddof=1); 0 for n = 1
    cv: float  # stdev / mean
    ci_low: float  # bootstrap CI of the median, at `confidence`
    ci_high: float
    confidence: float = 0.95

    @property
    def noisy_cv(self) -> bool:
        return self.cv >= NOISY_CV

    @property
    def noisy_iqr(self) -> bool:
        if self.median > 0:
            return self.iqr / self.median >= NOISY_IQR
        return self.iqr > 0  # a spread around a median of 0 is infinitely large relative to it

    @property
    def noisy(self) -> bool:
        return self.noisy_cv or self.noisy_iqr

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(noisy_cv=self.noisy_cv, noisy_iqr=self.noisy_iqr, noisy=self.noisy)
        return out


def _as_samples(samples: npt.ArrayLike, name: str = "samples") -> np.ndarray:
    """The samples as a 1-D float64 array, or a ValueError that says what is wrong with them."""
    try:
        x = np.asarray(samples, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: expected a sequence of seconds per call, got {type(samples).__name__}") from e
    if x.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of seconds per call, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty: a summary needs at least one sample")
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} has {int(bad.sum())} non-finite value(s) (NaN or Inf), the first at index {i}: "
                         f"{x[i]}; a timing is a finite number of seconds")
    negative = x < 0
    if negative.any():
        i = int(np.argmax(negative))
        raise ValueError(f"{name} has {int(negative.sum())} negative value(s), the first at index {i}: {x[i]}; "
                         "seconds per call cannot be negative: is the clock monotonic (time.perf_counter)?")
    return x


def _check_bootstrap_args(confidence: float, n_boot: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}: e.g. 0.95 for 95%")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}; 2000 is the default")


def _resampled_medians(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """The medians of n_boot resamples of x, drawn with replacement."""
    n = x.size
    rows = max(1, _BOOT_CHUNK // n)
    medians = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        medians[start:stop] = np.median(x[idx], axis=1)
    return medians


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(values, [tail, 1 - tail])
    return float(lo), float(hi)


def bootstrap_median_ci(samples: npt.ArrayLike, confidence: float = 0.95, n_boot: int = 2000,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median: (low, high).

    With one sample, or all samples equal, the interval is that one value.
    """
    x = _as_samples(samples)
    _check_bootstrap_args(confidence, n_boot)
    return _interval(_resampled_medians(x, n_boot, np.random.default_rng(seed)), confidence)


def summarize(samples: npt.ArrayLike, *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Stats:
    """Summarize timings in seconds per call. Raises ValueError for an empty sample, NaN, Inf or a negative time."""
    x = _as_samples(samples)
    q1, median, q3 = (float(q) for q in np.quantile(x, [0.25, 0.5, 0.75]))
    mean = float(x.mean())
    stdev = float(x.std(ddof=1)) if x.size > 1 else 0.0
    # Times are >= 0, so a mean of 0 means every sample is 0: no spread at all.
    cv = stdev / mean if mean > 0 else 0.0
    ci_low, ci_high = bootstrap_median_ci(x, confidence, n_boot, seed)
    return Stats(n=int(x.size), median=median, q1=q1, q3=q3, iqr=q3 - q1, min=float(x.min()), max=float(x.max()),
                 mean=mean, stdev=stdev, cv=cv, ci_low=ci_low, ci_high=ci_high, confidence=confidence)


def ratio_ci(a: npt.ArrayLike, b: npt.ArrayLike, confidence: float = 0.95, n_boot: int = 2000,
             seed: int = 0) -> tuple[float, float, float]:
    """median(a) / median(b) and its percentile-bootstrap confidence interval: (ratio, low, high).

    a and b are resampled independently (they are separate measurements, not pairs), and the interval
    is read off the ratios of the resampled medians. With a and b timings of two frameworks in one run,
    a ratio of 1.3 with an interval above 1 says a is slower by about 30%; an interval containing 1
    supports no claim either way.
    """
    xa = _as_samples(a, "a")
    xb = _as_samples(b, "b")
    _check_bootstrap_args(confidence, n_boot)
    median_b = float(np.median(xb))
    if median_b == 0:
        raise ValueError("median(b) is 0: the ratio median(a)/median(b) is undefined; were the samples of b "
                         "shorter than the clock's resolution? Calibrate iterations per sample")
    rng = np.random.default_rng(seed)
    medians_a = _resampled_medians(xa, n_boot, rng)
    medians_b = _resampled_medians(xb, n_boot, rng)
    with np.errstate(divide="ignore", invalid="ignore"):  # a resample of b may have a median of 0: inf
        ratios = medians_a / medians_b
    lo, hi = _interval(ratios, confidence)
    return float(np.median(xa)) / median_b, lo, hi


def throughput(batch_size: int, seconds: float) -> float:
    """Samples per second when one call of `seconds` processes `batch_size` samples."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds per call must be a positive finite number, got {seconds}")
    return batch_size / seconds
