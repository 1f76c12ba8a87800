"""The report as a structured document: blocks (headings, paragraphs, lists, tables, figures) of
inline spans (text, code, strong, links), built from a Summary. md.py and page.py render the
same document, so the two files say the same thing without either parsing the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..fmt import NOISY_MARK, UNVERIFIED_MARK, fmt_time, num, ratio
from .summary import Summary, Workload

__all__ = ["Code", "Strong", "Link", "Inline", "Heading", "Paragraph", "Bullets", "Table", "Figure", "Block",
           "anchor", "report", "summary_blocks", "headline"]

_LIST_AT_MOST = 12  # noisy cells are named one by one up to this many, else counted


# ------------------------------------------------------------------------------------------------
# spans and blocks


@dataclass(frozen=True, slots=True)
class Code:
    text: str


@dataclass(frozen=True, slots=True)
class Strong:
    text: str


@dataclass(frozen=True, slots=True)
class Link:
    text: str
    href: str  # an anchor within the page: '#summary'


Span = str | Code | Strong | Link
Inline = tuple[Span, ...]


def _inline(*spans: Span | Inline) -> Inline:
    """Spans, and inlines spliced in, as one Inline (empty strings dropped)."""
    out: list[Span] = []
    for span in spans:
        if isinstance(span, tuple):
            out.extend(span)
        elif span != "":
            out.append(span)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Heading:
    level: int
    text: str

    @property
    def anchor(self) -> str:
        return anchor(self.text)


@dataclass(frozen=True, slots=True)
class Paragraph:
    lines: tuple[Inline, ...]  # several lines: hard line breaks between them


@dataclass(frozen=True, slots=True)
class Bullets:
    items: tuple[Inline, ...]


@dataclass(frozen=True, slots=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[Inline, ...], ...]


@dataclass(frozen=True, slots=True)
class Figure:
    alt: str
    path: str  # of the PNG, relative to the report


Block = Heading | Paragraph | Bullets | Table | Figure


def _para(*spans: Span | Inline) -> Paragraph:
    return Paragraph((_inline(*spans),))


def anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading (lower case, punctuation dropped, spaces to '-'), which
    report.html gives it too, so that the contents' links work in both."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


# ------------------------------------------------------------------------------------------------
# the report


_MARKS_NOTE = _para("Marks: ", Code(NOISY_MARK), " noisy (its 95% CI, from the spread of its passes and rounds, "
                    "cannot resolve a 10% change: read its time with care), ", Code(UNVERIFIED_MARK),
                    " not verified (its check against the float64 reference failed, or could not be made: the "
                    "summary says which).")


def _interval(low: float, high: float) -> str:
    return f"[{low:.2f}, {high:.2f}]"


def headline(w: Workload) -> Inline:
    """One sentence: who was fastest at this workload and by how much, each ratio with its 95% CI."""
    best = w.fastest
    text = _inline(f"{w.name}: ", Strong(best.label), f"{best.marks} fastest at {fmt_time(best.median_s)}")
    if len(w.contenders) == 1:
        return _inline(text, " (the only contender)")
    others = []
    for c in w.contenders[1:]:
        verdict = "" if c.significant else ", not significant"
        others.append(f"{c.label}{c.marks} {ratio(c.ratio)} {_interval(c.ci_low, c.ci_high)}{verdict}")
    return _inline(text, "; " + "; ".join(others))


def _by_finding(unverified: list[dict]) -> list[list[dict]]:
    """The cells not verified, grouped by framework and finding (status and reason), in the order of
    their first cell: one framework's limitation is one line, not one per cell or per model."""
    groups: dict[tuple, list[dict]] = {}
    for u in unverified:
        groups.setdefault((u.get("framework"), u.get("status"), u.get("reason")), []).append(u)
    return list(groups.values())


