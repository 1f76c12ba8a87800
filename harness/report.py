"""A run as a person reads it: the summary first, then the plots, the tables and the machine. No measuring.

`summarize(run_dir)` reads a run (harness.results) into a Summary: for every workload (model,
device, dtype, batch size, phase, threads) its contenders (framework and mode) fastest first, each
with its time relative to the fastest and the bootstrap 95% CI of that ratio (harness.stats.ratio_ci
over the raw samples of the one run); the cells that failed, were skipped, are noisy or did not
match the reference; the machine and versions. `write(run_dir)` renders it as report.md and a
self-contained report.html (images embedded as data: URIs, no script, nothing fetched), with the
plots of harness.plots as PNG and SVG under plots/.

A difference is called significant when the ratio's CI lies wholly above 1: the contender is then
slower than the fastest in this run, by at least the CI's lower bound, at 95% confidence.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from . import results, stats

__all__ = ["PHASES", "Contender", "Workload", "Summary", "summarize", "headline_text", "fmt_time", "markdown",
           "html_page", "summary_lines", "anchor", "contender_label", "write", "REPORT_HTML", "REPORT_MD", "PLOTS_DIR"]

REPORT_HTML = "report.html"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"

# Phases in the order a reader expects them; a model's headline is the first of these it has, read
# from the end: a training step is what a practitioner pays for.
PHASES = ("forward", "backward", "forward_backward", "train_step")
_HEADLINE_PHASES = ("train_step", "forward_backward", "forward", "backward")
_LIST_AT_MOST = 12  # noisy cells are named one by one up to this many, else counted


def fmt_time(seconds: float) -> str:
    """Seconds per call as a person reads them: '812 ns', '45.6 µs', '1.23 ms', '2.05 s'; '-' for NaN."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale * 0.9995 or unit == "ns":  # 0.9999 ms is '1.00 ms', not '1000 µs'
            value = seconds / scale
            # three significant digits, trailing zeros kept: 35.0 ms, 227 µs, 1.20 s
            decimals = max(0, 2 - math.floor(math.log10(max(value, 1.0))))
            return f"{value:.{decimals}f} {unit}"
    raise AssertionError("unreachable")


def _ratio(value: float) -> str:
    return f"{value:.2f}x"


@dataclass(frozen=True, slots=True)
class Contender:
    """One framework and mode within a workload. ratio = median / the fastest's median (1 for the fastest)."""

    label: str
    key: str
    median_s: float
    ratio: float
    ci_low: float  # of the ratio
    ci_high: float
    noisy: bool
    verified: bool | None
    median_ci_s: tuple[float, float] = (math.nan, math.nan)  # bootstrap 95% CI of the median itself
    n: int = 0
    cv: float = math.nan
    samples_per_s: float = math.nan
    gflops_per_s: float = math.nan
    peak_share: float = math.nan

    @property
    def significant(self) -> bool:
        """Slower than the fastest beyond doubt: the ratio's 95% CI lies above 1."""
        return self.ci_low > 1

    @property
    def marks(self) -> str:
        """'~' noisy, '!' unverified: the marks every table and plot of the report uses."""
        return ("~" if self.noisy else "") + ("!" if self.verified is False else "")


@dataclass(frozen=True, slots=True)
class Workload:
    model: str
    device: str
    dtype: str
    batch_size: int
    phase: str
    threads: int
    contenders: list[Contender]  # fastest first

    @property
    def fastest(self) -> Contender:
        return self.contenders[0]

    @property
    def name(self) -> str:
        return f"{self.model} {self.phase}, batch {self.batch_size}, {self.device} {self.dtype}, {self.threads} threads"


