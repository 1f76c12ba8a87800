"""A `bench train` run read back, and its verdicts: does each framework follow the float64
reference's trajectory, does it learn, does it reach the same accuracy, and how fast.

The measures, per contender against the float64 reference (the "truth"), on the same batches:
- the loss deviation of each step, |loss - loss_ref| / |loss_ref|, and the parameters' deviation at
  the end of each epoch, ||w - w_ref|| / ||w_ref|| over all parameters;
- in float64, the largest of each, against FLOAT64_TOLERANCE: a framework that computes the
  reference's function follows it step for step, to rounding (docs/equivalence.md has the
  measurements). The first step past it is where the framework leaves the trajectory;
- in float32, the first step whose loss leaves FLOAT32_BAND of the reference's: rounding makes
  every float32 run drift away eventually, so this is reported beside the float32 reference's own
  step, not judged;
- the final test accuracy with its Wilson 95% interval, and whether it agrees with the
  reference's: the difference within the 95% interval of a difference of two binomial proportions;
- learning: by each epoch the training loss must have fallen by at least half as much as the
  reference's did from the same start, and in each epoch where the reference's fell by more than
  1% of itself, by at least half as much as the reference's in that epoch; a framework that falls
  behind fails, naming the epoch; a non-finite loss is a divergence, naming the epoch and step;
- time per epoch (the timed train_step calls), and time to the target test accuracy, counted in
  training time at the end of the first epoch that reaches it (MLPerf's time to train).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import store
from .config import Contender, TrainConfig
from .runner import KIND, TRAIN_DIR, failure_path, weights_path

__all__ = ["FLOAT64_TOLERANCE", "FLOAT32_BAND", "LEARNING_SHARE", "LEARNING_EPOCH_GAIN", "TrainRun", "Verdict",
           "read", "verdicts", "load", "wilson", "accuracies_agree", "loss_deviation", "param_deviations"]

# Measured here: torch, TensorFlow and JAX in float64 stay within 1.3e-15 of the reference's loss
# over 20 epochs of digits (1,800 steps); 1e-10 leaves five orders of magnitude for longer runs
# and larger models, and is still 1,000x below float32's rounding (Keras's float32 sums in float64
# models part at 1e-7 from the first step).
FLOAT64_TOLERANCE = 1e-10
FLOAT32_BAND = 1e-3  # 0.1% of the loss: far above float32's 1e-7 at the start, far below a different model's
LEARNING_SHARE = 0.5
LEARNING_EPOCH_GAIN = 0.01  # an epoch in which the reference's loss falls by more than 1% of itself is one of learning


@dataclass(slots=True)
class ContenderRun:
    contender: Contender
    epochs: list[dict] = field(default_factory=list)  # epoch 0 first
    failure: dict | None = None

    @property
    def losses(self) -> np.ndarray:
        return np.concatenate([np.asarray(e["losses"], dtype=float) for e in self.epochs[1:]]) if \
            len(self.epochs) > 1 else np.zeros(0)

    @property
    def epoch_seconds(self) -> list[float]:
        return [e["seconds"] for e in self.epochs[1:]]


@dataclass(slots=True)
class TrainRun:
    path: Path
    meta: dict
    config: TrainConfig
    runs: dict[str, ContenderRun]

    @property
    def truth(self) -> ContenderRun:
        return self.runs[self.config.truth.key]


def read(run_dir) -> TrainRun:
    run_dir = Path(run_dir)
    meta = store.read_run(run_dir)
    if meta.get("kind") != KIND:
        raise store.ResultsError(f"{run_dir}: not a `bench train` run")
    config = TrainConfig.from_dict(meta["config"])
    runs = {}
    for c in config.contenders:
        folder = run_dir / TRAIN_DIR / c.key
        epochs = [store.read_json(p) for p in sorted(folder.glob("epoch-*.json"))] if folder.is_dir() else []
        f = failure_path(run_dir, c)
        runs[c.key] = ContenderRun(c, epochs, store.read_json(f) if f.exists() else None)
    return TrainRun(run_dir, meta, config, runs)


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score 95% interval of a proportion k/n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def accuracies_agree(a: float, b: float, n: int, z: float = 1.96) -> tuple[bool, float]:
    """Whether two accuracies on n test samples differ by no more than the 95% interval of a
    difference of two binomial proportions; (agree, that interval's half-width)."""
    half = z * math.sqrt(max(a * (1 - a) + b * (1 - b), 1.0 / n) / n)
    return abs(a - b) <= half, half


@dataclass(slots=True)
class Verdict:
    contender: Contender
    status: str  # 'pass', 'fail', 'error' (its worker failed), 'incomplete' (fewer epochs than asked)
    reasons: list[str] = field(default_factory=list)
    epochs: int = 0
    steps: int = 0
    max_loss_deviation: float | None = None
    max_param_deviation: float | None = None
    leaves_at_step: int | None = None  # the first step past the tolerance (float64) or band (float32)
    tolerance: float | None = None
    final_test_accuracy: float | None = None
    accuracy_ci: tuple[float, float] | None = None
    accuracy_agrees: bool | None = None
    epoch_seconds: list[float] = field(default_factory=list)
    time_to_target_s: float | None = None
    target_epoch: int | None = None
    peak_memory_bytes: int | None = None
    memory_kind: str | None = None

    @property
    def median_epoch_s(self) -> float | None:
        return float(np.median(self.epoch_seconds)) if self.epoch_seconds else None

    def to_dict(self) -> dict:
        return {"contender": self.contender.to_dict(), "key": self.contender.key, "label": self.contender.label,
                "status": self.status, "reasons": self.reasons, "epochs": self.epochs, "steps": self.steps,
                "max_loss_deviation": self.max_loss_deviation, "max_param_deviation": self.max_param_deviation,
                "leaves_at_step": self.leaves_at_step, "tolerance": self.tolerance,
                "final_test_accuracy": self.final_test_accuracy,
                "accuracy_ci": list(self.accuracy_ci) if self.accuracy_ci else None,
                "accuracy_agrees": self.accuracy_agrees, "epoch_seconds": self.epoch_seconds,
                "median_epoch_s": self.median_epoch_s, "time_to_target_s": self.time_to_target_s,
                "target_epoch": self.target_epoch, "peak_memory_bytes": self.peak_memory_bytes,
                "memory_kind": self.memory_kind}


def _flat_weights(path: Path) -> np.ndarray | None:
    if not path.exists():
        return None
    with np.load(path) as f:
        return np.concatenate([f[k].ravel() for k in sorted(f.files)])


def param_deviations(run: TrainRun, c: Contender) -> list[float | None]:
    """||w - w_ref|| / ||w_ref|| at the end of each epoch (None where either file is missing)."""
    out = []
    for epoch in range(1, len(run.runs[c.key].epochs)):
        w, ref = (_flat_weights(weights_path(run.path, x, epoch)) for x in (c, run.config.truth))
        out.append(None if w is None or ref is None or w.shape != ref.shape else
                   float(np.linalg.norm(w - ref) / (np.linalg.norm(ref) or 1.0)))
    return out


def loss_deviation(run: TrainRun, c: Contender) -> np.ndarray:
    """Per step, |loss - loss_ref| / |loss_ref|, over the steps both have."""
    mine, ref = run.runs[c.key].losses, run.truth.losses
    n = min(len(mine), len(ref))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.abs(mine[:n] - ref[:n]) / np.abs(ref[:n])
    return np.where(np.isfinite(d), d, np.inf)


def verdicts(run: TrainRun) -> list[Verdict]:
    config = run.config
    truth = run.truth
    n_test = run.meta.get("dataset", {}).get("test", 0)
    steps_per_epoch = None
    if len(truth.epochs) > 1:
        steps_per_epoch = len(truth.epochs[1]["losses"])
    out = []
    for c in config.contenders:
        r = run.runs[c.key]
        v = Verdict(c, "pass", epochs=max(0, len(r.epochs) - 1), steps=len(r.losses), epoch_seconds=r.epoch_seconds)
        if r.epochs:
            last = r.epochs[-1]
            v.final_test_accuracy = last["test_accuracy"]
            v.accuracy_ci = wilson(last["test_accuracy"] * n_test, n_test) if n_test else None
            v.peak_memory_bytes = max((e.get("peak_memory_bytes") or 0 for e in r.epochs), default=None)
            v.memory_kind = last.get("memory_kind")
            elapsed = 0.0
            for e in r.epochs[1:]:
                elapsed += e["seconds"]
                if e["test_accuracy"] >= config.target_accuracy:
                    v.time_to_target_s, v.target_epoch = elapsed, e["epoch"]
                    break
        if r.failure:
            v.status = "error"
            v.reasons.append(f"{r.failure['status']}: {r.failure['reason']}")
        stop = next((e for e in r.epochs if e.get("stopped")), None)
        if stop is not None:
            v.status = "fail"
            v.reasons.append(f"diverged in epoch {stop['epoch']}: {stop['stopped']}")
        if not c.is_truth and len(r.epochs) > 1 and len(truth.epochs) > 1:
            _trajectory(run, c, v, steps_per_epoch)
            _learning(r, truth, v)
            if v.final_test_accuracy is not None and n_test and len(r.epochs) == len(truth.epochs):
                agree, half = accuracies_agree(v.final_test_accuracy, truth.epochs[-1]["test_accuracy"], n_test)
                v.accuracy_agrees = agree
                if not agree:
                    v.status = "fail" if v.status == "pass" else v.status
                    v.reasons.append(f"final test accuracy {v.final_test_accuracy:.4f} differs from the reference's "
                                     f"{truth.epochs[-1]['test_accuracy']:.4f} by more than the 95% interval "
                                     f"(+-{half:.4f}, {n_test} test samples)")
        if v.status == "pass" and v.epochs < config.epochs:
            v.status = "incomplete"
            v.reasons.append(f"{v.epochs} of {config.epochs} epochs finished (resume the run)")
        out.append(v)
    return out


def _trajectory(run: TrainRun, c: Contender, v: Verdict, steps_per_epoch: int | None) -> None:
    d = loss_deviation(run, c)
    params = [p for p in param_deviations(run, c) if p is not None]
    v.max_loss_deviation = float(d.max()) if d.size else None
    v.max_param_deviation = max(params) if params else None
    limit = FLOAT64_TOLERANCE if c.dtype == "float64" else FLOAT32_BAND
    v.tolerance = limit
    past = np.flatnonzero(d > limit)
    v.leaves_at_step = int(past[0]) if past.size else None
    if c.dtype != "float64":
        return
    where = ""
    if v.leaves_at_step is not None:
        epoch = v.leaves_at_step // steps_per_epoch + 1 if steps_per_epoch else "?"
        where = f"step {v.leaves_at_step} (epoch {epoch})"
        v.status = "fail"
        v.reasons.append(f"leaves the float64 reference's trajectory at {where}: loss deviation "
                         f"{d[v.leaves_at_step]:.1e} > {limit:.0e}")
    elif v.max_param_deviation is not None and v.max_param_deviation > limit:
        v.status = "fail"
        v.reasons.append(f"its parameters part from the reference's by {v.max_param_deviation:.1e} > {limit:.0e}")


def _learning(r: ContenderRun, truth: ContenderRun, v: Verdict) -> None:
    """Fails the first epoch by which the contender has learnt less than LEARNING_SHARE of what the
    reference learnt since the start, or, in an epoch where the reference's training loss fell by
    more than LEARNING_EPOCH_GAIN of itself, less than LEARNING_SHARE of that fall."""
    if r.epochs[0].get("train_loss") is None or v.status == "error":
        return
    start, ref_start = r.epochs[0]["train_loss"], truth.epochs[0]["train_loss"]
    pairs = list(zip(r.epochs, truth.epochs, strict=False))
    for (before, ref_before), (e, ref) in zip(pairs, pairs[1:], strict=False):
        if e.get("stopped"):
            return
        ref_gain, gain = ref_start - ref["train_loss"], start - e["train_loss"]
        ref_step, step = ref_before["train_loss"] - ref["train_loss"], before["train_loss"] - e["train_loss"]
        why = None
        if ref_gain > 0 and not gain >= LEARNING_SHARE * ref_gain:
            why = f"its training loss fell by {gain:.4g} since the start, the reference's by {ref_gain:.4g}"
        elif ref_step > LEARNING_EPOCH_GAIN * ref_before["train_loss"] and not step >= LEARNING_SHARE * ref_step:
            why = f"its training loss fell by {step:.4g} in that epoch, the reference's by {ref_step:.4g}"
        if why:
            v.status = "fail"
            v.reasons.append(f"does not learn: by the end of epoch {e['epoch']} {why}")
            return


def load(run_dir):
    """A training run as pandas tables, for a notebook: (steps, epochs, verdicts).

    steps: one row per contender and step (epoch, step, loss, seconds, loss_deviation from the
    float64 reference); epochs: one row per contender and epoch (epoch 0 is before training);
    verdicts: one row per contender (Verdict.to_dict, flattened)."""
    import pandas as pd

    run = read(run_dir)
    step_rows, epoch_rows = [], []
    for key, r in run.runs.items():
        c = r.contender
        d = loss_deviation(run, c) if len(r.epochs) > 1 else np.zeros(0)
        base = {"contender": key, "framework": c.framework, "dtype": c.dtype, "mode": c.mode, "device": c.device}
        step = 0
        for e in r.epochs:
            epoch_rows.append({**base, **{k: e.get(k) for k in ("epoch", "seconds", "train_loss", "train_accuracy",
                                                                 "test_loss", "test_accuracy", "eval_seconds",
                                                                 "peak_memory_bytes")}})
            for loss, sec in zip(e["losses"], e["step_seconds"], strict=False):
                step_rows.append({**base, "epoch": e["epoch"], "step": step, "loss": loss, "seconds": sec,
                                  "loss_deviation": float(d[step]) if step < len(d) else None})
                step += 1
    verdict_rows = []
    for v in verdicts(run):
        row = v.to_dict()
        row.pop("contender")
        row.pop("epoch_seconds")
        verdict_rows.append(row)
    return pd.DataFrame(step_rows), pd.DataFrame(epoch_rows), pd.DataFrame(verdict_rows)
