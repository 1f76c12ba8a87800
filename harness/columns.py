"""The columns of a run's tables (harness.results.load and load_checks), with their pandas dtypes:
one place for the interface that users' notebooks and scripts read (results/README.md documents
each column)."""

from __future__ import annotations

# The statistics of harness.stats.Stats, and their column names (seconds get the unit '_s').
_STAT_COLUMNS = {
    "n": "n", "median": "median_s", "q1": "q1_s", "q3": "q3_s", "iqr": "iqr_s", "min": "min_s",
    "max": "max_s", "mean": "mean_s", "stdev": "stdev_s", "cv": "cv", "ci_low": "ci_low_s",
    "ci_high": "ci_high_s", "noisy": "noisy", "noisy_cv": "noisy_cv", "noisy_iqr": "noisy_iqr",
}
# The statistics by level of harness.levels.LevelStats that replace or join them: the CI and the
# noise flag come from the passes and rounds (harness.levels), not from the samples as if independent.
_LEVEL_COLUMNS = {
    "ci_low": "ci_low_s", "ci_high": "ci_high_s", "noisy": "noisy", "n_passes": "n_passes",
    "n_rounds": "n_rounds", "pass_spread": "pass_spread", "round_spread": "round_spread", "pass_p": "pass_p",
    "top": "ci_top", "detectable": "detectable",
}

# The columns of load(), in order, with their pandas dtypes. Nullable dtypes ('Int64', 'boolean')
# keep integers integers and flags flags in the rows that have no value.
_COLUMN_DTYPES: dict[str, str] = {
    "run_id": "object",
    "key": "object",
    "model": "object",
    "framework": "object",
    "device": "object",
    "dtype": "object",
    "mode": "object",
    "batch_size": "Int64",
    "phase": "object",
    "threads": "Int64",
    "status": "object",
    "reason": "object",
    "verified": "boolean",
    "threads_verified": "boolean",
    "check_status": "object",
    "worst_normwise": "float64",
    "first_divergence": "object",
    "check_reason": "object",
    "timed_status": "object",
    "float64_status": "object",
    "n": "Int64",
    "median_s": "float64",
    "q1_s": "float64",
    "q3_s": "float64",
    "iqr_s": "float64",
    "min_s": "float64",
    "max_s": "float64",
    "mean_s": "float64",
    "stdev_s": "float64",
    "cv": "float64",
    "ci_low_s": "float64",
    "ci_high_s": "float64",
    "noisy": "boolean",
    "noisy_cv": "boolean",
    "noisy_iqr": "boolean",
    "n_passes": "Int64",
    "n_rounds": "Int64",
    "pass_spread": "float64",
    "round_spread": "float64",
    "pass_p": "float64",
    "ci_top": "object",
    "detectable": "float64",
    "samples_per_s": "float64",
    "flops": "float64",
    "gflops_per_s": "float64",
    "peak_share": "float64",
    "phase_sum_ratio": "float64",
    "phase_sum_flag": "boolean",
    "first_call_s": "float64",
    "warmup_calls": "Int64",
    "iters_per_sample": "Int64",
    "peak_memory_bytes": "Int64",
    "memory_kind": "object",
    "how": "object",
    "started": "object",
    "seconds": "float64",
}
COLUMNS = tuple(_COLUMN_DTYPES)
# Added by load(raw=True): the stored lists and settings, one Python object per row.
_RAW_COLUMNS = ("samples_s", "sample_passes", "sample_rounds", "threads_applied", "knobs")


# The columns of load_checks(), in order, with their pandas dtypes.
_CHECK_DTYPES: dict[str, str] = {
    "run_id": "object", "model": "object", "framework": "object", "device": "object", "dtype": "object",
    "mode": "object", "check_status": "object", "first_divergence": "object", "tensor": "object",
    "stage": "object", "layer": "object", "shape": "object", "max_abs": "float64", "normwise": "float64",
    "atol": "float64", "rtol": "float64", "normwise_tol": "float64", "passed": "boolean", "note": "object",
}
CHECK_COLUMNS = tuple(_CHECK_DTYPES)