@dataclass(frozen=True, slots=True)
class Summary:
    run_id: str
    suite: str
    description: str
    machine: str
    versions: dict[str, str]
    environment: dict
    peak_gflops: dict
    counts: dict[str, int]
    workloads: list[Workload]
    headlines: list[Workload]  # per model, device, dtype: its largest batch, its headline phase, most threads
    failed: list[dict] = field(default_factory=list)  # {key, status, reason}
    skipped: list[dict] = field(default_factory=list)
    noisy: list[str] = field(default_factory=list)
    unverified: list[dict] = field(default_factory=list)  # {key, first_divergence}
    # one per model, framework, device, dtype and mode checked: {model, ..., status, tensors, worst_tensor,
    # worst_normwise, worst_tolerance, first_divergence}
    checks: list[dict] = field(default_factory=list)

    @property
    def not_significant(self) -> list[tuple[Workload, Contender]]:
        """Every contender that cannot be told apart from its workload's fastest (the CI contains 1)."""
        return [(w, c) for w in self.workloads for c in w.contenders[1:] if not c.significant]


def contender_label(framework: str, mode: str) -> str:
    """'torch', 'torch compile', 'tensorflow xla': how every table and plot names a framework in a
    mode; eager, the default, goes unnamed."""
    return framework if mode == "eager" else f"{framework} {mode}"


def _label(row) -> str:
    return contender_label(row["framework"], row["mode"])


class _Tables(NamedTuple):
    """A run as read once: load(raw=True), load_checks() and read_run()."""

    df: Any
    checks: Any
    run: dict


def _read(run_dir: str | os.PathLike) -> _Tables:
    return _Tables(results.load(run_dir, raw=True), results.load_checks(run_dir), results.read_run(run_dir))


def summarize(run_dir: str | os.PathLike) -> Summary:
    """The summary of a run, from its stored raw samples."""
    return _summarize(run_dir, _read(run_dir))


def _summarize(run_dir: str | os.PathLike, tables: _Tables) -> Summary:
    df, run = tables.df, tables.run
    env = run.get("environment") or {}
    ok = df[df["status"] == "ok"]
    workloads = []
    for values, group in ok.groupby(list(results.WORKLOAD), sort=True):
        group = group.sort_values("median_s")
        best = group.iloc[0]
        contenders = []
        for _, row in group.iterrows():
            if row["key"] == best["key"]:
                ratio, low, high = 1.0, 1.0, 1.0
            else:
                ratio, low, high = stats.ratio_ci(row["samples_s"], best["samples_s"])
            contenders.append(Contender(
                _label(row), row["key"], float(row["median_s"]), ratio, low, high, bool(results.flag(row["noisy"])),
                results.flag(row["verified"]), (float(row["ci_low_s"]), float(row["ci_high_s"])), int(row["n"]),
                float(row["cv"]), float(row["samples_per_s"]), float(row["gflops_per_s"]), float(row["peak_share"])))
        workloads.append(Workload(*(results.plain(v) for v in values), contenders=contenders))
    order = {p: i for i, p in enumerate(PHASES)}
    workloads.sort(key=lambda w: (w.model, w.device, w.dtype, w.threads, w.batch_size, order.get(w.phase, 9)))
    not_ok = [{"key": r["key"], "label": _label(r),
               **{f: results.plain(r[f]) for f in (*results.WORKLOAD, "status", "reason")}}
              for _, r in df[df["status"] != "ok"].iterrows()]
    failed = [x for x in not_ok if x["status"] in results.FAILED]
    skipped = [x for x in not_ok if x["status"] == "skipped"]
    suite = run.get("suite") or {}
    return Summary(
        run_id=Path(run_dir).resolve().name, suite=str(suite.get("name", "?")),
        description=str(suite.get("description", "")), machine=_machine(env), versions=_versions(env),
        environment=env, peak_gflops=dict(run.get("peak_gflops") or {}),
        counts=df["status"].value_counts().to_dict(), workloads=workloads, headlines=_headlines(workloads),
        failed=failed, skipped=skipped,
        noisy=[r.key for r in ok.itertuples() if results.flag(r.noisy)],
        unverified=[{"key": r.key, "first_divergence": r.first_divergence} for r in ok.itertuples()
                    if results.flag(r.verified) is False],
        checks=_checks(tables.checks))


