"""`bench compare`'s verdicts as a person reads them: a table for the terminal, a Markdown section
for a pull request or a CI job summary (harness.compare decides; this only presents)."""

from __future__ import annotations

from ..compare import CellChange, Comparison
from ..fmt import fmt_time

__all__ = ["text", "markdown"]


def _verdict_line(c: Comparison) -> str:
    near = sum(1 for x in c.changes if x.verdict == "unchanged" and "not significant" in x.why)
    how = f"min effect {c.min_effect:.0%}, alpha {c.alpha:g}" + (", Holm-corrected" if c.correction == "holm" else "")
    parts = [f"{len(c.changes)} cells compared ({how})",
             f"{len(c.regressions)} regression{'s' * (len(c.regressions) != 1)}",
             f"{len(c.improvements)} improvement{'s' * (len(c.improvements) != 1)}",
             f"{len(c.broken)} broken",
             f"{len(c.changes) - len(c.regressions) - len(c.improvements)} unchanged"
             + (f" ({near} moved by the minimum effect but not significantly)" if near else "")]
    return ": ".join(parts[:1]) + ": " + ", ".join(parts[1:])


def _rows(changes: list[CellChange], relative: bool = False) -> list[list[str]]:
    value = (lambda v: f"{v:.3f}x") if relative else fmt_time
    return [[x.key, value(x.median_a_s), value(x.median_b_s), f"{x.ratio:.3f}",
             f"[{x.ci_low:.3f}, {x.ci_high:.3f}]", f"{x.p_value:.2g}", f"{x.p_adjusted:.2g}",
             "noisy" if x.noisy else "", x.verdict]
            for x in changes]


_HEADER = ["cell", "A median", "B median", "B/A", "95% CI", "p", "p adj.", "", "verdict"]


def _header_lines(c: Comparison) -> list[str]:
    lines = [f"A (baseline): {c.run_a}", f"B:            {c.run_b}"]
    if c.relative_to:
        lines.append(f"times relative to {c.relative_to}'s in the same round (A and B medians are those ratios)")
    if c.differences:
        lines.append("compared with --force although these differ:")
        lines += [f"  {f}: {a!r} in A, {b!r} in B" for f, a, b in c.differences]
    for f, a, b in c.notes:
        lines.append(f"{f}: {a} in A, {b} in B")
    return lines


def text(c: Comparison, show_all: bool = False) -> str:
    """The comparison as `bench compare` prints it: the verdict, then the regressions, improvements
    and broken cells (every cell with show_all)."""
    lines = _header_lines(c) + ["", _verdict_line(c)]
    sections = [("Regressions (B slower)", c.regressions), ("Improvements (B faster)", c.improvements)]
    if show_all:
        sections.append(("Every cell", c.changes))
    for title, changes in sections:
        if changes:
            rows = _rows(changes, bool(c.relative_to))
            widths = [max(len(r[i]) for r in [_HEADER, *rows]) for i in range(len(_HEADER))]
            lines += ["", f"{title}:",
                      "  " + "  ".join(h.ljust(w) for h, w in zip(_HEADER, widths, strict=True)).rstrip()]
            lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if c.broken:
        lines += ["", "Broken (worked in A, not in B):"]
        lines += [f"  {b.key}: {b.status_b}: {b.reason}" for b in c.broken]
    if c.only_a or c.only_b:
        lines += ["", f"Not compared: {len(c.only_a)} cells finished only in A, {len(c.only_b)} only in B"]
    return "\n".join(lines)


def markdown(c: Comparison, show_all: bool = False) -> str:
    """The comparison as a Markdown section, for a pull request or a CI job summary."""
    lines = ["## fwbench compare", ""]
    lines += [f"- {line.strip()}" for line in _header_lines(c)]
    lines += ["", f"**{_verdict_line(c)}**", ""]
    sections = [("Regressions (B slower)", c.regressions), ("Improvements (B faster)", c.improvements)]
    if show_all:
        sections.append(("Every cell", c.changes))
    for title, changes in sections:
        if changes:
            lines += [f"### {title}", "", "| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
            lines += ["| " + " | ".join([f"`{r[0]}`", *r[1:]]) + " |" for r in _rows(changes, bool(c.relative_to))]
            lines.append("")
    if c.broken:
        lines += ["### Broken (worked in A, not in B)", ""]
        lines += [f"- `{b.key}`: {b.status_b}: {b.reason}" for b in c.broken]
        lines.append("")
    return "\n".join(lines)
