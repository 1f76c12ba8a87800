"""The `bench` command line: thin commands over the library. The only module that prints or picks paths.

Each command builds its inputs, calls one library function, and prints what comes back. Bad input
is harness.errors.BadInput wherever it is found (a suite file, a run folder, a name): `_Command`
turns it into a one-line message and exit status 2, in this one place. Anything else that is raised is a
bug, and shows as one (a traceback, exit status 1).

Past 400 lines on purpose: every command's options, help text and printing live here and nowhere
else; what a command computes is in the library.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click

from . import __version__
from .errors import BadInput

__all__ = ["main", "cli"]


class _Command(click.Command):
    """Bad input (harness.errors.BadInput) becomes a one-line message naming the command's usage, and
    exit code 2; --debug shows the traceback. Nothing else is caught: a programming error is not a
    usage error."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BadInput as e:
            if ctx.find_root().obj and ctx.find_root().obj.get("debug"):
                raise
            raise click.UsageError(str(e), ctx) from e


class _Group(click.Group):
    command_class = _Command


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="fwbench")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """fwbench: the same model, with the same weights, in every framework.

    Is framework X really faster than Y for my model, and does it compute the same thing?

    \b
    Examples:
      bench list                             models and frameworks
      bench check                            every model, framework, dtype and mode here
      bench check mnist_cnn --framework torch --dtype float32 --mode eager
      bench check lenet5 --format json       per-tensor errors, for scripts
      bench run quick                        time every model, write results/<run-id>/ and its report
      bench report results/<run-id>          the report again (HTML, Markdown, plots)
      bench compare results/<a> results/<b>  regressions between two runs; exit 1 on one
      bench train mnist_cnn                  train on Fashion-MNIST in every framework, step for step
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _style(text: str, status: str) -> str:
    color = {"pass": "green", "fail": "red", "error": "red", "skip": "yellow"}.get(status)
    return click.style(text, fg=color) if color else text


@cli.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
def list_cmd(fmt: str) -> None:
    """The catalogue's models and the frameworks, with availability.

    FLOPs are counted from each model's spec for one sample's forward pass: 2 per multiply-add of
    dense and conv layers, plus 1 per bias add, activation output and pooling comparison.
    Frameworks are found without importing them; plugins registered under the entry-point group
    'harness.adapters' are listed too.
    """
    from . import catalogue
    from .report import text

    models, frameworks = catalogue.model_rows(), catalogue.framework_rows()
    if fmt == "json":
        click.echo(json.dumps({"models": models, "frameworks": frameworks}, indent=2))
        return
    for line in text.catalogue_lines(models, frameworks):
        click.echo(line)


@cli.command("check")
@click.argument("models", nargs=-1)
@click.option("--framework", "-f", "frameworks", multiple=True, help="Repeatable. Default: every registered one.")
@click.option("--dtype", "dtypes", multiple=True, help="float32, float64 (repeatable). Default: both.")
@click.option("--device", "devices", multiple=True, help="cpu, cuda, cuda:N (repeatable). Default: cpu.")
@click.option("--mode", "modes", multiple=True,
              help="Repeatable; each framework runs those of its modes named. Default: every mode.")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(1),
              help="Batch size (drawn away from ReLU kinks and pooling ties; see docs/equivalence.md).")
@click.option("--steps", default=10, show_default=True, type=click.IntRange(1),
              help="Optimizer steps checked, per optimizer.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the weights and batches.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--verbose", "-v", is_flag=True, help="Show every tensor of every cell, not only failures.")
def check_cmd(models, frameworks, dtypes, devices, modes, batch, steps, seed, fmt, verbose) -> None:
    """Prove that each framework computes what the float64 reference computes.

    For every model x framework x device x dtype x mode: outputs, every layer's output, the loss,
    every gradient (parameters and input), and the step the parameters take in STEPS updates of
    the model's own timed optimizer and of SGD with and without momentum, RMSprop and Adam (with
    the losses train_step returns), each compared with the float64 reference under the tolerances
    of docs/equivalence.md. Each cell runs twice to report whether it is bitwise deterministic.
    Exit status: 0 when every cell checked passes (skips are listed with their reason), 1 when
    any fails or errors, 2 on bad input.

    \b
    Examples:
      bench check
      bench check mnist_cnn lenet5 --framework torch --framework tensorflow --dtype float32
      bench check mlp --mode eager --format json
    """
    from .check_suite import check_all
    from .report import text

    checked = []
    cells = check_all(models, frameworks, dtypes, devices, modes, batch=batch, steps=steps, seed=seed)
    if fmt == "table":
        click.echo(text.CHECK_HEADER)
    for result in cells:
        checked.append(result)
        if fmt == "table":
            for line in text.check_lines(result, verbose, _style):
                click.echo(line)
    if fmt == "json":
        click.echo(json.dumps([r.to_dict() for r in checked], indent=2))
    elif fmt == "csv":
        click.echo(text.checks_csv(checked), nl=False)
    else:
        for line in text.check_summary_lines(checked, _style):
            click.echo(line)
    if any(r.status in ("fail", "error") for r in checked):
        sys.exit(1)


class _Progress:
    """bench run's progress: on a terminal, one bar (cell-passes done, time left, the current cell) that
    click redraws in place; elsewhere, a line per pass and one per finished cell."""

    def __init__(self, file=None) -> None:
        self.file = file  # None: standard output
        self.bar = None
        self.total = 0

    def __call__(self, event: str, **d) -> None:
        if event == "start":
            self.total = d["total"]
            if d["done"]:
                click.echo(f"resuming: {d['done']} of {d['total']} cells already done, {d['todo']} to run",
                           file=self.file)
            stream = self.file or sys.stdout
            if stream.isatty() and d["todo"]:
                label = "cells" if d.get("passes", 1) == 1 else f"cells x {d['passes']} passes"
                self.bar = click.progressbar(length=d.get("work", d["todo"]), label=label, show_pos=True, show_eta=True,
                                             item_show_func=lambda cell: cell.key if cell else None, file=self.file)
                self.bar.__enter__()
        elif event == "pass" and self.bar is None and d["passes"] > 1:
            click.echo(f"pass {d['index'] + 1} of {d['passes']}: {d['cells']} cells", file=self.file)
        elif event == "cell" and self.bar is not None:
            self.bar.update(0, d["cell"])
        elif event == "step" and self.bar is not None:
            self.bar.update(1, d["cell"])
        elif event == "done":
            if self.bar is None:
                click.echo(f"[{d['done']}/{self.total}] {d['cell'].key}: {_outcome(d['record'])}", file=self.file)
        elif event == "finish" and self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _outcome(record) -> str:
    """A finished cell in a few words: its median and sample count, or what became of it."""
    if record.status != "ok":
        return f"{record.status}: {record.reason}"
    from .cells import CHECK_FAULTS
    from .fmt import num

    stats = record.stats()
    verified = ""
    if record.verified is False:
        check = record.check or {}
        where = f" at {check['first_divergence']}" if check.get("first_divergence") else ""
        verified = (f" UNVERIFIED: parts from the reference{where}" if check.get("status") in CHECK_FAULTS
                    else " unverified (its check could not be made)")
    median = stats.median * 1e3 if stats else float("nan")
    return f"median {num(median, '.3f')} ms over {len(record.samples_s)} samples{verified}"


@cli.command("run")
@click.argument("suite", required=False)
@click.option("--resume", "resume", type=click.Path(exists=True, file_okay=False), default=None,
              help="Run only the cells missing from this run folder.")
@click.option("--results-dir", type=click.Path(file_okay=False), default="results", show_default=True,
              help="Where run folders are created.")
@click.option("--export-pytest-benchmark", "export", type=click.Path(dir_okay=False), default=None,
              help="Also write the run in pytest-benchmark's JSON format to this file.")
@click.option("--report/--no-report", "with_report", default=True, show_default=True,
              help="Write report.html, report.md and the plots into the run folder at the end.")
@click.option("--loops-from", "loops_from", type=click.Path(exists=True, file_okay=False), default=None,
              help="Reuse this run's iterations per sample instead of calibrating (cells it lacks calibrate): "
                   "two runs that time the same loops compare more closely; `bench compare` says when they differ.")
def run_cmd(suite, resume, results_dir, export, with_report, loops_from) -> None:
    """Time a suite: every cell in a worker process per framework, rounds interleaved.

    SUITE is a name from suites/ (quick, default, threads, gpu, smoke) or a path to a .toml file.
    Each finished cell is written at once to results/<run-id>/; Ctrl-C keeps them (exit 130) and
    `--resume` finishes the run. Exit status: 0 when every cell ran or was skipped, 1 when any cell
    failed (error, crashed, timeout, oom) or did not match the reference, 2 on a bad suite. A cell
    whose check could not be made (status 'unverified': no readback, or a framework's declared
    float64 limitation) is marked and listed in the report, and does not fail the run.

    \b
    Examples:
      bench run quick
      bench run suites/threads.toml --results-dir /tmp/results
      bench run --resume results/20261123-184512-quick
      bench run smoke --no-report
      bench run quick --loops-from results/20261123-184512-quick
    """
    from . import runner, suites
    from .report import text

    if resume:
        if suite:
            raise click.UsageError("give a SUITE or --resume RUN, not both")
        if loops_from:
            raise click.UsageError("--loops-from applies to a new run; a resumed run keeps its own")
        loaded, run_dir = runner.resume_run(resume)
    else:
        if not suite:
            raise click.UsageError(f"which suite? available: {', '.join(suites.available())}")
        loaded = suites.load(suite)
        loops = runner.loops_of(loops_from) if loops_from else None
        run_dir = runner.start_run(loaded, results_dir)
    click.echo(f"run {run_dir}  (suite {loaded.name}: {len(loaded.cells())} cells)")
    try:
        summary = runner.run_suite(loaded, run_dir, progress=_Progress(), loops=None if resume else loops)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: every finished cell is kept; finish with: bench run --resume {run_dir}")
        sys.exit(130)
    run = summary.run
    click.echo(text.run_table(run))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items())) or "nothing to run"
    click.echo(f"\n{counts}; {summary.seconds:.0f} s; results in {run_dir}")
    if export:
        from .pytest_benchmark import export_run

        export_run(run, export)
        click.echo(f"pytest-benchmark JSON: {export}")
    if with_report:
        _write_report(run)
    sys.exit(run_exit_status(run.table()))


def run_exit_status(df) -> int:
    """bench run's exit status from its cells' table: 1 when a cell failed or its check found it
    parting from the reference ('fail' or 'error'), else 0. 'unverified' is not a finding of a fault,
    only of a check that could not be made: the report says so, the exit status does not."""
    from . import results

    failed = bool(df["status"].isin(results.FAILED).any())
    mismatched = any(results.flag(v) is False and s in results.CHECK_FAULTS
                     for v, s in zip(df["verified"], df["check_status"], strict=True))
    return 1 if failed or mismatched else 0


def _write_report(run, plots: bool = True, summary=None) -> bool:
    """Write the report of a finished run; a failure is printed, never fatal: the results are safe."""
    from . import metadata, report

    processes = max(1, min(4, metadata.usable_cpus()))  # past 4, building each worker's figures costs more
    try:
        paths = report.write(run, plots=plots, processes=processes, summary=summary)
    except Exception as e:  # a plotting bug must not cost the run its exit status or its results
        click.echo(click.style(f"the report could not be written: {type(e).__name__}: {e}; the results are "
                               f"complete: retry with `bench report {run.path}` (--debug shows the traceback)",
                               fg="red"), err=True)
        return False
    html = next(p for p in paths if p.name == report.REPORT_HTML)
    figures = sum(p.suffix == ".png" for p in paths)
    drawn = f"{figures} plots as PNG and SVG in {html.parent / report.PLOTS_DIR}" if plots else "no plots"
    click.echo(f"report: {html} (and {report.REPORT_MD}; {drawn})")
    return True


@cli.command("report")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--plots/--no-plots", default=True, show_default=True, help="Draw the plots (matplotlib).")
def report_cmd(run, plots) -> None:
    """Write a run's report: report.html (self-contained), report.md and plots/ (PNG and SVG).

    RUN is a run folder written by `bench run`. The summary comes first: for each model, the
    fastest framework and the others' time relative to it with the 95% CI of the ratio, which
    differences are not significant, which cells failed, were skipped, are noisy or unverified;
    then a plot per question, the tables, and the machine. It is also printed here.

    \b
    Examples:
      bench report results/20261123-184512-quick
      bench report results/20261123-184512-quick --no-plots
    """
    from . import report, results
    from .report import document, md

    loaded = results.read(run)
    if loaded.meta.get("kind") == "train":  # a `bench train` run: its own report
        from . import training
        from .training import report as train_report

        trained = training.read(run)
        for line in train_report.verdict_lines(trained, training.verdicts(trained)):
            click.echo(line)
        paths = train_report.write(run, plots=plots)
        click.echo(f"report: {next(p for p in paths if p.name == report.REPORT_HTML)}")
        return
    summary = report.summarize(loaded)
    for line in md.plain_lines(document.summary_blocks(summary)):
        click.echo(line)
    if not _write_report(loaded, plots=plots, summary=summary):
        sys.exit(1)


@cli.command("compare")
@click.argument("run_a", type=click.Path(exists=True, file_okay=False))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False))
@click.option("--min-effect", default=0.05, show_default=True, type=click.FloatRange(0, 10, max_open=True),
              help="Smallest change that counts, as a fraction (0.05: 5% slower or faster); a `bench noise` "
                   "floor of the machine raises it per kind of cell.")
@click.option("--noise", "noise_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A `bench noise` calibration (default: the newest beside RUN_A made on the same machine).")
@click.option("--no-noise", "no_noise", is_flag=True, help="Use no calibration: --min-effect is every threshold.")
@click.option("--alpha", default=None, type=float, hidden=True)  # format 1's test: accepted, ignored, said so
@click.option("--correction", default=None, hidden=True)
@click.option("--force", is_flag=True, help="Compare runs from different machines, versions or settings anyway.")
@click.option("--relative-to", "relative_to", default=None, metavar="FRAMEWORK",
              help="Compare each cell's round medians divided by this framework's in the same round (e.g. "
                   "reference): cancels a slowdown of the whole machine between the runs.")
@click.option("--all", "show_all", is_flag=True, help="List every cell compared, not only the changes.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table",
              show_default=True, help="markdown: for a pull request or a CI summary.")
def compare_cmd(run_a, run_b, min_effect, noise_file, no_noise, alpha, correction, force, relative_to, show_all,
                fmt) -> None:
    """Compare RUN_B with RUN_A (the baseline), cell by cell: slower, faster, same or unknown.

    For each cell that finished in both: the ratio B / A with its 95% CI, with the pass as the unit
    (each run's passes are independent; samples within a pass are not). Slower: the CI lies above 1
    and the ratio past the threshold; faster, the mirror image; same: the whole CI within
    ±threshold; unknown: the CI is too wide to tell, printed with the smallest change the cell could
    have detected (more passes narrow it). The threshold is --min-effect, raised per kind of cell
    to the machine's noise floor measured by `bench noise`. Cells that finished in A and failed in
    B, or no longer match the reference, are broken. Exit status: 0 nothing slower, 1 a cell slower
    or broken (CI can gate on it), 2 bad input, including runs from different machines, framework
    versions or speed-changing settings (the differing metadata are named; --force compares them
    anyway).

    \b
    Examples:
      bench compare results/20261123-184512-quick results/20261124-090301-quick
      bench compare baseline/ candidate/ --min-effect 0.10 --format markdown
      bench compare results/a results/b --relative-to reference   on a shared, drifting machine
    """
    from . import compare

    if alpha is not None or correction is not None:
        click.echo("note: --alpha and --correction are no longer used: verdicts come from the CI of the "
                   "pass medians against the threshold (see bench compare --help)", err=True)
    result = compare.compare_runs(run_a, run_b, min_effect=min_effect, force=force, relative_to=relative_to,
                                  noise_file=noise_file, use_noise=not no_noise)
    _print_comparison(result, fmt, show_all)
    if result.failed:
        sys.exit(1)


def _print_comparison(result, fmt: str, show_all: bool, saved: str | None = None) -> None:
    """A Comparison (bench compare's, bench ab's) as JSON, Markdown or the terminal's table."""
    from .report import comparison

    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif fmt == "markdown":
        click.echo(comparison.markdown(result, show_all=show_all))
    else:
        click.echo(comparison.text(result, show_all=show_all))
        if saved:
            click.echo(f"verdicts: {saved}")


@cli.command("noise")
@click.argument("suite", required=False)
@click.option("--runs", default=3, show_default=True, type=click.IntRange(2, 50),
              help="How many times to run the suite, unchanged.")
@click.option("--of", "existing", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Calibrate from these runs of one suite instead of running it (repeat: --of A --of B).")
@click.option("--results-dir", type=click.Path(file_okay=False), default="results", show_default=True,
              help="Where the runs and the calibration (noise-<time>.json) are written.")
def noise_cmd(suite, runs, existing, results_dir) -> None:
    """Calibrate this machine: run SUITE several times unchanged and measure how much identical code
    differs between runs, per kind of cell (framework, phase, device).

    The 95% quantile of |B/A - 1| over every pair of runs and every cell of a kind is that kind's
    noise floor: `bench compare` never calls a cell of that kind slower or faster by less, for runs
    of this machine (it finds the newest calibration beside run A, same machine only; --noise FILE
    names one). Calibrate again when the machine, its load or the framework versions change.

    \b
    Examples:
      bench noise quick --runs 3
      bench noise --of results/20261204-a-quick --of results/20261204-b-quick
    """
    from . import noise, runner, suites

    if bool(suite) == bool(existing):
        raise click.UsageError("give a SUITE to run, or --of RUN at least twice, not both")
    run_dirs = list(existing)
    if suite:
        loaded = suites.load(suite)
        for i in range(runs):
            run_dir = runner.start_run(loaded, results_dir)
            click.echo(f"run {i + 1} of {runs}: {run_dir}")
            try:
                runner.run_suite(loaded, run_dir, progress=_Progress())
            except KeyboardInterrupt:
                click.echo(f"\ninterrupted: calibrate from the finished runs with --of {' --of '.join(run_dirs)}")
                sys.exit(130)
            run_dirs.append(str(run_dir))
    doc = noise.calibrate(run_dirs)
    folder = Path(run_dirs[0]).resolve().parent if existing else Path(results_dir)
    path = noise.write(doc, folder)
    click.echo(f"\nnoise floors from {len(run_dirs)} runs ({doc['quantile']:.0%} quantile of |B/A - 1| over "
               "every pair of runs):")
    width = max(len(k) for k in doc["floors"])
    for kind, floor in doc["floors"].items():
        click.echo(f"  {kind:<{width}}  {floor:6.1%}  ({doc['pairs'][kind]} ratios)")
    click.echo(f"  {'every cell':<{width}}  {doc['floor_all']:6.1%}")
    for control, part in doc["relative"].items():
        click.echo(f"relative to {control} (bench compare --relative-to {control}):")
        for kind, floor in part["floors"].items():
            click.echo(f"  {kind:<{width}}  {floor:6.1%}  ({part['pairs'][kind]} ratios)")
        click.echo(f"  {'every cell':<{width}}  {part['floor_all']:6.1%}")
    click.echo(f"calibration: {path} (bench compare uses it for runs in {path.parent} on this machine)")


@cli.command("ab")
@click.argument("env_a")
@click.argument("env_b")
@click.argument("suite")
@click.option("--results-dir", type=click.Path(file_okay=False), default="results", show_default=True,
              help="Where the A/B folder (a/, b/ and ab.json) is created.")
@click.option("--min-effect", default=0.02, show_default=True, type=click.FloatRange(0, 10, max_open=True),
              help="Smallest change that counts, as a fraction (0.02: 2% slower or faster; lower than bench "
                   "compare's 5%, because the machine's drift cancels in the same rounds).")
@click.option("--passes", type=click.IntRange(2), default=None,
              help="Passes instead of the suite's timing.passes: the number of fresh processes per side, "
                   "which is what narrows a paired CI on a noisy machine.")
@click.option("--all", "show_all", is_flag=True, help="List every cell compared, not only the changes.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table",
              show_default=True, help="markdown: for a pull request or a CI summary.")
def ab_cmd(env_a, env_b, suite, results_dir, min_effect, passes, show_all, fmt) -> None:
    """Run SUITE in two Python environments at once and say, cell by cell, what B changes.

    ENV_A and ENV_B are virtualenv folders (or Python executables), e.g. one with torch 2.12 and one
    with 2.13, or two versions of a plugin; both run this fwbench's code with their own frameworks.
    Their workers take turns within every round of one run, so that the machine's drift hits both
    alike, and each cell's verdict (slower, faster, same, unknown, as in `bench compare`) comes from
    B's round medians paired with A's. Use it to chase a regression on a noisy machine; `bench
    compare` compares runs made at different times. A cell's luck in a pass (its process, its
    buffers) is not shared by the other side, so passes are what narrow its CI: see the README for
    what 15 passes found on a 2-vCPU VM. Exit status: 0 nothing slower, 1 a cell slower in B or
    broken, 2 bad input.

    \b
    Examples:
      bench ab ~/venvs/torch-2.12 ~/venvs/torch-2.13 quick --passes 15
      bench ab .venv .venv smoke          an A/A check of the machine
    """
    from . import ab, suites

    pythons = {"a": ab.python_of(env_a, "ENV_A"), "b": ab.python_of(env_b, "ENV_B")}
    loaded = suites.load(suite)
    if passes is not None:
        loaded = dataclasses.replace(loaded, timing=dataclasses.replace(loaded.timing, passes=passes))
    folder = ab.start(loaded, pythons, results_dir)
    click.echo(f"run {folder}  (suite {loaded.name}: {len(loaded.cells())} cells in A {pythons['a']} and in "
               f"B {pythons['b']})", err=fmt == "json")
    try:
        ab.run(loaded, folder, progress=_Progress(file=sys.stderr if fmt == "json" else None))
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: the finished cells are kept in {folder}", err=True)
        sys.exit(130)
    result = ab.judge(folder, min_effect=min_effect)
    _print_comparison(result, fmt, show_all, saved=str(folder / ab.AB_FILE))
    if result.failed:
        sys.exit(1)


class _TrainProgress:
    """bench train's progress: on a terminal, a bar per contender's epoch (its steps); elsewhere one
    line per finished epoch."""

    def __init__(self, err: bool = False) -> None:
        self.bar = None
        self.err = err  # on standard error, when standard output is for JSON
        self.tty = (sys.stderr if err else sys.stdout).isatty()

    def echo(self, text: str) -> None:
        click.echo(text, err=self.err)

    def __call__(self, event: str, **d) -> None:
        if event == "start":
            c = d["config"]
            self.echo(f"train {c.model} on {c.dataset}: {len(c.contenders)} contenders x {c.epochs} epochs of "
                       f"{d['steps']} steps (batch {c.batch_size}); {d['todo']} epoch evaluations to go; "
                       f"run {d['run_dir']}")
        elif event == "epoch_start" and self.tty:
            self.bar = click.progressbar(length=d["steps"], label=f"epoch {d['epoch']} {d['contender'].label:<28}",
                                         show_pos=True, show_eta=True,
                                         file=sys.stderr if self.err else None)
            self.bar.__enter__()
        elif event == "steps" and self.bar is not None:
            self.bar.update(d["n"])
        elif event == "replay":
            self.echo(f"{d['contender'].label}: replaying epoch {d['epoch']} to rebuild its optimizer state")
        elif event in ("epoch", "failed", "finish"):
            if self.bar is not None:
                self.bar.__exit__(None, None, None)
                self.bar = None
            if event == "epoch":
                r = d["record"]
                took = f"{r['seconds']:.2f} s, " if r["epoch"] else ""
                self.echo(f"{d['contender'].label}: epoch {r['epoch']}: {took}train loss {r['train_loss']:.4f}, "
                           f"test accuracy {r['test_accuracy']:.4f}" + (f" ({r['stopped']})" if r.get("stopped")
                                                                         else ""))
            elif event == "failed":
                self.echo(click.style(f"{d['contender'].label}: {d['kind']}: {d['reason']}", fg="red"))


@cli.command("train")
@click.argument("model", required=False)
@click.option("--data", "data", default=None, help="Dataset name (default: the model's own; listed above).")
@click.option("--data-dir", type=click.Path(), default=None,
              help="Folder holding fashion-mnist/ (default: $FWBENCH_DATA, else /usr/share/datasets).")
@click.option("--epochs", type=int, default=None, help="Epochs (default: the model's recipe).")
@click.option("--batch", "batch", type=int, default=None, help="Batch size (default: the model's recipe).")
@click.option("--framework", "-f", "frameworks", multiple=True, help="Repeatable. Default: every one available.")
@click.option("--dtype", "dtypes", multiple=True,
              help="float32, float64 (repeatable). Default: float32; the float64 reference always runs.")
@click.option("--mode", "modes", multiple=True, help="Repeatable. Default: each framework's idiomatic mode.")
@click.option("--target", type=float, default=None, help="Test accuracy whose time to reach is reported.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the weights and the batch order.")
@click.option("--limit-train", type=int, default=None, help="Train on the first N training samples only.")
@click.option("--limit-test", type=int, default=None, help="Evaluate on the first N test samples only.")
@click.option("--threads", type=int, default=None, help="CPU threads per framework (default: the usable cores).")
@click.option("--results-dir", type=click.Path(file_okay=False), default="results", show_default=True)
@click.option("--resume", "resume", type=click.Path(exists=True, file_okay=False), default=None,
              help="Finish this training run (its own settings; give no MODEL).")
@click.option("--report/--no-report", "with_report", default=True, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def train_cmd(model, data, data_dir, epochs, batch, frameworks, dtypes, modes, target, seed, limit_train,
              limit_test, threads, results_dir, resume, with_report, fmt) -> None:
    """Train MODEL on real data in every framework and the NumPy reference, step for step.

    The same initial weights, the same preprocessing (once, in NumPy), the same shuffled batches
    in the same order, the same optimizer with every hyperparameter explicit; each framework in a
    worker of its own, epochs interleaved. Recorded: every step's loss and time, per epoch the train
    and test loss and accuracy, time to the target accuracy, peak memory. Verdicts against the
    float64 reference: the trajectory (float64 within 1e-10 at every step), learning, and the final
    test accuracy within its 95% interval. Writes results/<run-id>/ with report.html.
    Exit status: 0 every contender passes, 1 one fails, 2 bad input, 130 interrupted (resume it).

    \b
    Models and their datasets:
      mnist_cnn fashion-mnist, lenet5 fashion-mnist-32, mlp fashion-mnist-10x10,
      sigmoid_mlp digits, logistic_regression breast-cancer (linear_regression: none ships)
    Fashion-MNIST: sudo apt-get install dataset-fashion-mnist; digits, breast-cancer: scikit-learn.

    \b
    Examples:
      bench train sigmoid_mlp
      bench train mnist_cnn --epochs 5
      bench train logistic_regression --dtype float32 --dtype float64 --framework torch
      bench train mnist_cnn --limit-train 2000 --limit-test 1000 --epochs 1
      bench train --resume results/20261202-180407-train-mnist_cnn
    """
    from . import metadata, training
    from .training import report as train_report

    if resume:
        if model:
            raise click.UsageError("give a MODEL or --resume RUN, not both")
        config, run_dir = training.resume(resume)
    else:
        if not model:
            from . import datasets

            rows = [f"{m} ({d}{': ' + why if (why := datasets.available(d, data_dir)) else ''})"
                    for m, d in datasets.MODEL_DATASETS.items()]
            raise click.UsageError("which model? " + "; ".join(rows))
        config = training.plan(model, data=data, epochs=epochs, batch_size=batch, frameworks=frameworks,
                               dtypes=dtypes, modes=modes, seed=seed, target=target,
                               threads=threads or max(1, metadata.usable_cpus() or 1), limit_train=limit_train,
                               limit_test=limit_test, data_dir=data_dir)
        run_dir = training.start(config, results_dir)
    try:
        summary = training.train(config, run_dir, progress=_TrainProgress(err=fmt == "json"))
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: every finished epoch is kept; finish with: bench train --resume {run_dir}",
                   err=fmt == "json")
        sys.exit(130)
    run = training.read(run_dir)
    found = training.verdicts(run)
    if fmt == "json":
        click.echo(train_report.dumps(found))
    else:
        click.echo("")
        for line in train_report.verdict_lines(run, found):
            click.echo(line)
        click.echo(f"\n{summary.seconds:.0f} s; results in {run_dir}")
    if with_report:
        try:
            paths = train_report.write(run_dir)
            click.echo(f"report: {next(p for p in paths if p.name == 'report.html')}", err=fmt == "json")
        except Exception as e:  # the results are safe on disk; a drawing bug must not hide the verdicts
            click.echo(click.style(f"the report could not be written: {type(e).__name__}: {e}", fg="red"), err=True)
    if any(v.status in ("fail", "error") for v in found):
        sys.exit(1)


@cli.command("selftest")
@click.option("--torch/--no-torch", "with_torch", default=True, show_default=True,
              help="Compare with torch.utils.benchmark when torch is installed.")
def selftest_cmd(with_torch: bool) -> None:
    """Validate the timer on this machine: exit 1 if any check is out of bounds.

    \b
    1. a busy-wait of known duration (2 ms) is measured within 2%;
    2. the harness's median for a torch forward agrees with torch.utils.benchmark's
       blocked_autorange on the same callable within 10%;
    3. a planted slow first call (100x) does not move the median by more than 2%.
    """
    from . import selftest

    ok = True
    for check in selftest.run_all(with_torch=with_torch):
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[check["passed"]]
        click.echo(f"{mark} {check['name']}: {check['detail']}")
        ok &= check["passed"] is not False
    if not ok:
        sys.exit(1)


def main() -> None:
    cli(prog_name="bench")


if __name__ == "__main__":
    sys.exit(main())
