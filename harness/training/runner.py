"""Run `bench train`: every contender in a worker of its own, epoch by epoch, interleaved.

A run folder `results/<run-id>/` holds run.json ("kind": "train", the config, the dataset, the
environment) and, per contender, `train/<contender>/epoch-NNN.json` (epoch 0 is the evaluation
before the first step) and `weights-NNN.npz` (the parameters at the end of each epoch, float64).
Each epoch's file is written atomically the moment the epoch ends: Ctrl-C or a crash keeps every
finished epoch, and `--resume` goes on from there.

Epochs are interleaved: epoch e of every contender runs before epoch e + 1 of any, in an order
shuffled per epoch, so that a machine that slows down for a minute slows every framework alike.
The contract has no way to export an optimizer's state (Adam's moments), so a resumed contender
replays its finished epochs, untimed, to rebuild it: the replayed step losses are compared with
those on disk, and the largest difference is recorded in run.json ("replays").
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .. import datasets, metadata, store
from ..workers import Worker, WorkerDied, WorkerTimeout
from .config import Contender, TrainConfig, steps_per_epoch

__all__ = ["KIND", "TRAIN_DIR", "start", "resume", "train", "TrainSummary", "epoch_path", "weights_path",
           "prepare_data"]

KIND = "train"
TRAIN_DIR = "train"
REQUEST_TIMEOUT_S = 900.0  # one chunk of steps, or one evaluation
CHUNKS_PER_EPOCH = 20  # the progress bar moves this often; the clock runs inside the worker, per step

Progress = Callable[..., None]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def epoch_path(run_dir: Path, contender: Contender, epoch: int) -> Path:
    return Path(run_dir) / TRAIN_DIR / contender.key / f"epoch-{epoch:03d}.json"


def weights_path(run_dir: Path, contender: Contender, epoch: int) -> Path:
    return Path(run_dir) / TRAIN_DIR / contender.key / f"weights-{epoch:03d}.npz"


def failure_path(run_dir: Path, contender: Contender) -> Path:
    return Path(run_dir) / TRAIN_DIR / contender.key / "failure.json"


@dataclass(slots=True)
class TrainSummary:
    run_dir: Path
    epochs_done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    seconds: float = 0.0


def prepare_data(config: TrainConfig) -> tuple[Path, dict]:
    """The dataset preprocessed once, in float64, as .npy files in a temporary folder that every
    worker maps: inputs, the loss's targets and the class labels of both splits."""
    ds = datasets.load(config.dataset, config.data_dir).limited(config.limit_train, config.limit_test)
    spec = config.spec
    folder = Path(tempfile.mkdtemp(prefix="fwbench-train-"))
    arrays = {"x_train": ds.x_train, "t_train": datasets.targets_for(spec, ds.y_train), "y_train": ds.y_train,
              "x_test": ds.x_test, "t_test": datasets.targets_for(spec, ds.y_test), "y_test": ds.y_test}
    for name, a in arrays.items():
        np.save(folder / f"{name}.npy", np.ascontiguousarray(a))
    return folder, ds.describe()


def start(config: TrainConfig, results_dir: str | Path = "results", run_id: str | None = None) -> Path:
    """Create the run folder and its run.json; the dataset is loaded here once, so that a missing
    one is reported before any folder is made."""
    described = datasets.load(config.dataset, config.data_dir).limited(config.limit_train,
                                                                        config.limit_test).describe()
    results_dir = Path(results_dir)
    run_id = run_id or store.new_run_id(f"train-{config.model}", results_dir=results_dir)
    run_dir = results_dir / run_id
    (run_dir / TRAIN_DIR).mkdir(parents=True, exist_ok=False)
    store.write_run(run_dir, {"kind": KIND, "run_id": run_id, "config": config.to_dict(), "dataset": described,
                              "environment": metadata.environment(), "thread_env": metadata.thread_env(),
                              "status": "running", "started": _now(), "replays": {}})
    return run_dir


def resume(run_dir: str | Path) -> tuple[TrainConfig, Path]:
    run_dir = Path(run_dir)
    meta = store.read_run(run_dir)
    if meta.get("kind") != KIND:
        raise store.ResultsError(f"{run_dir}: not a `bench train` run (no \"kind\": \"train\" in its run.json); "
                                 "resume a `bench run` with `bench run --resume`")
    return TrainConfig.from_dict(meta["config"]), run_dir


