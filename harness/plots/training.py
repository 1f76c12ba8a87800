"""The figures of a `bench train` run: loss curves, test accuracy against time, distance from the
reference's trajectory. Each takes the run (harness.training.analysis.TrainRun, read by the caller:
nothing here reads files or computes a verdict) and returns a Plot.

Contenders keep their framework's colour (style.framework_color); float64 ones are drawn dashed,
the float64 reference black, on top.
"""

from __future__ import annotations

import numpy as np

from . import layout
from .style import framework_color

__all__ = ["plot_loss_curves", "plot_time_to_accuracy", "plot_trajectory", "training_plots"]

_TRUTH_COLOR = "#000000"


def _look(c) -> dict:
    if c.is_truth:
        return {"color": _TRUTH_COLOR, "linestyle": "-", "linewidth": 1.2, "zorder": 5}
    return {"color": framework_color(c.framework), "linestyle": "--" if c.dtype == "float64" else "-",
            "linewidth": 1.0, "zorder": 3}


def _footer(run) -> str:
    meta = {**run.meta, "suite": f"train {run.config.model} on {run.config.dataset}"}
    return layout.footer(meta, None, {c.framework for c in run.config.contenders})


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(y) < window:
        return y
    kernel = np.ones(window) / window
    return np.convolve(y, kernel, mode="valid")


