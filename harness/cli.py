"""The `bench` command line: thin commands over the library. The only module that prints."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
import time

import click

from . import __version__

__all__ = ["main", "cli"]


class _Group(click.Group):
    """Library errors become one-line messages and exit code 2; --debug shows the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (KeyError, ValueError, TypeError, OSError) as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            raise click.UsageError(str(message), ctx) from e


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
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _num(value, fmt: str) -> str:
    return "-" if value is None or value != value else format(value, fmt)  # None or NaN -> '-'


def _si(n: float) -> str:
    """27, 14.2k, 5.67M: a count a person reads at a glance."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def _model_rows() -> list[dict]:
    from reference_impl import models

    return [
        {
            "name": spec.name,
            "params": spec.num_params,
            "flops_per_sample": spec.flops_per_sample,
            "input_shape": list(spec.input_shape),
            "loss": spec.loss,
            "optimizer": spec.optimizer.kind,
            "summary": spec.summary,
        }
        for spec in models.all_specs()
    ]


def _framework_rows() -> list[dict]:
    from . import adapters

    rows = []
    for name in adapters.names():
        try:
            adapter = adapters.get(name)
        except (ImportError, TypeError) as e:  # a broken plugin is reported, not fatal
            rows.append({"name": name, "available": False, "version": None, "modes": [], "reason": str(e)})
            continue
        try:
            status = adapter.availability()
        except Exception as e:  # the contract says never raise; a plugin may still do it
            rows.append({"name": name, "available": False, "version": None, "modes": list(adapter.modes),
                         "reason": f"availability() raised {type(e).__name__}: {e}"})
            continue
        rows.append({"name": name, "available": status.available, "version": status.version,
                     "modes": list(adapter.modes), "reason": status.reason})
    return rows


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
    models, frameworks = _model_rows(), _framework_rows()
    if fmt == "json":
        click.echo(json.dumps({"models": models, "frameworks": frameworks}, indent=2))
        return
    click.echo(f"Models ({len(models)})")
    click.echo(f"  {'name':<20} {'params':>8} {'FLOPs/sample':>12}  {'input':<8} {'loss':<32} summary")
    for m in models:
        shape = "x".join(map(str, m["input_shape"]))
        click.echo(f"  {m['name']:<20} {m['params']:>8,} {_si(m['flops_per_sample']):>12}  "
                   f"{shape:<8} {m['loss']:<32} {m['summary']}")
    click.echo("")
    click.echo(f"Frameworks ({sum(f['available'] for f in frameworks)} of {len(frameworks)} available)")
    for f in frameworks:
        if f["available"]:
            state = f"available   {f['version'] or '?':<12} modes: {', '.join(f['modes'])}"
        else:
            state = f"unavailable {f['reason']}"
        click.echo(f"  {f['name']:<12} {state}")


# --------------------------------------------------------------------------------------------
# bench check


def _validate(values: tuple[str, ...], valid: list[str], what: str) -> None:
    bad = [v for v in values if v not in valid]
    if bad:
        raise click.UsageError(f"unknown {what} {', '.join(map(repr, bad))}; valid: {', '.join(valid)}")


@cli.command("check")
@click.argument("models", nargs=-1)
@click.option("--framework", "-f", "frameworks", multiple=True, help="Repeatable. Default: every registered one.")
@click.option("--dtype", "dtypes", multiple=True, help="float32, float64 (repeatable). Default: both.")
@click.option("--device", "devices", multiple=True, help="cpu, cuda, cuda:N (repeatable). Default: cpu.")
@click.option("--mode", "modes", multiple=True,
              help="Repeatable; each framework runs those of its modes named. Default: every mode.")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(1),
              help="Batch size (drawn away from ReLU kinks and pooling ties; see docs/equivalence.md).")
@click.option("--steps", default=3, show_default=True, type=click.IntRange(1), help="Optimizer steps checked.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the weights and batches.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--verbose", "-v", is_flag=True, help="Show every tensor of every cell, not only failures.")
def check_cmd(models, frameworks, dtypes, devices, modes, batch, steps, seed, fmt, verbose) -> None:
    """Prove that each framework computes what the float64 reference computes.

    For every model x framework x device x dtype x mode: outputs, every layer's output, the loss,
    every gradient (parameters and input), and the parameters after STEPS steps of SGD with
    momentum and of Adam, each compared with the float64 reference under the tolerances of
    docs/equivalence.md. Each cell runs twice to report whether it is bitwise deterministic.
    Exit status: 0 when every cell checked passes (skips are listed with their reason), 1 when
    any fails or errors, 2 on bad input.

    \b
    Examples:
      bench check
      bench check mnist_cnn lenet5 --framework torch --framework tensorflow --dtype float32
      bench check mlp --mode eager --format json
    """
    import numpy as np

    import reference_impl as ri

    from . import adapters, checks
    from .adapters.base import DTYPES, parse_device

    _validate(models, ri.models.names(), "model")
    _validate(frameworks, adapters.names(), "framework")
    _validate(dtypes, list(DTYPES), "dtype")
    for device in devices:
        try:
            parse_device(device)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
    chosen = list(frameworks) or adapters.names()
    loaded = {}
    for name in chosen:
        try:
            loaded[name] = adapters.get(name)
        except (ImportError, TypeError) as e:
            loaded[name] = e
    all_modes = sorted({m for a in loaded.values() if not isinstance(a, Exception) for m in a.modes})
    _validate(modes, all_modes, "mode")

    results: list[checks.CheckResult] = []
    if fmt == "table":
        click.echo(_CELL_HEADER)
    for model_name in models or ri.models.names():
        spec = ri.models.get(model_name)
        weights = ri.init_weights(spec, seed, np.float64)
        reference = checks.ReferenceRun(spec, weights, batch, seed, steps)
        for fw_name, adapter in loaded.items():
            for device in devices or ("cpu",):
                for dtype in dtypes or DTYPES:
                    if isinstance(adapter, Exception):
                        results.append(checks.CheckResult(model_name, fw_name, device, dtype, "-", "error",
                                                          reason=str(adapter)))
                        continue
                    for mode in [m for m in adapter.modes if not modes or m in modes]:
                        result = checks.check_cell(adapter, reference, device=device, dtype=dtype, mode=mode)
                        results.append(result)
                        if fmt == "table":
                            _print_cell(result, verbose)
    if fmt == "json":
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    elif fmt == "csv":
        click.echo(_csv(results), nl=False)
    else:
        _print_summary(results)
    if any(r.status in ("fail", "error") for r in results):
        sys.exit(1)


_CELL_HEADER = (f"{'model':<20} {'framework':<11} {'device':<7} {'dtype':<8} {'mode':<9} {'status':<6} "
                f"{'worst tensor':<24} {'normwise':>8} {'determ.':>8} {'time':>6}  first divergence")


def _print_cell(r, verbose: bool) -> None:
    worst = r.worst
    worst_name = worst.tensor if worst else "-"
    normwise = _num(worst.normwise, ".1e") if worst else "-"
    determ = {True: "bitwise", False: _num(r.nondeterminism, ".1e"), None: "-"}[r.deterministic]
    color = {"pass": "green", "fail": "red", "error": "red", "skip": "yellow"}[r.status]
    status = click.style(f"{r.status:<6}", fg=color)
    tail = r.first_divergence or ""
    if r.status == "skip" or r.status == "error":
        worst_name, normwise, tail = "-", "-", r.reason
    click.echo(f"{r.model:<20} {r.framework:<11} {r.device:<7} {r.dtype:<8} {r.mode:<9} {status} "
               f"{worst_name:<24} {normwise:>8} {determ:>8} {r.seconds:>5.1f}s  {tail}")
    shown = r.tensors if verbose else r.failures
    for t in shown:
        mark = "ok  " if t.passed else "FAIL"
        note = f"  {t.note}" if t.note else ""
        click.echo(f"      {mark} {t.tensor:<28} shape {str(t.shape):<16} max|a-b| {_num(t.max_abs, '.1e'):>8} "
                   f"(atol {_num(t.atol, '.1e')} + rtol {t.rtol:g}*|b|)  normwise {_num(t.normwise, '.1e'):>8} "
                   f"(<= {t.normwise_tol:g}){note}")


def _print_summary(results) -> None:
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "error", "skip")}
    click.echo("")
    click.echo(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(results)} cells")
    skipped = {}
    for r in results:
        if r.status == "skip":
            skipped.setdefault(r.reason, []).append(f"{r.model}/{r.framework}/{r.device}/{r.dtype}/{r.mode}")
    for reason, cells in skipped.items():
        click.echo(f"skipped {len(cells)}: {reason}")
    for r in results:
        if r.status in ("fail", "error"):
            where = f" first divergence: {r.first_divergence}" if r.first_divergence else ""
            click.echo(click.style(f"{r.status.upper()}: {r.model}/{r.framework}/{r.device}/{r.dtype}/{r.mode}"
                                   f"{where} {r.reason}", fg="red"))


def _csv(results) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["model", "framework", "device", "dtype", "mode", "status", "tensor", "stage", "layer",
                     "shape", "max_abs", "normwise", "atol", "rtol", "normwise_tol", "passed", "note",
                     "first_divergence", "deterministic", "reason"])
    for r in results:
        rows = r.tensors or [None]
        for t in rows:
            writer.writerow([
                r.model, r.framework, r.device, r.dtype, r.mode, r.status,
                *(("", "", "", "", "", "", "", "", "", "", "") if t is None else (
                    t.tensor, t.stage, t.layer or "", "x".join(map(str, t.shape)), t.max_abs, t.normwise,
                    t.atol, t.rtol, t.normwise_tol, t.passed, t.note)),
                r.first_divergence or "", r.deterministic, r.reason,
            ])
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# bench run


class _ProgressPrinter:
    """A one-line progress bar on a terminal; one plain line per finished cell otherwise."""

    def __init__(self, tty: bool) -> None:
        self.tty, self.current, self.started = tty, None, time.monotonic()
        self.total = self.done = self.done_before = 0

    def __call__(self, event: str, **d) -> None:
        if event == "start":
            self.total, self.done, self.done_before = d["total"], d["done"], d["done"]
            if d["done"]:
                click.echo(f"resuming: {d['done']} of {d['total']} cells already done, {d['todo']} to run")
        elif event == "cell":
            self.current = d["cell"]
            if self.tty:
                self._bar()
        elif event == "done":
            self.done = d["done"]
            cell, record = d["cell"], d["record"]
            if self.tty:
                self._bar()
            else:
                click.echo(f"[{self.done}/{self.total}] {cell.key}: {_cell_outcome(record)}")
        elif event == "finish" and self.tty:
            click.echo("\r\033[K", nl=False)

    def _bar(self) -> None:
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        elapsed = time.monotonic() - self.started
        ran = self.done - self.done_before
        left = elapsed / ran * (self.total - self.done) if ran else float("nan")
        eta = "?" if left != left else f"{int(left) // 60}:{int(left) % 60:02d}"
        current = self.current.key if self.current else ""
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} cells, "
                f"{int(elapsed) // 60}:{int(elapsed) % 60:02d} elapsed, ~{eta} left  {current}")
        click.echo("\r\033[K" + line[: shutil.get_terminal_size((120, 20)).columns - 1], nl=False)


def _cell_outcome(record: dict) -> str:
    if record["status"] != "ok":
        return f"{record['status']}: {record['reason']}"
    samples = sorted(record["samples_s"])
    median = samples[len(samples) // 2] if samples else float("nan")
    verified = {True: "", False: " UNVERIFIED", None: ""}[record.get("verified")]
    return f"median {median * 1e3:.3f} ms over {len(samples)} samples{verified}"


def _summary_table(df, run: dict) -> str:
    """The end-of-run table of a run's load() and read_run(): one line per cell that ran, fastest
    first within each workload."""
    from . import results

    if df.empty:
        return "no cells"
    env = run.get("environment") or {}
    cpu = env.get("cpu") or {}
    peaks = ", ".join(f"{d} {g:.0f} GFLOP/s" for d, g in (run.get("peak_gflops") or {}).items())
    lines = [f"machine: {cpu.get('model')}, {cpu.get('logical_cores')} cores; float32 matmul peak: {peaks or '-'}"]
    ok = df[df["status"] == "ok"].copy()
    header = (f"{'model':<20} {'batch':>5} {'phase':<16} {'framework':<11} {'mode':<9} {'dtype':<8} {'thr':>3} "
              f"{'median ms':>10} {'95% CI ms':>19} {'samples/s':>11} {'GFLOP/s':>8} {'%peak':>5} {'vs best':>7}"
              "  flags")
    lines.append(header)
    group = ["model", "batch_size", "phase", "dtype", "device", "threads"]
    for _, g in ok.groupby(group, sort=False):
        best = g["median_s"].min()
        for _, r in g.sort_values("median_s").iterrows():
            flags = []
            if results.flag(r.get("noisy")) is True:
                flags.append("noisy")
            if results.flag(r.get("verified")) is False:
                flags.append("UNVERIFIED")
            if results.flag(r.get("threads_verified")) is False:
                flags.append("THREADS")
            if results.flag(r.get("phase_sum_flag")) is True:
                flags.append(f"fwd+bwd={r['phase_sum_ratio']:.2f}x fb")
            lines.append(
                f"{r['model']:<20} {r['batch_size']:>5} {r['phase']:<16} {r['framework']:<11} {r['mode']:<9} "
                f"{r['dtype']:<8} {r['threads']:>3} {r['median_s'] * 1e3:>10.3f} "
                f"{f'[{r.ci_low_s * 1e3:.3f}, {r.ci_high_s * 1e3:.3f}]':>19} {r['samples_per_s']:>11,.0f} "
                f"{_num(r['gflops_per_s'], '.1f'):>8} {_num(100 * r['peak_share'], '.0f'):>5} "
                f"{r['median_s'] / best:>6.2f}x  {' '.join(flags)}")
    others = df[df["status"] != "ok"]
    if len(others):
        lines.append("")
        for _, r in others.iterrows():
            lines.append(f"{r['status']:<8} {r['model']}/{r['framework']}/{r['device']}/{r['dtype']}/{r['mode']}/"
                         f"b{r['batch_size']}/{r['phase']}/t{r['threads']}: {r['reason']}")
    return "\n".join(lines)


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
def run_cmd(suite, resume, results_dir, export, with_report) -> None:
    """Time a suite: every cell in a worker process per framework, rounds interleaved.

    SUITE is a name from suites/ (quick, default, threads, gpu, smoke) or a path to a .toml file.
    Each finished cell is written at once to results/<run-id>/; Ctrl-C keeps them (exit 130) and
    `--resume` finishes the run. Exit status: 0 when every cell ran or was skipped, 1 when any cell
    failed (error, crashed, timeout, oom) or did not match the reference, 2 on a bad suite.

    \b
    Examples:
      bench run quick
      bench run suites/threads.toml --results-dir /tmp/results
      bench run --resume results/20261123-184512-quick
      bench run smoke --no-report
    """
    from . import results, runner, suites

    if resume:
        if suite:
            raise click.UsageError("give a SUITE or --resume RUN, not both")
        try:
            loaded, run_dir = runner.resume_run(resume)
        except (results.ResultsError, suites.SuiteError) as e:
            raise click.UsageError(str(e)) from None
    else:
        if not suite:
            raise click.UsageError(f"which suite? available: {', '.join(suites.available())}")
        try:
            loaded = suites.load(suite)
        except suites.SuiteError as e:
            raise click.UsageError(str(e)) from None
        run_dir = runner.start_run(loaded, results_dir)
    click.echo(f"run {run_dir}  (suite {loaded.name}: {len(loaded.cells())} cells)")
    printer = _ProgressPrinter(sys.stdout.isatty())
    try:
        summary = runner.run_suite(loaded, run_dir, progress=printer)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: every finished cell is kept; finish with: bench run --resume {run_dir}")
        sys.exit(130)
    df = results.load(run_dir)
    click.echo(_summary_table(df, results.read_run(run_dir)))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items())) or "nothing to run"
    click.echo(f"\n{counts}; {summary.seconds:.0f} s; results in {run_dir}")
    if export:
        from .pytest_benchmark import export_run

        export_run(run_dir, export)
        click.echo(f"pytest-benchmark JSON: {export}")
    if with_report:
        _write_report(run_dir)
    failed = bool(df["status"].isin(results.FAILED).any())
    unverified = any(results.flag(v) is False for v in df["verified"])
    if failed or unverified:
        sys.exit(1)


def _drawing_processes() -> int:
    """Worker processes for drawing a report's figures: one per CPU this process may use, at most 4
    (past that, building the figures in each worker costs more than the drawing it shares)."""
    import os

    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on macOS or Windows
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _write_report(run_dir, plots: bool = True, summary=None) -> bool:
    """Write the report of a finished run; a failure is printed, never fatal: the results are safe."""
    from . import report

    try:
        paths = report.write(run_dir, plots=plots, processes=_drawing_processes(), summary=summary)
    except Exception as e:  # a plotting bug must not cost the run its exit status or its results
        click.echo(click.style(f"the report could not be written: {type(e).__name__}: {e}; the results are "
                               f"complete: retry with `bench report {run_dir}` (--debug shows the traceback)",
                               fg="red"), err=True)
        return False
    html = next(p for p in paths if p.name == report.REPORT_HTML)
    figures = sum(p.suffix == ".png" for p in paths)
    drawn = f"{figures} plots as PNG and SVG in {html.parent / report.PLOTS_DIR}" if plots else "no plots"
    click.echo(f"report: {html} (and {report.REPORT_MD}; {drawn})")
    return True


# --------------------------------------------------------------------------------------------
# bench report, bench compare


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

    try:
        summary = report.summarize(run)
    except results.ResultsError as e:
        raise click.UsageError(str(e)) from None
    for line in report.summary_lines(summary):
        click.echo(line.replace("**", "").replace("`", ""))
    if not _write_report(run, plots=plots, summary=summary):
        sys.exit(1)


@cli.command("compare")
@click.argument("run_a", type=click.Path(exists=True, file_okay=False))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False))
@click.option("--min-effect", default=0.10, show_default=True, type=click.FloatRange(0, 10, max_open=True),
              help="Smallest change in the median that counts, as a fraction (0.10: 10% slower or faster).")
@click.option("--alpha", default=0.05, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Significance level of the Mann-Whitney U test on the two cells' samples.")
@click.option("--correction", type=click.Choice(["holm", "none"]), default="holm", show_default=True,
              help="Correct the p-values for testing every cell at once (Holm-Bonferroni), or not.")
@click.option("--force", is_flag=True, help="Compare runs from different machines, versions or settings anyway.")
@click.option("--relative-to", "relative_to", default=None, metavar="FRAMEWORK",
              help="Compare each cell's time divided by this framework's in the same round (e.g. reference): "
                   "cancels a slowdown of the whole machine between the runs.")
@click.option("--all", "show_all", is_flag=True, help="List every cell compared, not only the changes.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table",
              show_default=True, help="markdown: for a pull request or a CI summary.")
def compare_cmd(run_a, run_b, min_effect, alpha, correction, force, relative_to, show_all, fmt) -> None:
    """Compare RUN_B with RUN_A (the baseline), cell by cell: what got slower, what got faster.

    For each cell that finished in both: the ratio of medians B / A with its bootstrap 95% CI, and
    a two-sided Mann-Whitney U test on the two sets of samples, its p-values Holm-corrected for
    testing every cell at once. A regression is a cell at least MIN_EFFECT slower with p < ALPHA;
    an improvement, as much faster (ratio <= 1 / (1 + MIN_EFFECT)). Two runs of the same code on
    a shared machine differ by more than their samples' spread: compare two such runs first to see
    your machine's noise, and use --relative-to to cancel what hits every framework alike.
    Cells that finished in A and failed in B, or no longer match the reference, are broken.
    Exit status: 0 no regression, 1 a regression or a broken cell (CI can gate on it), 2 bad input,
    including runs from different machines, framework versions or speed-changing settings
    (the differing metadata are named; --force compares them anyway).

    \b
    Examples:
      bench compare results/20261123-184512-quick results/20261124-090301-quick
      bench compare baseline/ candidate/ --min-effect 0.05 --format markdown
      bench compare results/a results/b --relative-to reference   on a shared, drifting machine
    """
    from . import compare

    try:
        result = compare.compare_runs(run_a, run_b, min_effect=min_effect, alpha=alpha, force=force,
                                      relative_to=relative_to, correction=correction)
    except compare.IncomparableRuns as e:
        raise click.UsageError(str(e)) from None
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif fmt == "markdown":
        click.echo(compare.markdown(result, show_all=show_all))
    else:
        click.echo(compare.text(result, show_all=show_all))
    if result.failed:
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