def _not_verified(cells: list[dict]) -> Inline:
    """One finding: the cell (or the framework and its models, for several), the status, where it
    parts (with the models, where that differs between them) and the reason."""
    first = cells[0]
    finding = first.get("status") or "fail"
    places: dict[str, dict[str, None]] = {}  # where -> its models, in order, each once
    for u in cells:
        if u.get("first_divergence"):
            places.setdefault(u["first_divergence"], {})[str(u.get("model"))] = None
    if len(places) == 1:
        finding += f": first divergence {next(iter(places))}"
    elif places:
        finding += ": first divergence " + "; ".join(f"{where} ({', '.join(models)})"
                                                   for where, models in places.items())
    if first.get("reason"):
        finding += f" ({first['reason']})"
    if len(cells) == 1:
        return _inline(Code(first["key"]), f": {finding}")
    models = sorted({str(u.get("model")) for u in cells})
    return _inline(Code(str(first.get("framework"))), f", {len(cells)} cells ({', '.join(models)}): {finding}")


def summary_blocks(s: Summary) -> list[Block]:
    """The summary section: counts, headlines, what is not significant, failed, skipped,
    unverified and noisy cells."""
    blocks: list[Block] = []
    counts = ", ".join(f"{n} {status}" for status, n in sorted(s.counts.items()))
    blocks.append(_para(f"{sum(s.counts.values())} cells: {counts}."))
    if s.headlines:
        blocks.append(_para("For each model, the fastest framework, and the others' time relative to it with the "
                            "95% CI of the ratio (a CI containing 1 is not significant):"))
        blocks.append(Bullets(tuple(headline(w) for w in s.headlines)))
    ns = s.not_significant
    if ns:
        blocks.append(_para(f"Not significant ({len(ns)} of {sum(len(w.contenders) - 1 for w in s.workloads)} "
                            "comparisons with the fastest): the 95% CI of the ratio contains 1, so this run cannot "
                            "tell them apart:"))
        blocks.append(Bullets(tuple(
            _inline(f"{w.name}: {c.label} vs {w.fastest.label} {ratio(c.ratio)} {_interval(c.ci_low, c.ci_high)}")
            for w, c in ns)))
    else:
        blocks.append(_para("Every difference from the fastest is significant."))
    for title, items in (("Failed", s.failed), ("Skipped", s.skipped)):
        if items:
            blocks.append(_para(f"{title} ({len(items)}):"))
            blocks.append(Bullets(tuple(_inline(Code(i["key"]), f": {i['status']}: {i['reason']}") for i in items)))
    if s.unverified:
        blocks.append(_para("Not verified ", Code(UNVERIFIED_MARK),
                            f" ({len(s.unverified)}): timed, but not shown to compute the reference's function "
                            "('fail': it parts from the float64 reference; 'unverified': a part of its check "
                            "could not be made, or cannot pass by a limitation its framework declares, for the "
                            "reason given):"))
        blocks.append(Bullets(tuple(_not_verified(cells) for cells in _by_finding(s.unverified))))
    if s.noisy:
        timed = sum(len(w.contenders) for w in s.workloads)
        named: list[Span] = ["."]
        if len(s.noisy) <= _LIST_AT_MOST:
            named = [": "]
            for i, key in enumerate(s.noisy):
                named += ([", "] if i else []) + [Code(key)]
        blocks.append(_para("Noisy ", Code(NOISY_MARK),
                            f": {len(s.noisy)} of {timed} timed cells have a 95% CI wider than ±10% of the median "
                            "(from the spread of their pass and round medians); their medians and CIs stand, but "
                            "the run cannot resolve a 10% change in them: the machine was busy, the passes "
                            "disagreed, or there were too few of them. They are marked ", Code(NOISY_MARK),
                            " in every table and plot", tuple(named)))
    return blocks


