"""`bench compare`'s verdicts as a person reads them: a table for the terminal, a Markdown section
for a pull request or a CI job summary (harness.compare decides; this only presents)."""

from __future__ import annotations

from ..compare import CellChange, Comparison
from ..fmt import fmt_time

__all__ = ["text", "markdown"]


def _verdict_line(c: Comparison) -> str:
    n = c.counts()
    how = f"threshold {c.min_effect:.0%}" + (", raised to the noise floors of the calibration" if c.noise else "")
    return (f"{len(c.changes)} cells compared ({how}): {n['slower']} slower, {n['faster']} faster, "
            f"{n['same']} same, {n['unknown']} unknown, {n['broken']} broken")


def _pct(v: float) -> str:
    return f"{v - 1:+.1%}"


def _rows(changes: list[CellChange], relative: bool = False) -> list[list[str]]:
    value = (lambda v: f"{v:.3f}x") if relative else fmt_time
    return [[x.key, value(x.median_a_s), value(x.median_b_s), _pct(x.ratio),
             f"[{_pct(x.ci_low)}, {_pct(x.ci_high)}]", f"±{x.threshold:.0%}", f"±{x.detectable:.0%}",
             f"{x.n_a}+{x.n_b} {x.unit}", ("noisy " if x.noisy else "") + ("loops differ" if x.loops_differ else ""),
             x.verdict]
            for x in changes]


_HEADER = ["cell", "A median", "B median", "B/A", "95% CI", "threshold", "detectable", "units", "", "verdict"]


def _sections(c: Comparison, show_all: bool) -> list[tuple[str, list[CellChange]]]:
    sections = [("Slower in B", c.slower), ("Faster in B", c.faster)]
    if show_all:
        sections.append(("Every cell", c.changes))
    return sections


def _footer(c: Comparison) -> list[str]:
    lines = []
    if c.unknown:
        widest = c.unknown[0]
        lines.append(f"Unknown: {len(c.unknown)} cells whose CI is too wide to tell against their threshold "
                     f"(widest: {widest.key}, could detect ±{widest.detectable:.0%}); more passes narrow it "
                     "(--all lists them)")
    differ = sum(x.loops_differ for x in c.changes)
    if differ:
        lines.append(f"{differ} cells timed different iterations per sample in A and B: "
                     "`bench run --loops-from A` pins them")
    if not c.noise and not c.paired:
        lines.append("No `bench noise` calibration of this machine: the threshold is the minimum effect alone")
    return lines


def _header_lines(c: Comparison) -> list[str]:
    lines = [f"A (baseline): {c.run_a}", f"B:            {c.run_b}"]
    if c.relative_to:
        lines.append(f"times relative to {c.relative_to}'s in the same round (A and B medians are those ratios)")
    if c.noise:
        of = f" (measured relative to {c.relative_to})" if c.noise_relative else ""
        if c.relative_to and not c.noise_relative:
            of = f" (of absolute times: it has no floors relative to {c.relative_to}; calibrate again to get them)"
        lines.append(f"noise floors: {c.noise}{of}")
    if c.paired:
        lines.append("A and B measured in the same rounds (bench ab): each ratio paired by round")
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
    for title, changes in _sections(c, show_all):
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
    footer = _footer(c)
    return "\n".join(lines + ([""] + footer if footer else []))


def markdown(c: Comparison, show_all: bool = False) -> str:
    """The comparison as a Markdown section, for a pull request or a CI job summary."""
    lines = ["## fwbench compare", ""]
    lines += [f"- {line.strip()}" for line in _header_lines(c)]
    lines += ["", f"**{_verdict_line(c)}**", ""]
    for title, changes in _sections(c, show_all):
        if changes:
            lines += [f"### {title}", "", "| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
            lines += ["| " + " | ".join([f"`{r[0]}`", *r[1:]]) + " |" for r in _rows(changes, bool(c.relative_to))]
            lines.append("")
    if c.broken:
        lines += ["### Broken (worked in A, not in B)", ""]
        lines += [f"- `{b.key}`: {b.status_b}: {b.reason}" for b in c.broken]
        lines.append("")
    lines += [f"- {line}" for line in _footer(c)]
    return "\n".join(lines)
