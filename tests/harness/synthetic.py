"""Synthetic run folders: what `bench run` writes, with chosen timings, for the report and plot tests.

`make_run(path)` writes a run of 2 models x 3 frameworks x 2 batch sizes x 2 phases on the CPU,
each cell's samples spread around a known median (MEDIANS), plus the things a report must point
out: a noisy cell, an unverified cell (its check failed at a named layer), a crashed cell and a
skipped cell. Every cell stores its check with per-tensor errors, as the workers do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness import results

__all__ = ["FRAMEWORKS", "MODELS", "BATCHES", "PHASES", "NOISY", "UNVERIFIED", "CRASHED", "SKIPPED", "key",
           "median_of", "make_run"]

FRAMEWORKS = ("reference", "torch", "tensorflow")
MODELS = ("mlp", "lenet5")
BATCHES = (8, 64)
PHASES = ("forward", "train_step")
# the speed of each framework relative to the reference, per model
_SPEED = {"mlp": {"reference": 1.0, "torch": 1.6, "tensorflow": 9.0},
          "lenet5": {"reference": 1.3, "torch": 1.0, "tensorflow": 1.0}}  # torch and tensorflow: a tie
_BASE_S = {"mlp": 1e-4, "lenet5": 2e-3}
_PHASE = {"forward": 1.0, "train_step": 3.0}

NOISY = ("lenet5", "tensorflow", 64, "forward")
UNVERIFIED = ("mlp", "torch")  # its check fails: every cell of it is unverified
CRASHED = ("mlp", "tensorflow", 64, "train_step")
SKIPPED = ("lenet5", "reference", 8, "forward")

ENVIRONMENT = {
    "cpu": {"model": "Synthetic CPU 1000", "machine": "x86_64", "logical_cores": 4, "affinity_cores": 4},
    "memory_bytes": 16 * 2**30, "os": {"system": "Linux", "release": "6.1"}, "hostname": "synthetic",
    "python": {"version": "3.11.7"}, "packages": {"numpy": "2.4.6", "torch": "2.13.0", "tensorflow": "2.21.0"},
    "blas": {"name": "openblas", "version": "0.3.31"}, "gpus": [], "git": {"commit": "c" * 40, "dirty": False},
    "thread_env": {"TF_ENABLE_ONEDNN_OPTS": "1"},
}


def key(model: str, framework: str, batch: int, phase: str) -> str:
    return f"{model}.{framework}.cpu.float32.eager.b{batch}.{phase}.t2"


def median_of(model: str, framework: str, batch: int, phase: str) -> float:
    return _BASE_S[model] * _SPEED[model][framework] * _PHASE[phase] * (batch / 8) ** 0.7


def _check(model: str, framework: str, failed: bool) -> dict:
    tensors = []
    for i, name in enumerate(("output", "loss", "layer:fc1", "grad:fc1.weight", "grad:input", "sgd:fc1.weight")):
        normwise = 0.0 if framework == "reference" and name == "loss" else 3e-8 * (i + 1)
        if failed and name == "layer:fc1":
            normwise = 0.3
        stage = "forward" if i < 3 else ("gradient" if i < 5 else "update")
        tensors.append({"tensor": name, "stage": stage, "layer": "fc1" if "fc1" in name else None, "shape": [8, 10],
                        "max_abs": normwise, "normwise": normwise, "atol": 1e-6, "rtol": 1e-4,
                        "normwise_tol": 1e-5, "passed": normwise <= 1e-5, "note": ""})
    return {"status": "fail" if failed else "pass", "first_divergence": "fc1 (forward)" if failed else None,
            "worst_tensor": "layer:fc1", "worst_normwise": max(t["normwise"] for t in tensors), "reason": "",
            "tensors": tensors}


def make_run(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    results.write_run(path, {"suite": {"name": "synthetic", "description": "a made-up run for tests"},
                             "environment": ENVIRONMENT, "peak_gflops": {"cpu": 150.0}, "knobs": {}})
    for model in MODELS:
        for framework in FRAMEWORKS:
            for batch in BATCHES:
                for phase in PHASES:
                    which = (model, framework, batch, phase)
                    cell = {"model": model, "framework": framework, "device": "cpu", "dtype": "float32",
                            "mode": "eager", "batch_size": batch, "phase": phase, "threads": 2}
                    doc = {"cell": cell, "status": "ok", "reason": "", "flops": 2e6 * batch,
                           "verified": which[:2] != UNVERIFIED,
                           "check": _check(model, framework, failed=which[:2] == UNVERIFIED)}
                    spread = 0.6 if which == NOISY else 0.01
                    doc["samples_s"] = list(median_of(*which) * (1 + spread * rng.uniform(-1, 1, 15)))
                    if which == CRASHED:
                        doc.update(status="crashed", reason="the worker died (SIGSEGV)", samples_s=[], verified=None)
                    if which == SKIPPED:
                        doc.update(status="skipped", reason="not here", samples_s=[], verified=None, check=None)
                    results.write_cell(path, key(*which), doc)
    return path
