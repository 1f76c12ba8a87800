"""What passes add to a cell: how many it has done, its record after one more, the budget's stopping
rule, and the compilation cache that spares every pass after the first a JIT's compile time.
harness.runner drives the passes; this is the bookkeeping, so that it reads on its own.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from . import levels, results
from .cells import CellRecord
from .distributions import t_quantile

__all__ = ["passes_done", "loops_of", "compile_cache", "tight", "in_pass", "merge"]


def passes_done(record: CellRecord | None, passes: int) -> int:
    """How many of a run's passes a cell has finished: 0 without a record; all of them for a failed
    cell (it is not tried again) and for a record written before passes (one pass was the run)."""
    if record is None:
        return 0
    if record.status != "ok" or record.passes_done is None:
        return passes
    return min(record.passes_done, passes)


def loops_of(run_dir: str | Path) -> dict[str, int]:
    """The iterations per sample of every timed cell of a run, by cell key: `bench run --loops-from`."""
    return {key: record.iters_per_sample for key, record in results.read(run_dir).records.items()
            if record.status == "ok" and record.iters_per_sample}


def compile_cache(folder: str) -> dict[str, str]:
    """JAX's persistent compilation cache, for the run only: every pass starts fresh processes, and
    without it each would compile every jitted phase again (seconds a model on this CPU). The
    programs loaded from it are the ones compiled in the first pass; the first call's time kept is
    the first pass's. A user's own cache setting wins."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return {}
    return {"JAX_COMPILATION_CACHE_DIR": os.path.join(folder, "jax-cache"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}


def tight(samples_s: list[float], rounds: list[int], target: float) -> bool:
    """Whether a cell's median in this pass is known to within ±target: a t interval (95%) over the
    logs of its round medians so far, from at least 3 rounds."""
    medians = levels.round_medians(samples_s, [0] * len(rounds), rounds)
    logs = [math.log(v) for v in medians.values() if v > 0]
    if len(logs) < 3:
        return False
    mean = sum(logs) / len(logs)
    sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / (len(logs) - 1))
    return t_quantile(0.975, len(logs) - 1) * sd / math.sqrt(len(logs)) <= target


def in_pass(record: CellRecord, p: int, passes: int) -> CellRecord:
    """A failure's record, saying in which pass it came when the run has several."""
    if passes > 1 and record.status != "skipped":
        return record.replace(reason=f"in pass {p + 1} of {passes}: {record.reason}")
    return record


def merge(prior: CellRecord | None, new: CellRecord, p: int, rounds: list[int]) -> CellRecord:
    """A cell's record after pass `p`: the earlier passes' samples and this one's, each labelled with
    its pass and round; the first pass's check, calibration and first call; the largest peak memory
    measured (a later pass's prebuilt cell measures none: worker_main._prebuild)."""
    labelled = new.replace(sample_passes=(p,) * len(new.samples_s), sample_rounds=tuple(rounds), passes_done=p + 1)
    if prior is None:
        return labelled
    peaks = [m for m in (prior.peak_memory_bytes, new.peak_memory_bytes) if m is not None]
    return prior.replace(
        samples_s=prior.samples_s + new.samples_s,
        sample_passes=prior.sample_labels()[0] + labelled.sample_passes,
        sample_rounds=prior.sample_labels()[1] + labelled.sample_rounds,
        passes_done=p + 1,
        seconds=(prior.seconds or 0.0) + (new.seconds or 0.0),
        peak_memory_bytes=max(peaks) if peaks else None,
    )