def plot_loss_curves(run) -> layout.Plot | None:
    """The training loss of every step, every contender overlaid, with the epochs' test loss."""
    runs = [r for r in run.runs.values() if len(r.epochs) > 1]
    if not runs:
        return None
    steps = len(run.truth.epochs[1]["losses"]) if len(run.truth.epochs) > 1 else len(runs[0].epochs[1]["losses"])
    window = max(1, steps // 10)
    fig = layout.figure(11, 5.2)
    ax_step, ax_epoch = fig.subplots(1, 2, width_ratios=(2.2, 1))
    handles = []
    for r in runs:
        look = _look(r.contender)
        y = r.losses
        line, = ax_step.plot(np.arange(len(y))[window - 1:] if len(y) >= window else np.arange(len(y)),
                             _smooth(y, window), label=r.contender.label, **look)
        handles.append(line)
        epochs = [e["epoch"] for e in r.epochs]
        ax_epoch.plot(epochs, [e["test_loss"] for e in r.epochs], marker="o", markersize=3, **look)
    ax_step.set_xlabel("step")
    ax_step.set_ylabel(f"training loss (mean of the last {window} steps)" if window > 1 else "training loss")
    ax_step.set_yscale("log")
    ax_epoch.set_xlabel("epoch (0: before training)")
    ax_epoch.set_ylabel("test loss")
    ax_epoch.set_yscale("log")
    for ax in (ax_step, ax_epoch):
        ax.grid(True, alpha=0.3)
    layout.finish(fig, f"{run.config.model} on {run.config.dataset}: the loss in every framework", _footer(run),
                  handles)
    return layout.Plot("train_loss", "Loss curves", f"Left: the training loss of each step (batch "
                       f"{run.config.batch_size}, every contender on the same batches), a running mean over "
                       f"{window} steps. Right: the test loss at the end of each epoch. The float64 reference is "
                       "black; float64 contenders are dashed. Curves that lie on top of each other are the point.",
                       fig)


def plot_time_to_accuracy(run) -> layout.Plot | None:
    """Test accuracy at the end of each epoch against the training time spent so far."""
    runs = [r for r in run.runs.values() if len(r.epochs) > 1]
    if not runs:
        return None
    fig = layout.figure(8.5, 5)
    ax = fig.subplots()
    handles = []
    for r in runs:
        t = np.cumsum([0.0] + r.epoch_seconds)
        acc = [e["test_accuracy"] for e in r.epochs]
        line, = ax.plot(t[:len(acc)], acc, marker="o", markersize=3.5, label=r.contender.label, **_look(r.contender))
        handles.append(line)
    target = run.config.target_accuracy
    ax.axhline(target, color="#888888", linewidth=0.8, linestyle=":")
    ax.text(0.995, target, f"target {target:.0%}", transform=ax.get_yaxis_transform(), ha="right", va="bottom",
            fontsize=8, color="#555555")
    firsts = [r.epoch_seconds[0] for r in runs if r.epoch_seconds and r.epoch_seconds[0] > 0]
    ax.set_xscale("symlog", linthresh=max(1e-3, min(firsts, default=1.0)))
    ax.set_xlim(left=0)
    ax.set_xlabel("training time (s, timed train steps only; log scale past the first epoch)")
    ax.set_ylabel("test accuracy")
    ax.grid(True, alpha=0.3)
    layout.finish(fig, f"{run.config.model}: test accuracy against training time", _footer(run), handles)
    return layout.Plot("train_time_to_accuracy", "Time to accuracy",
                       "Each point is the end of an epoch: the test accuracy then, against the time of the timed "
                       "train steps so far (evaluation excluded). The dotted line is the target whose time to reach "
                       "the table reports. The first epoch includes compiling (jit, tf.function's tracing), as a "
                       "user's first epoch does.", fig)


def plot_trajectory(run, deviations: dict[str, np.ndarray], limits: dict[str, float]) -> layout.Plot | None:
    """|loss - loss_ref| / |loss_ref| per step, log scale: where each contender parts from the float64
    reference. deviations: per contender key, the deviation of each step (training.analysis's
    loss_deviation); limits: the lines to draw, {"float64 tolerance": 1e-10, "float32 band": 1e-3}."""
    others = [r for r in run.runs.values() if not r.contender.is_truth and len(r.epochs) > 1]
    if not others or len(run.truth.epochs) < 2:
        return None
    fig = layout.figure(11, 5)
    ax = fig.subplots()
    handles = []
    # exact agreement is drawn at the floor: far below float64 rounding when a float64 contender is
    # drawn, else just below the float64 tolerance's line
    floor = 1e-18 if any(r.contender.dtype == "float64" for r in others) else 1e-11
    for r in others:
        d = deviations[r.contender.key]
        look = {**_look(r.contender), "linewidth": 0.7}
        line, = ax.plot(np.arange(len(d)), np.clip(d, floor, 1e3), label=r.contender.label, alpha=0.85, **look)
        handles.append(line)
    ax.set_yscale("log")
    for text, value in limits.items():
        ax.axhline(value, color="#888888", linewidth=0.8, linestyle=":")
        ax.text(0.995, value, f"{text} {value:.0e}", transform=ax.get_yaxis_transform(), ha="right", va="bottom",
                fontsize=8, color="#555555")
    steps = len(run.truth.epochs[1]["losses"])
    for epoch in range(1, len(run.truth.epochs) - 1):
        ax.axvline(epoch * steps, color="#dddddd", linewidth=0.6, zorder=0)
    ax.set_ylim(floor, None)
    ax.set_xlabel("step (thin lines: epoch ends)")
    ax.set_ylabel("|loss - loss of the float64 reference| / loss")
    ax.grid(True, axis="y", alpha=0.3)
    layout.finish(fig, f"{run.config.model}: distance from the float64 reference's trajectory", _footer(run), handles)
    return layout.Plot("train_trajectory", "Distance from the reference trajectory",
                       "The relative difference of each step's loss from the float64 reference's on the same batch, "
                       f"log scale (exact agreement is drawn at {floor:.0e}). A float64 framework must stay under its "
                       "tolerance; float32 ones start at rounding (~1e-7) and drift up as rounding compounds. A jump "
                       "at one step is where a framework starts computing something else.", fig)


def training_plots(run, deviations: dict[str, np.ndarray], limits: dict[str, float]) -> list[layout.Plot]:
    """Every figure of a training run (see plot_trajectory for deviations and limits)."""
    found = (plot_loss_curves(run), plot_time_to_accuracy(run), plot_trajectory(run, deviations, limits))
    return [p for p in found if p is not None]