def _done_epochs(run_dir: Path, contender: Contender) -> list[int]:
    folder = Path(run_dir) / TRAIN_DIR / contender.key
    return sorted(int(p.stem.split("-")[1]) for p in folder.glob("epoch-*.json")) if folder.is_dir() else []


class _Trainee:
    """A contender's worker and how far it has come."""

    def __init__(self, contender: Contender, config: TrainConfig, data: Path, extra_env: dict | None) -> None:
        self.contender, self.config = contender, config
        self.worker = Worker(contender.framework, contender.device, config.threads, extra_env)
        self.open_reply: dict = {}
        self.data = data

    def request(self, msg: dict) -> dict:
        reply = self.worker.request(msg, REQUEST_TIMEOUT_S)
        if not reply.get("ok"):
            raise _Failed(reply.get("kind", "error"), reply.get("error", ""), self.worker.stderr_tail(1500))
        return reply

    def open(self) -> None:
        setup = self.request({"op": "setup", "framework": self.contender.framework, "threads": self.config.threads})
        if not setup.get("available", True):
            raise _Failed("skipped", setup.get("reason") or f"{self.contender.framework} is not available", "")
        self.setup = setup
        self.open_reply = self.request({"op": "train_open", "contender": self.contender.to_dict(),
                                        "config": self.config.to_dict(), "data": str(self.data)})


class _Failed(Exception):
    def __init__(self, kind: str, reason: str, stderr_tail: str) -> None:
        super().__init__(reason)
        self.kind, self.reason, self.stderr_tail = kind, reason, stderr_tail


def train(config: TrainConfig, run_dir: str | Path, *, progress: Progress | None = None,
          extra_env: dict | None = None) -> TrainSummary:
    """Train every contender of `config` for the epochs not yet in `run_dir`. Raises
    KeyboardInterrupt after keeping every finished epoch (run.json then says 'interrupted')."""
    progress = progress or (lambda event, **d: None)
    run_dir = Path(run_dir)
    meta = store.read_run(run_dir)
    summary = TrainSummary(run_dir)
    started = time.monotonic()
    data, described = prepare_data(config)
    n_train = described["train"]
    steps = steps_per_epoch(n_train, config.batch_size)
    trainees: dict[Contender, _Trainee] = {}
    failed = {c for c in config.contenders if failure_path(run_dir, c).exists()}
    done = {c: _done_epochs(run_dir, c) for c in config.contenders}
    stopped = {c for c in config.contenders if done[c] and _stopped(run_dir, c, done[c][-1])}
    todo_epochs = sum(config.epochs + 1 - len(done[c]) for c in config.contenders if c not in failed | stopped)
    progress("start", config=config, steps=steps, todo=todo_epochs, run_dir=run_dir)

    def fail(c: Contender, e: Exception) -> None:
        if isinstance(e, _Failed):
            kind, reason, tail = e.kind, e.reason, e.stderr_tail
        elif isinstance(e, WorkerTimeout):
            kind, reason, tail = "timeout", str(e), e.stderr_tail
        else:  # WorkerDied
            kind, reason, tail = e.kind, str(e), e.stderr_tail
        store.atomic_write_json(failure_path(run_dir, c), {"contender": c.to_dict(), "status": kind, "reason": reason,
                                                           "stderr_tail": tail, "at": _now(),
                                                           "schema_version": store.SCHEMA_VERSION})
        failed.add(c)
        summary.failed[c.key] = f"{kind}: {reason}"
        trainee = trainees.pop(c, None)
        if trainee is not None:
            trainee.worker.kill()
            trainee.worker.close()
        progress("failed", contender=c, kind=kind, reason=reason)

    def trainee(c: Contender) -> _Trainee:
        if c not in trainees:
            t = _Trainee(c, config, data, extra_env)
            trainees[c] = t
            t.open()
            if done[c]:  # resumed: rebuild the optimizer's state by replaying the finished epochs
                _replay(t, run_dir, done[c], steps, meta, progress)
        return trainees[c]

    try:
        for epoch in range(0, config.epochs + 1):
            order = list(config.contenders)
            if epoch:
                np.random.default_rng([config.seed, epoch, 7]).shuffle(order)
            for position, c in enumerate(order):
                if c in failed or c in stopped or epoch in done[c]:
                    continue
                try:
                    t = trainee(c)
                    record = _epoch(t, epoch, steps, progress) if epoch else {"epoch": 0, "losses": [],
                                                                               "step_seconds": [], "seconds": 0.0}
                    ev = t.request({"op": "train_eval", "epoch": epoch,
                                    "weights": str(weights_path(run_dir, c, epoch))})
                except (_Failed, WorkerDied, WorkerTimeout) as e:
                    fail(c, e)
                    continue
                record.update({k: ev[k] for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy",
                                                  "peak_memory_bytes", "memory_kind")})
                record.update(contender=c.to_dict(), eval_seconds=ev["seconds"], position=position, finished=_now(),
                              schema_version=store.SCHEMA_VERSION)
                if epoch == 0:
                    record.update(how=t.open_reply.get("how"), knobs=t.open_reply.get("knobs"),
                                  version=t.open_reply.get("version"), threads_applied=t.setup.get("threads_applied"))
                bad = [i for i, v in enumerate(record["losses"]) if not np.isfinite(v)]
                if bad or not np.isfinite(record["train_loss"]):
                    step = (epoch - 1) * steps + (bad[0] if bad else len(record["losses"]) - 1)
                    record["stopped"] = f"non-finite loss at step {step}: training stopped"
                    stopped.add(c)
                store.atomic_write_json(epoch_path(run_dir, c, epoch), record)
                done[c].append(epoch)
                summary.epochs_done += 1
                progress("epoch", contender=c, record=record, elapsed=time.monotonic() - started)
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        for t in trainees.values():
            t.worker.close()
        shutil.rmtree(data, ignore_errors=True)
        meta = store.read_run(run_dir)
        meta["status"] = "interrupted" if summary.interrupted else "finished"
        meta["finished"] = _now()
        store.write_run(run_dir, meta)
        summary.seconds = time.monotonic() - started
        progress("finish", summary=summary)
    return summary


