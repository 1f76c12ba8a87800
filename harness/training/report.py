"""A `bench train` run as a person reads it: the verdicts first, the figures, the epochs, the
machine; report.md and report.html from one document (harness.report.document's blocks), and the
lines `bench train` prints."""

from __future__ import annotations

import json
from pathlib import Path

from ..fmt import fmt_time, num
from ..report import md, page
from ..report.document import Bullets, Code, Figure, Heading, Link, Paragraph, Strong, Table
from ..report.summary import machine_of, versions_of
from ..report.write import REPORT_HTML, REPORT_MD, render_plot, save_plots
from ..store import atomic_write_bytes, atomic_write_json
from .analysis import FLOAT32_BAND, FLOAT64_TOLERANCE, TrainRun, Verdict, loss_deviation, read, verdicts

__all__ = ["VERDICTS_FILE", "write", "blocks", "verdict_lines", "verdicts_json"]

VERDICTS_FILE = "verdicts.json"


def _acc(v: Verdict) -> str:
    if v.final_test_accuracy is None:
        return "-"
    ci = f" [{v.accuracy_ci[0]:.3f}, {v.accuracy_ci[1]:.3f}]" if v.accuracy_ci else ""
    return f"{v.final_test_accuracy:.4f}{ci}"


def _leaves(v: Verdict) -> str:
    if v.contender.is_truth:
        return "(the reference)"
    if v.max_loss_deviation is None:
        return "-"
    if v.leaves_at_step is None:
        return f"never (max {v.max_loss_deviation:.1e})"
    return f"step {v.leaves_at_step} (max {v.max_loss_deviation:.1e})"


def _row(v: Verdict, config) -> tuple[str, ...]:
    target = fmt_time(v.time_to_target_s) + f" (epoch {v.target_epoch})" if v.time_to_target_s is not None else \
        "not reached"
    memory = f"{v.peak_memory_bytes / 2**20:,.0f} MiB {v.memory_kind}" if v.peak_memory_bytes else "-"
    agree = {True: "yes", False: "NO", None: "-"}[v.accuracy_agrees]
    return (v.contender.label, v.status, str(v.epochs), fmt_time(v.median_epoch_s), target, _acc(v),
            agree if not v.contender.is_truth else "-", _leaves(v), num(v.max_param_deviation, ".1e"), memory)


HEADER = ("contender", "status", "epochs", "time / epoch (median)", "time to target", "test accuracy [95% CI]",
          "agrees", "leaves the reference's loss", "parameter deviation", "peak memory")


