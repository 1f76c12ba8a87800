"""Writing a run's report into its folder: report.md, report.html and plots/<name>.png and .svg,
every file atomically, the figures drawn here or in worker processes."""

from __future__ import annotations

import io
import os
from pathlib import Path

from .. import results
from ..results import Run
from ..store import atomic_write_bytes
from . import md, page
from .summary import Summary, summarize

__all__ = ["REPORT_HTML", "REPORT_MD", "PLOTS_DIR", "write", "render_plot", "save_plots"]

REPORT_HTML = "report.html"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"


def write(run: Run | str | os.PathLike, *, plots: bool = True, processes: int = 1,
          summary: Summary | None = None) -> list[Path]:
    """Write report.md, report.html and plots/<name>.png and .svg into the run folder; returns the paths.

    run is a Run already read (harness.results.read), or its folder, read here once. Every file is
    written atomically (a reader sees the old file or the new one). With plots=False (or a run with
    nothing to plot), the report has no figures.

    Drawing the figures is most of the time (about 15 s for the quick suite on 2 cores). With
    processes > 1 they are drawn in that many spawned worker processes, each of which builds the
    figures from the tables it is handed (not from the files) and draws its share (`bench` does
    this, one per core up to 4). Spawned workers import the caller's main module again, so a script
    that passes processes > 1 must guard its entry point with `if __name__ == "__main__":`; where
    workers cannot start, the figures are drawn here. The PNGs are byte-identical either way; the
    SVGs differ only in how their font glyphs are numbered.

    summary, when given, is summarize(run)'s, which the caller has already made.
    """
    run = run if isinstance(run, Run) else results.read(run)
    summary = summary or summarize(run)
    tables = (run.table(raw=True), run.checks(), run.meta)
    drawn: list[tuple[int, str, str, str, bytes, bytes]] = []
    if plots:
        drawn = _draw_in_workers(tables, processes) if processes > 1 else _draw(tables, 0, 1)
    written, images, plot_files = save_plots(run.path, [d[1:] for d in drawn])
    for name, content in ((REPORT_MD, md.markdown(summary, plot_files)),
                          (REPORT_HTML, page.html_page(summary, plot_files, images))):
        path = Path(run.path) / name
        atomic_write_bytes(path, content.encode("utf-8"))
        written.append(path)
    return written


def _draw_in_workers(tables: tuple, processes: int) -> list[tuple]:
    import concurrent.futures
    import multiprocessing

    # NOTE: 'spawn', not 'fork': the parent holds BLAS and framework threads, and a fork of a threaded
    # process may deadlock; each worker imports fwbench and is handed the tables, pickled.
    context = multiprocessing.get_context("spawn")
    jobs = [(tables, k, processes) for k in range(processes)]
    try:
        with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
            shares = list(pool.map(_draw_share, jobs))
    except (concurrent.futures.process.BrokenProcessPool, OSError, RuntimeError):
        # a worker that cannot start (no importable main module, a sandbox without processes): draw here
        shares = [_draw(tables, 0, 1)]
    return sorted((d for share in shares for d in share), key=lambda d: d[0])


def _draw_share(job: tuple[tuple, int, int]) -> list[tuple]:
    """In a worker process: draw its share (_draw) of the figures of the tables it was handed."""
    tables, k, n = job
    return _draw(tables, k, n)


def _draw(tables: tuple, k: int, n: int) -> list[tuple]:
    """Build every plot of the run and draw the k-th of every n: [(index, name, title, caption, png, svg)]."""
    from .. import plots as plotting

    df, checks, meta = tables
    figures = plotting.plots(df, checks, meta)
    drawn = []
    for index, plot in enumerate(figures):
        if index % n != k:
            continue
        drawn.append((index, plot.name, plot.title, plot.caption, *render_plot(plot)))
    return drawn


def render_plot(plot) -> tuple[bytes, bytes]:
    """A Plot's figure as (PNG, SVG) bytes."""
    png = _render(plot.figure, "png")
    # NOTE: the layout is done; laying the figure out again for the SVG would cost a third of the time
    plot.figure.set_layout_engine("none")
    return png, _render(plot.figure, "svg")


def save_plots(folder, drawn) -> tuple[list[Path], dict[str, bytes], list[tuple[str, str, str]]]:
    """Write each drawn figure, (name, title, caption, png, svg), as plots/<name>.png and .svg in
    folder, atomically; returns the paths, the PNGs keyed by their path relative to the report,
    and the (title, caption, relative path) of each, for the report's blocks."""
    written: list[Path] = []
    images, plot_files = {}, []
    for name, title, caption, png, svg in drawn:
        for kind, data in (("png", png), ("svg", svg)):
            path = Path(folder) / PLOTS_DIR / f"{name}.{kind}"
            atomic_write_bytes(path, data)
            written.append(path)
        rel = f"{PLOTS_DIR}/{name}.png"
        images[rel] = png
        plot_files.append((title, caption, rel))
    return written, images, plot_files


def _render(figure, kind: str) -> bytes:
    import matplotlib

    buf = io.BytesIO()
    # NOTE: no date in the metadata and a fixed salt for the SVG's element ids (random by default),
    # so that drawing a run again writes the same PNG bytes and, short of glyph numbering and the
    # sixth decimal of a coordinate, the same SVG
    meta = {"Software": None} if kind == "png" else {"Date": None}
    with matplotlib.rc_context({"svg.hashsalt": "fwbench"}):
        figure.savefig(buf, format=kind, dpi=100, metadata=meta)
    return buf.getvalue()

