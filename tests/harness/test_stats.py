"""harness.stats: exact summaries of hand-made samples, bootstrap CIs, noise flags, ratios, errors."""

import math

import numpy as np
import pytest

from harness import stats
from harness.stats import NOISY_CV, NOISY_IQR, Stats


def test_summary_of_a_small_sample_by_hand():
    # Quartiles use NumPy's default 'linear' method: the q-quantile of n sorted values sits at
    # position q*(n-1), interpolated. For [1, 2, 4, 8]: q1 at 0.75 -> 1 + 0.75*(2-1) = 1.75;
    # median at 1.5 -> 3; q3 at 2.25 -> 4 + 0.25*(8-4) = 5.
    s = stats.summarize([8.0, 1.0, 4.0, 2.0])
    assert s.n == 4
    assert (s.median, s.q1, s.q3, s.iqr) == (3.0, 1.75, 5.0, 3.25)
    assert (s.min, s.max, s.mean) == (1.0, 8.0, 3.75)
    # deviations from 3.75: -2.75, -1.75, 0.25, 4.25; squares sum to 28.75; ddof=1 divides by 3
    assert s.stdev == pytest.approx(math.sqrt(28.75 / 3), rel=1e-15)
    assert s.cv == pytest.approx(math.sqrt(28.75 / 3) / 3.75, rel=1e-15)


def test_summary_of_one_to_ten():
    s = stats.summarize(np.arange(1.0, 11.0))
    # positions 2.25, 4.5, 6.75 of 1..10 -> 3.25, 5.5, 7.75
    assert (s.q1, s.median, s.q3, s.iqr) == (3.25, 5.5, 7.75, 4.5)
    assert s.mean == 5.5
    # sum of squared deviations from 5.5 is 82.5
    assert s.stdev == pytest.approx(math.sqrt(82.5 / 9), rel=1e-15)
    assert s.ci_low <= s.median <= s.ci_high


def test_one_sample_has_no_spread():
    s = stats.summarize([0.5])
    assert (s.n, s.median, s.q1, s.q3, s.iqr, s.stdev, s.cv) == (1, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0)
    assert (s.ci_low, s.ci_high) == (0.5, 0.5)
    assert not s.noisy


def test_all_zero_samples_are_not_noisy():
    s = stats.summarize([0.0, 0.0, 0.0])
    assert (s.cv, s.iqr) == (0.0, 0.0)
    assert not s.noisy


def test_to_dict_has_every_field_and_the_flags():
    d = stats.summarize([1.0, 2.0, 3.0]).to_dict()
    assert set(d) == {"n", "median", "q1", "q3", "iqr", "min", "max", "mean", "stdev", "cv", "ci_low", "ci_high",
                      "confidence", "noisy_cv", "noisy_iqr", "noisy"}
    assert d["median"] == 2.0 and d["confidence"] == 0.95


def _stats(median=1.0, iqr=0.0, cv=0.0) -> Stats:
    return Stats(n=10, median=median, q1=median - iqr / 2, q3=median + iqr / 2, iqr=iqr, min=0.0, max=2.0,
                 mean=median, stdev=cv * median, cv=cv, ci_low=median, ci_high=median)


@pytest.mark.parametrize("cv, noisy", [(0.0, False), (0.0999, False), (NOISY_CV, True), (0.1001, True), (0.5, True)])
def test_noisy_cv_at_and_around_the_threshold(cv, noisy):
    s = _stats(cv=cv)
    assert s.noisy_cv is noisy
    assert s.noisy is noisy  # the IQR is 0 here
    assert not s.noisy_iqr


@pytest.mark.parametrize("iqr, noisy", [(0.0, False), (0.2499, False), (NOISY_IQR, True), (0.2501, True)])
def test_noisy_iqr_at_and_around_the_threshold(iqr, noisy):
    s = _stats(median=1.0, iqr=iqr)
    assert s.noisy_iqr is noisy
    assert s.noisy is noisy
    assert not s.noisy_cv
    # the flag is relative to the median
    assert _stats(median=2.0, iqr=2 * iqr).noisy_iqr is noisy


def test_a_spread_around_a_zero_median_is_noisy():
    assert _stats(median=0.0, iqr=1e-9).noisy_iqr


def test_one_outlier_trips_the_cv_flag_but_not_the_iqr_flag():
    s = stats.summarize([1.0] * 19 + [10.0])
    assert s.noisy_cv and not s.noisy_iqr and s.noisy
    assert s.median == 1.0


def test_a_wide_middle_trips_the_iqr_flag():
    s = stats.summarize([1.0, 1.0, 1.3, 1.3])  # iqr 0.3 around a median of 1.15: 26%
    assert s.noisy_iqr


TRUE_MEDIAN = 1e-3  # lognormal(mu, sigma) has median exp(mu)


def _lognormal(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(math.log(TRUE_MEDIAN), 0.3, size=n)


def test_ci_contains_the_true_median_for_most_samples():
    # 95% intervals: about 19 of 20 independent samples should cover the true median. The test is
    # deterministic (fixed seeds); the bound leaves room for the percentile bootstrap's undercoverage.
    covered = 0
    for seed in range(20):
        lo, hi = stats.bootstrap_median_ci(_lognormal(500, seed), n_boot=1000, seed=seed)
        assert lo < hi
        covered += lo <= TRUE_MEDIAN <= hi
    assert covered >= 16


def test_ci_shrinks_as_the_sample_grows():
    widths = []
    for n in (20, 200, 2000):
        lo, hi = stats.bootstrap_median_ci(_lognormal(n, 1), seed=0)
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2] > 0
    # the width goes as 1/sqrt(n): each tenfold sample is about 3x narrower
    assert widths[0] / widths[2] > 5