def report(s: Summary, plot_files: list[tuple[str, str, str]] = ()) -> list[Block]:
    """The whole report: plot_files are (title, caption, path of the PNG relative to the report)."""
    header = Paragraph((
        _inline("Suite ", Strong(s.suite), f"{': ' + s.description if s.description else ''}."),
        _inline(f"Machine: {s.machine}."),
        _inline("Versions: " + ", ".join(f"{k} {v}" for k, v in s.versions.items()) + "."),
    ))
    body: list[Block] = [Heading(2, "Summary"), *summary_blocks(s)]
    for title, caption, path in plot_files:
        body += [Heading(2, title), Figure(title, path), _para(caption)]
    body += [Heading(2, "Fastest per workload"), _MARKS_NOTE, Table(
        ("workload", "fastest", "median", "others: time / fastest [95% CI]"),
        tuple((_inline(w.name), _inline(w.fastest.label + w.fastest.marks), _inline(fmt_time(w.fastest.median_s)),
               _inline("; ".join(f"{c.label}{c.marks} {ratio(c.ratio)} {_interval(c.ci_low, c.ci_high)}"
                                 + ("" if c.significant else " (n.s.)") for c in w.contenders[1:]) or "-"))
              for w in s.workloads))]
    if s.checks:
        body += [Heading(2, "Equivalence with the float64 reference"), _para(
            "Each model in each framework, dtype and mode, checked tensor by tensor through the adapter "
            "contract at the check's own batch (outputs, every layer's output, the loss, every gradient, the "
            "steps of 10 updates of the optimizer train_step times); the status is the cells' whole verdict, "
            "which adds the check of what each timed phase computed at its own batch and, for float32, the "
            "same check in float64 (docs/equivalence.md). The worst tensor is the contract check's closest to "
            "its tolerance; the error is normwise, ||a - b|| / ||b||."), Table(
            ("model", "framework", "device", "dtype", "mode", "status", "tensors", "worst tensor", "normwise error",
             "tolerance", "first divergence"),
            tuple(tuple(_inline(x) for x in (
                c["model"], c["framework"], c["device"], c["dtype"], c["mode"],
                c["status"] if c["status"] == "pass" else Strong(c["status"]), f"{c['tensors']}", c["worst_tensor"],
                num(c["worst_normwise"], ".1e"), num(c["worst_tolerance"], ".0e"), c["first_divergence"] or "-"))
                  for c in s.checks))]
    header_row, rows = _cells_table(s)
    body += [Heading(2, "Every cell"), _MARKS_NOTE, Table(header_row, rows)]
    body += [Heading(2, "Machine"), Bullets(tuple(_inline(f"{k}: {v}") for k, v in _environment_items(s)))]
    contents = Bullets(tuple(_inline(Link(b.text, f"#{b.anchor}")) for b in body if isinstance(b, Heading)))
    return [Heading(1, f"fwbench report: {s.run_id}"), header, _para("Contents:"), contents, *body]


def _cells_table(s: Summary) -> tuple[tuple[str, ...], tuple[tuple[Inline, ...], ...]]:
    header = ("model", "device", "dtype", "batch", "phase", "threads", "framework", "status", "median",
              "median 95% CI", "time / fastest [95% CI]", "samples/s", "GFLOP/s", "% of peak", "n", "CV", "marks")
    rows = []
    for w in s.workloads:
        where = [w.model, w.device, w.dtype, str(w.batch_size), w.phase, str(w.threads)]
        for c in w.contenders:
            low, high = c.median_ci_s
            versus = "1 (fastest)" if c is w.fastest else f"{ratio(c.ratio)} {_interval(c.ci_low, c.ci_high)}"
            rows.append([*where, c.label, "ok", fmt_time(c.median_s), f"{fmt_time(low)} – {fmt_time(high)}", versus,
                         num(c.samples_per_s, ",.0f"), num(c.gflops_per_s, ".2f"), num(100 * c.peak_share, ".1f"),
                         str(c.n), num(100 * c.cv, ".1f") + "%", c.marks])
    for x in s.failed + s.skipped:
        rows.append([x["model"], x["device"], x["dtype"], str(x["batch_size"]), x["phase"], str(x["threads"]),
                     x["label"], x["status"], "-", "-", "-", "-", "-", "-", "-", "-", ""])
    return header, tuple(tuple(_inline(v) for v in row) for row in rows)


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