def _checks(checks) -> list[dict]:
    """Each check's verdict and its worst tensor: the one with the largest error relative to its tolerance."""
    found = []
    which = ["model", "framework", "device", "dtype", "mode"]
    for values, group in checks.groupby(which, sort=True):
        relative = (group["normwise"] / group["normwise_tol"]).fillna(math.inf)  # NaN (shape, Inf) is the worst
        worst = group.loc[relative.idxmax()]
        found.append({**dict(zip(which, values, strict=True)), "status": worst["check_status"],
                      "tensors": len(group), "failed": int((~group["passed"].fillna(False)).sum()),
                      "worst_tensor": worst["tensor"], "worst_normwise": float(worst["normwise"]),
                      "worst_tolerance": float(worst["normwise_tol"]),
                      "first_divergence": worst["first_divergence"] if isinstance(worst["first_divergence"], str)
                      else None})
    return found


def _headlines(workloads: list[Workload]) -> list[Workload]:
    """Per model, device and dtype, the workload a practitioner asks about first: among those with at
    least two contenders when there are any (a race needs two runners), the most threads, then the
    largest batch, then the first phase of _HEADLINE_PHASES it has."""
    preference = {p: i for i, p in enumerate(_HEADLINE_PHASES)}
    groups: dict[tuple, list[Workload]] = {}
    for w in workloads:
        groups.setdefault((w.model, w.device, w.dtype), []).append(w)
    return [max(groups[k], key=lambda w: (len(w.contenders) > 1, w.threads, w.batch_size,
                                          -preference.get(w.phase, len(preference))))
            for k in sorted(groups)]


def _machine(env: dict) -> str:
    cpu = env.get("cpu") or {}
    parts = [f"{cpu.get('model') or 'unknown CPU'}, {cpu.get('logical_cores') or '?'} logical cores"]
    if env.get("memory_bytes"):
        parts.append(f"{env['memory_bytes'] / 2**30:.0f} GiB")
    gpus = env.get("gpus") or []
    parts.append(", ".join(g.get("name", "?") for g in gpus) if gpus else "no GPU")
    os_info = env.get("os") or {}
    if os_info.get("system"):
        parts.append(f"{os_info['system']} {os_info.get('release', '')}".strip())
    return "; ".join(parts)


def _versions(env: dict) -> dict[str, str]:
    found = {"python": (env.get("python") or {}).get("version")}
    found.update({k: v for k, v in (env.get("packages") or {}).items() if v})
    blas = env.get("blas") or {}
    if blas.get("name"):
        found["blas"] = f"{blas['name']} {blas.get('version') or ''}".strip()
    git = env.get("git") or {}
    if git.get("commit"):
        found["fwbench commit"] = git["commit"][:12] + (" (uncommitted changes)" if git.get("dirty") else "")
    return {k: str(v) for k, v in found.items() if v}


def headline_text(w: Workload) -> str:
    """One sentence: who was fastest at this workload and by how much, each ratio with its 95% CI."""
    best = w.fastest
    text = f"{w.name}: **{best.label}**{best.marks} fastest at {fmt_time(best.median_s)}"
    if len(w.contenders) == 1:
        return text + " (the only contender)"
    others = []
    for c in w.contenders[1:]:
        verdict = "" if c.significant else ", not significant"
        others.append(f"{c.label}{c.marks} {_ratio(c.ratio)} [{c.ci_low:.2f}, {c.ci_high:.2f}]{verdict}")
    return text + "; " + "; ".join(others)


# ------------------------------------------------------------------------------------------------
# Markdown


_MARKS_NOTE = ("Marks: `~` noisy (CV >= 10% or IQR >= 25% of the median: read its time with care), "
               "`!` unverified (its equivalence check against the float64 reference failed).")