def test_ci_is_deterministic_per_seed():
    x = _lognormal(50, 7)
    assert stats.bootstrap_median_ci(x, seed=3) == stats.bootstrap_median_ci(x, seed=3)
    assert stats.bootstrap_median_ci(x, seed=3) != stats.bootstrap_median_ci(x, seed=4)
    assert stats.summarize(x, seed=3) == stats.summarize(x, seed=3)


def test_wider_confidence_gives_a_wider_interval():
    x = _lognormal(100, 2)
    lo90, hi90 = stats.bootstrap_median_ci(x, confidence=0.90)
    lo99, hi99 = stats.bootstrap_median_ci(x, confidence=0.99)
    assert lo99 <= lo90 and hi90 <= hi99 and (hi99 - lo99) > (hi90 - lo90)
    s = stats.summarize(x, confidence=0.99)
    assert (s.ci_low, s.ci_high, s.confidence) == (lo99, hi99, 0.99)


def test_long_samples_are_resampled_in_chunks_with_the_same_result(monkeypatch):
    x = _lognormal(300, 4)
    whole = stats.bootstrap_median_ci(x, n_boot=500, seed=1)
    monkeypatch.setattr(stats, "_BOOT_CHUNK", 1000)  # 3 rows a chunk
    chunked = stats.bootstrap_median_ci(x, n_boot=500, seed=1)
    # Today NumPy's chunked draws equal the whole draw; the contract is only the same interval up to
    # bootstrap noise, and determinism.
    assert chunked == pytest.approx(whole, rel=0.05)
    assert chunked == stats.bootstrap_median_ci(x, n_boot=500, seed=1)


def test_ratio_of_two_samples_of_one_distribution_contains_1():
    # As for the median: a 95% interval misses 1 for about 1 pair in 20 (seeds 10 and 11 do).
    contains_1 = 0
    for seed in range(20):
        ratio, lo, hi = stats.ratio_ci(_lognormal(200, 100 + 2 * seed), _lognormal(200, 101 + 2 * seed),
                                       n_boot=1000, seed=seed)
        assert lo < ratio < hi
        assert ratio == pytest.approx(1, abs=0.1)
        contains_1 += lo < 1 < hi
    assert contains_1 >= 16


def test_ratio_of_a_30_percent_slower_sample():
    slower = 1.3 * _lognormal(200, 12)
    ratio, lo, hi = stats.ratio_ci(slower, _lognormal(200, 13))
    assert ratio == pytest.approx(1.3, rel=0.1)
    assert 1 < lo < ratio < hi
    assert lo < 1.3 < hi
    # and the other way round
    inverse, ilo, ihi = stats.ratio_ci(_lognormal(200, 13), slower)
    assert inverse == pytest.approx(1 / ratio) and ihi < 1


def test_ratio_is_the_ratio_of_medians_and_deterministic():
    a, b = [3.0, 1.0, 2.0], [4.0, 5.0, 6.0]
    assert stats.ratio_ci(a, b)[0] == 2.0 / 5.0
    assert stats.ratio_ci(a, b, seed=5) == stats.ratio_ci(a, b, seed=5)


def test_ratio_errors_name_the_sample():
    with pytest.raises(ValueError, match="^b is empty"):
        stats.ratio_ci([1.0], [])
    with pytest.raises(ValueError, match="^a has 1 non-finite"):
        stats.ratio_ci([np.nan], [1.0])
    with pytest.raises(ValueError, match=r"median\(b\) is 0"):
        stats.ratio_ci([1.0], [0.0, 0.0])


@pytest.mark.parametrize("bad, message", [
    ([], "empty"),
    (np.array([]), "empty"),
    ([1.0, float("nan")], "non-finite.*index 1: nan"),
    ([float("inf")], "non-finite"),
    ([1.0, -2.0], "negative.*index 1: -2.0"),
    ([[1.0, 2.0]], "1-D"),
    (1.0, "1-D"),
    (["fast"], "sequence of seconds"),
])
def test_bad_samples_raise_a_value_error_that_names_the_problem(bad, message):
    with pytest.raises(ValueError, match=message):
        stats.summarize(bad)
    with pytest.raises(ValueError, match=message):
        stats.bootstrap_median_ci(bad)


def test_bad_bootstrap_arguments():
    with pytest.raises(ValueError, match="confidence"):
        stats.summarize([1.0], confidence=95)
    with pytest.raises(ValueError, match="n_boot"):
        stats.bootstrap_median_ci([1.0], n_boot=0)


def test_throughput():
    assert stats.throughput(32, 0.5) == 64.0
    with pytest.raises(ValueError, match="seconds"):
        stats.throughput(32, 0.0)
    with pytest.raises(ValueError, match="seconds"):
        stats.throughput(32, float("nan"))
    with pytest.raises(ValueError, match="batch_size"):
        stats.throughput(0, 1.0)