def blocks(run: TrainRun, found: list[Verdict], plot_files=()) -> list:
    c = run.config
    ds = run.meta.get("dataset", {})
    env = run.meta.get("environment") or {}
    failed = [v for v in found if v.status not in ("pass",)]
    header = Paragraph((
        (f"Model {c.model} on {ds.get('name', c.dataset)} ({ds.get('train', '?')} training and {ds.get('test', '?')} "
         f"test samples: {ds.get('preprocessing', '')}); {c.epochs} epochs at batch {c.batch_size}, "
         f"{c.optimizer.kind} " + ", ".join(f"{k} {v:g}" for k, v in c.optimizer.params.items())
         + f", seed {c.seed}.",),
        (f"Machine: {machine_of(env)}; {c.threads} threads per framework.",),
        ("Versions: " + ", ".join(f"{k} {v}" for k, v in versions_of(env).items()) + ".",),
    ))
    verdict_text = ("Every contender passes." if not failed else
                    f"{len(failed)} of {len(found)} contenders do not pass:")
    body: list = [Heading(2, "Verdicts"), Paragraph(((verdict_text,),))]
    if failed:
        body.append(Bullets(tuple((Strong(v.contender.label), f" {v.status}: " + "; ".join(v.reasons or ["-"]))
                                  for v in failed)))
    body += [Paragraph(((
        "Every contender starts from the same weights and is handed the same batches in the same order. ",
        f"A float64 contender must follow the float64 reference's loss within {FLOAT64_TOLERANCE:.0e} (relative) at "
        "every step, and its parameters at every epoch end; a float32 contender is reported at the first step its "
        f"loss leaves a band of {FLOAT32_BAND:.0e} around the reference's (rounding makes every float32 run leave "
        "it eventually: compare with the float32 reference's step). Every contender must learn (its training loss "
        "falling at least half as far as the reference's by each epoch, and in each epoch where the reference's "
        "falls by more than 1%) and end within the 95% interval of the "
        "reference's test accuracy. Time is the timed train steps of each epoch, evaluation excluded; time to "
        f"target is the training time until the first epoch end at {c.target_accuracy:.0%} test accuracy or more.",),
    )), Table(HEADER, tuple(tuple((x,) for x in _row(v, c)) for v in found))]
    for title, caption, path in plot_files:
        body += [Heading(2, title), Figure(title, path), Paragraph(((caption,),))]
    rows = []
    for r in run.runs.values():
        for e in r.epochs:
            rows.append(tuple((x,) for x in (r.contender.label, str(e["epoch"]), fmt_time(e["seconds"]) if e["epoch"]
                                             else "-", num(e["train_loss"], ".4f"), num(e["train_accuracy"], ".4f"),
                                             num(e["test_loss"], ".4f"), num(e["test_accuracy"], ".4f"))))
    body += [Heading(2, "Every epoch"), Paragraph(((
        "Epoch 0 is the evaluation before the first step. Losses and accuracies are computed in float64 from each "
        "framework's outputs on the whole split.",),)),
        Table(("contender", "epoch", "training time", "train loss", "train accuracy", "test loss", "test accuracy"),
              tuple(rows))]
    replays = run.meta.get("replays") or {}
    if replays:
        body += [Heading(2, "Resumed"), Paragraph((("The run was resumed; each contender below replayed its "
                                                    "finished epochs, untimed, to rebuild its optimizer's state:",),)),
                 Bullets(tuple((Code(k), f": epochs {', '.join(map(str, r['epochs']))}, largest difference of a "
                                         f"replayed step's loss from the stored one {r['max_loss_difference']:.1e}")
                               for k, r in replays.items()))]
    how = next((e.get("how") for r in run.runs.values() for e in r.epochs[:1] if e.get("how")), None)
    body += [Heading(2, "Method"), Bullets(tuple(x for x in (
        ("Recipe: ", c.recipe_note or "-"),
        ("Timed: ", how or "-"),
        ("Epochs are interleaved: epoch e of every contender runs before epoch e + 1 of any, in an order shuffled "
         "per epoch, each contender in a worker process of its own.",),
        ("Dataset source: ", Code(str(ds.get("source", "?")))),
    )))]
    contents = Bullets(tuple((Link(b.text, f"#{b.anchor}"),) for b in body if isinstance(b, Heading)))
    return [Heading(1, f"fwbench train: {run.meta.get('run_id', run.path.name)}"), header,
            Paragraph((("Contents:",),)), contents, *body]


def verdicts_json(found: list[Verdict]) -> list[dict]:
    return [v.to_dict() for v in found]


def write(run_dir, *, plots: bool = True) -> list[Path]:
    """report.md, report.html, verdicts.json and plots/train_*.png/.svg in the run folder."""
    run = read(run_dir)
    found = verdicts(run)
    drawn = []
    if plots:
        from ..plots.training import training_plots

        deviations = {key: loss_deviation(run, r.contender) for key, r in run.runs.items()
                      if not r.contender.is_truth and len(r.epochs) > 1}
        limits = {"float64 tolerance": FLOAT64_TOLERANCE, "float32 band": FLOAT32_BAND}
        drawn = [(p.name, p.title, p.caption, *render_plot(p)) for p in training_plots(run, deviations, limits)]
    written, images, plot_files = save_plots(run.path, drawn)
    doc = blocks(run, found, plot_files)
    for name, content in ((REPORT_MD, md.render(doc)), (REPORT_HTML, page.render(doc, images))):
        atomic_write_bytes(run.path / name, content.encode("utf-8"))
        written.append(run.path / name)
    atomic_write_json(run.path / VERDICTS_FILE, {"schema_version": 1, "verdicts": verdicts_json(found)})
    written.append(run.path / VERDICTS_FILE)
    return written


def verdict_lines(run: TrainRun, found: list[Verdict]) -> list[str]:
    """The verdict table and the reasons, as plain text for a terminal."""
    rows = [HEADER] + [_row(v, run.config) for v in found]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for v in found:
        for reason in v.reasons:
            lines.append(f"{v.contender.label}: {reason}")
    return lines


def dumps(found: list[Verdict]) -> str:
    return json.dumps(verdicts_json(found), indent=2)