def markdown(summary: Summary, plot_files: list[tuple[str, str, str]] = ()) -> str:
    """report.md: plot_files are (title, caption, relative path of the PNG)."""
    s = summary
    out = [f"# fwbench report: {s.run_id}", "",
           f"Suite **{s.suite}**{': ' + s.description if s.description else ''}.  ",
           f"Machine: {s.machine}.  ",
           "Versions: " + ", ".join(f"{k} {v}" for k, v in s.versions.items()) + ".", ""]
    header = len(out)
    out += ["## Summary", ""]
    out += summary_lines(s)
    for title, caption, path in plot_files:
        out += [f"## {title}", "", f"![{title}]({path})", "", caption, ""]
    out += ["## Fastest per workload", "", _MARKS_NOTE, ""]
    out += _md_table(["workload", "fastest", "median", "others: time / fastest [95% CI]"],
                     [[w.name, w.fastest.label + w.fastest.marks, fmt_time(w.fastest.median_s),
                       "; ".join(f"{c.label}{c.marks} {_ratio(c.ratio)} [{c.ci_low:.2f}, {c.ci_high:.2f}]"
                                 + ("" if c.significant else " (n.s.)") for c in w.contenders[1:]) or "-"]
                      for w in s.workloads])
    if s.checks:
        out += ["", "## Equivalence with the float64 reference", "",
                "Each model in each framework, dtype and mode, checked tensor by tensor (outputs, every layer, the "
                "loss, every gradient, the parameters after 3 optimizer steps) at the check's own batch. The worst "
                "tensor is the one closest to its tolerance; the error is normwise, ||a - b|| / ||b||.", ""]
        out += _md_table(
            ["model", "framework", "device", "dtype", "mode", "status", "tensors", "worst tensor", "normwise error",
             "tolerance", "first divergence"],
            [[c["model"], c["framework"], c["device"], c["dtype"], c["mode"],
              c["status"] if c["status"] == "pass" else f"**{c['status']}**", f"{c['tensors']}",
              c["worst_tensor"], _num(c["worst_normwise"], ".1e"), _num(c["worst_tolerance"], ".0e"),
              c["first_divergence"] or "-"] for c in s.checks])
    out += ["", "## Every cell", "", _MARKS_NOTE, ""]
    out += _md_table(*_cells_table(s))
    out += ["", "## Machine", ""]
    out += [f"- {k}: {v}" for k, v in _environment_items(s)]
    contents = [f"- [{line[3:]}](#{anchor(line[3:])})" for line in out if line.startswith("## ")]
    out[header:header] = ["Contents:", "", *contents, ""]
    return "\n".join(out) + "\n"


def anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading (lower case, punctuation dropped, spaces to '-'), which
    report.html gives it too, so that the contents' links work in both."""
    import re

    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def summary_lines(s: Summary) -> list[str]:
    lines = []
    counts = ", ".join(f"{n} {status}" for status, n in sorted(s.counts.items()))
    lines.append(f"{sum(s.counts.values())} cells: {counts}.")
    lines.append("")
    if s.headlines:
        lines.append("For each model, the fastest framework, and the others' time relative to it with the 95% CI "
                     "of the ratio (a CI containing 1 is not significant):")
        lines.append("")
        lines += [f"- {headline_text(w)}" for w in s.headlines]
        lines.append("")
    ns = s.not_significant
    if ns:
        lines.append(f"Not significant ({len(ns)} of {sum(len(w.contenders) - 1 for w in s.workloads)} comparisons "
                     "with the fastest): the 95% CI of the ratio contains 1, so this run cannot tell them apart:")
        lines.append("")
        lines += [f"- {w.name}: {c.label} vs {w.fastest.label} {_ratio(c.ratio)} [{c.ci_low:.2f}, {c.ci_high:.2f}]"
                  for w, c in ns]
        lines.append("")
    else:
        lines += ["Every difference from the fastest is significant.", ""]
    for title, items in (("Failed", s.failed), ("Skipped", s.skipped)):
        if items:
            lines.append(f"{title} ({len(items)}):")
            lines.append("")
            lines += [f"- `{i['key']}`: {i['status']}: {i['reason']}" for i in items]
            lines.append("")
    if s.unverified:
        lines.append(f"Unverified `!` ({len(s.unverified)}): timed, but the model does not match the reference:")
        lines.append("")
        lines += [f"- `{u['key']}`: first divergence {u['first_divergence']}" for u in s.unverified]
        lines.append("")
    if s.noisy:
        timed = sum(len(w.contenders) for w in s.workloads)
        lines.append(f"Noisy `~`: {len(s.noisy)} of {timed} timed cells have a CV >= 10% or an IQR >= 25% of the "
                     "median; their medians and CIs stand, but the spread says the machine was busy or the "
                     "workload is short against the machine's jitter. They are marked `~` in every table and plot"
                     + (": " + ", ".join(f"`{k}`" for k in s.noisy) if len(s.noisy) <= _LIST_AT_MOST else "."))
        lines.append("")
    return lines