def _stopped(run_dir: Path, c: Contender, epoch: int) -> bool:
    return bool(store.read_json(epoch_path(run_dir, c, epoch)).get("stopped"))


def _epoch(t: _Trainee, epoch: int, steps: int, progress: Progress) -> dict:
    chunk = max(1, steps // CHUNKS_PER_EPOCH)
    losses: list[float] = []
    seconds: list[float] = []
    progress("epoch_start", contender=t.contender, epoch=epoch, steps=steps)
    for begin in range(0, steps, chunk):
        reply = t.request({"op": "train_steps", "epoch": epoch, "start": begin, "stop": min(steps, begin + chunk)})
        losses += reply["losses"]
        seconds += reply["seconds"]
        progress("steps", contender=t.contender, n=len(reply["losses"]))
        if not all(np.isfinite(reply["losses"])):
            break  # diverged: the rest of the epoch would only add NaNs
    return {"epoch": epoch, "losses": losses, "step_seconds": seconds, "seconds": float(sum(seconds))}


def _replay(t: _Trainee, run_dir: Path, epochs: list[int], steps: int, meta: dict, progress: Progress) -> None:
    worst = 0.0
    replayed = [e for e in epochs if e > 0]
    for epoch in replayed:
        stored = store.read_json(epoch_path(run_dir, t.contender, epoch))["losses"]
        progress("replay", contender=t.contender, epoch=epoch)
        again = t.request({"op": "train_steps", "epoch": epoch, "start": 0, "stop": steps})["losses"]
        if len(again) != len(stored):
            worst = float("inf")
        else:
            worst = max(worst, float(np.max(np.abs(np.asarray(again) - np.asarray(stored)), initial=0.0)))
    if replayed:
        meta = store.read_run(run_dir)
        meta.setdefault("replays", {})[t.contender.key] = {"epochs": replayed, "max_loss_difference": worst,
                                                           "at": _now()}
        store.write_run(run_dir, meta)
