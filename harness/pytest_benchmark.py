"""A run in pytest-benchmark's JSON format, so that its `compare` tooling works on fwbench runs.

One benchmark per cell that ran: group = the workload (model, phase, batch, dtype, device, threads),
name = framework[mode], the cell's fields as params, and the raw samples as `data`, from which the
statistics are computed the way pytest-benchmark computes its own.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from . import results
from .stats import summarize

__all__ = ["to_pytest_benchmark", "export_run"]

_FORMAT_VERSION = "5.1.0"  # the pytest-benchmark JSON layout written here


def _stats(samples: list[float], iterations: int) -> dict:
    """pytest-benchmark's 'stats' block: fwbench's statistics, plus its outlier counts."""
    stats = summarize(samples)
    data = np.asarray(samples, dtype=np.float64)
    low, high = stats.q1 - 1.5 * stats.iqr, stats.q3 + 1.5 * stats.iqr
    inside = data[(data >= low) & (data <= high)]
    iqr_outliers = int(len(data) - len(inside))
    stddev_outliers = int(np.sum(np.abs(data - stats.mean) > stats.stdev))
    return {
        "min": stats.min, "max": stats.max, "mean": stats.mean, "stddev": stats.stdev, "rounds": stats.n,
        "median": stats.median, "iqr": stats.iqr, "q1": stats.q1, "q3": stats.q3,
        "iqr_outliers": iqr_outliers, "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": float(inside.min()) if len(inside) else stats.min,
        "hd15iqr": float(inside.max()) if len(inside) else stats.max,
        "ops": 1.0 / stats.mean if stats.mean > 0 else 0.0, "total": float(data.sum()) * iterations,
        "data": [float(v) for v in data], "iterations": int(iterations),
    }


def to_pytest_benchmark(run: results.Run | str | Path) -> dict:
    """The run (a Run already read, or its folder) as pytest-benchmark's JSON document."""
    run = run if isinstance(run, results.Run) else results.read(run)
    env = run.meta.get("environment", {})
    git = env.get("git") or {}
    benchmarks = []
    for key, record in run.records.items():
        if record.status != "ok" or not record.samples_s:
            continue
        c = record.cell
        group = f"{c.model} {c.phase} b{c.batch_size} {c.dtype} {c.device} t{c.threads}"
        benchmarks.append({
            "group": group,
            "name": f"{c.framework}[{c.mode}]",
            "fullname": f"{run.path.name}::{key}",
            "params": c.to_dict(),
            "param": key,
            "extra_info": {"how": record.how, "first_call_s": record.first_call_s,
                           "verified": record.verified, "flops": record.flops},
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": len(record.samples_s),
                        "max_time": None, "min_time": None, "precision": None, "confidence": None,
                        "warmup": bool(record.warmup_calls)},
            "stats": _stats(list(record.samples_s), int(record.iters_per_sample or 1)),
        })
    uname = platform.uname()
    return {
        "machine_info": {
            "node": uname.node, "processor": uname.processor, "machine": uname.machine,
            "python_compiler": platform.python_compiler(),
            "python_implementation": platform.python_implementation(),
            "python_implementation_version": platform.python_version(),
            "python_version": platform.python_version(), "python_build": list(platform.python_build()),
            "release": uname.release, "system": uname.system,
            "cpu": {"brand_raw": (env.get("cpu") or {}).get("model"),
                    "count": (env.get("cpu") or {}).get("logical_cores")},
        },
        "commit_info": {"id": git.get("commit"), "time": run.meta.get("started"),
                        "author_time": run.meta.get("started"), "dirty": git.get("dirty"), "project": "fwbench",
                        "branch": None},
        "benchmarks": benchmarks,
        "datetime": run.meta.get("finished") or run.meta.get("started"),
        "version": _FORMAT_VERSION,
    }


def export_run(run: results.Run | str | Path, path: str | Path) -> Path:
    path = Path(path)
    results.atomic_write_json(path, to_pytest_benchmark(run))
    return path