def _cells_table(s: Summary) -> tuple[list[str], list[list[str]]]:
    header = ["model", "device", "dtype", "batch", "phase", "threads", "framework", "status", "median",
              "median 95% CI", "time / fastest [95% CI]", "samples/s", "GFLOP/s", "% of peak", "n", "CV", "marks"]
    rows = []
    for w in s.workloads:
        where = [w.model, w.device, w.dtype, str(w.batch_size), w.phase, str(w.threads)]
        for c in w.contenders:
            low, high = c.median_ci_s
            versus = "1 (fastest)" if c is w.fastest else f"{_ratio(c.ratio)} [{c.ci_low:.2f}, {c.ci_high:.2f}]"
            rows.append([*where, c.label, "ok", fmt_time(c.median_s), f"{fmt_time(low)} – {fmt_time(high)}", versus,
                         _num(c.samples_per_s, ",.0f"), _num(c.gflops_per_s, ".2f"), _num(100 * c.peak_share, ".1f"),
                         str(c.n), _num(100 * c.cv, ".1f") + "%", c.marks])
    for x in s.failed + s.skipped:
        rows.append([x["model"], x["device"], x["dtype"], str(x["batch_size"]), x["phase"], str(x["threads"]),
                     x["label"], x["status"], "-", "-", "-", "-", "-", "-", "-", "-", ""])
    return header, rows


def _num(value: float, fmt: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, fmt)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return lines


def _environment_items(s: Summary) -> list[tuple[str, str]]:
    env = s.environment
    items = [("machine", s.machine), ("host", str(env.get("hostname", "?")))]
    items += [(k, v) for k, v in s.versions.items()]
    if s.peak_gflops:
        items.append(("float32 matmul peak", ", ".join(f"{d} {g:.0f} GFLOP/s" for d, g in s.peak_gflops.items())))
    set_vars = {k: v for k, v in (env.get("thread_env") or {}).items() if v is not None}
    items.append(("speed-changing environment variables set",
                  ", ".join(f"{k}={v}" for k, v in set_vars.items()) or "none"))
    return items


# ------------------------------------------------------------------------------------------------
# HTML: report.md's text, rendered by the small converter below, with every image embedded


_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #1b1b1b; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
th { background: #f4f4f4; position: sticky; top: 0; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f2f2f2; padding: 0 3px; border-radius: 3px; font-size: 0.92em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figure { margin: 0.5em 0 1.5em; }
"""


def html_page(markdown_text: str, images: dict[str, bytes]) -> str:
    """A self-contained HTML page of report.md's text: images (PNG bytes keyed by the path the
    Markdown names them by) become data: URIs; no script, style inline, nothing fetched."""
    title = markdown_text.splitlines()[0].lstrip("# ") if markdown_text else "fwbench report"
    body = _md_to_html(markdown_text, images)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _inline(text: str) -> str:
    """Escape text, then render the inline Markdown this module writes: **strong** and `code`."""
    import re

    out = html.escape(text, quote=False).replace("\\|", "|")
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\[([^\]]+)\]\((#[\w\-]+)\)", r'<a href="\2">\1</a>', out)  # links within the page
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _md_to_html(text: str, images: dict[str, bytes]) -> str:
    """The subset of Markdown that `markdown` writes: headings, paragraphs, '- ' lists, pipe tables, images."""
    import re

    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            text = line[level:].strip()
            out.append(f'<h{level} id="{html.escape(anchor(text))}">{_inline(text)}</h{level}>')
            i += 1
        elif (m := re.fullmatch(r"!\[(.*)\]\((.*)\)", line.strip())):
            alt, path = m.groups()
            if path not in images:
                raise ValueError(f"report.md names image {path!r}, which was not rendered")
            data = base64.b64encode(images[path]).decode("ascii")
            out.append(f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>')
            i += 1
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>\n" + "\n".join(items) + "\n</ul>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            out.append(_html_table(rows))
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "- ", "|", "![")):
                para.append(_inline(lines[i].rstrip()))
                i += 1
            out.append("<p>" + "<br>\n".join(para) + "</p>")
    return "\n".join(out)


def _html_table(rows: list[str]) -> str:
    import re

    def cells(row: str) -> list[str]:
        return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]

    head = "".join(f"<th>{_inline(c)}</th>" for c in cells(rows[0]))
    body = "\n".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in cells(r)) + "</tr>" for r in rows[2:])
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


# ------------------------------------------------------------------------------------------------
# writing


def write(run_dir: str | os.PathLike, *, plots: bool = True, processes: int = 1,
          summary: Summary | None = None) -> list[Path]:
    """Write report.md, report.html and plots/<name>.png and .svg into the run folder; returns the paths.

    Every file is written atomically (a reader sees the old file or the new one). With plots=False
    (or a run with nothing to plot), the report has no figures.

    Drawing the figures is most of the time (about 20 s for the quick suite on 2 cores). With
    processes > 1 they are drawn in that many spawned worker processes, each of which builds the
    figures and draws its share (`bench` does this, one per core up to 4). Spawned workers import
    the caller's main module again, so a script that passes processes > 1 must guard its entry
    point with `if __name__ == "__main__":`; where workers cannot start, the figures are drawn here.
    The PNGs are byte-identical either way; the SVGs differ only in how their font glyphs are
    numbered.

    summary, when given, is summarize(run_dir)'s, which the caller has already made.
    """
    run_dir = Path(run_dir)
    tables = _read(run_dir)
    summary = summary or _summarize(run_dir, tables)
    drawn: list[tuple[int, str, str, str, bytes, bytes]] = []
    if plots:
        drawn = _draw_in_workers(run_dir, processes) if processes > 1 else _draw(tables, 0, 1)
    written: list[Path] = []
    images, plot_files = {}, []
    for _, name, title, caption, png, svg in drawn:
        for kind, data in (("png", png), ("svg", svg)):
            path = run_dir / PLOTS_DIR / f"{name}.{kind}"
            results.atomic_write_bytes(path, data)
            written.append(path)
        rel = f"{PLOTS_DIR}/{name}.png"
        images[rel] = png
        plot_files.append((title, caption, rel))
    text = markdown(summary, plot_files)
    for name, content in ((REPORT_MD, text), (REPORT_HTML, html_page(text, images))):
        path = run_dir / name
        results.atomic_write_bytes(path, content.encode("utf-8"))
        written.append(path)
    return written


def _draw_in_workers(run_dir: Path, processes: int) -> list[tuple]:
    import concurrent.futures
    import multiprocessing

    # NOTE: 'spawn', not 'fork': the parent holds BLAS and framework threads, and a fork of a threaded
    # process may deadlock; each worker imports fwbench and loads the run afresh instead.
    context = multiprocessing.get_context("spawn")
    jobs = [(str(run_dir), k, processes) for k in range(processes)]
    try:
        with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
            shares = list(pool.map(_draw_share, jobs))
    except (concurrent.futures.process.BrokenProcessPool, OSError, RuntimeError):
        # a worker that cannot start (no importable main module, a sandbox without processes): draw here
        shares = [_draw(_read(run_dir), 0, 1)]
    return sorted((d for share in shares for d in share), key=lambda d: d[0])


def _draw_share(job: tuple[str, int, int]) -> list[tuple]:
    """In a worker process: read the run, and draw its share (_draw)."""
    run_dir, k, n = job
    return _draw(_read(run_dir), k, n)


def _draw(tables: _Tables, k: int, n: int) -> list[tuple]:
    """Build every plot of the run and draw the k-th of every n: [(index, name, title, caption, png, svg)]."""
    from . import plots as plotting

    figures = plotting.plots(tables.df, tables.checks, tables.run)
    drawn = []
    for index, plot in enumerate(figures):
        if index % n != k:
            continue
        png = _render(plot.figure, "png")
        # NOTE: the layout is done; laying the figure out again for the SVG would cost a third of the time
        plot.figure.set_layout_engine("none")
        drawn.append((index, plot.name, plot.title, plot.caption, png, _render(plot.figure, "svg")))
    return drawn


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
