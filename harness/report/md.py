"""report.md, and the summary as plain lines for a terminal: the document of document.py as text."""

from __future__ import annotations

from .document import Block, Bullets, Code, Figure, Heading, Inline, Link, Paragraph, Strong, Table, report
from .summary import Summary

__all__ = ["markdown", "render", "plain_lines"]


def markdown(summary: Summary, plot_files: list[tuple[str, str, str]] = ()) -> str:
    """report.md: plot_files are (title, caption, relative path of the PNG)."""
    return render(report(summary, plot_files))


def render(blocks: list[Block], plain: bool = False) -> str:
    """Markdown of blocks, a blank line between each; with plain=True no markup (for a terminal)."""
    return "\n\n".join(_block(b, plain) for b in blocks) + "\n"


def plain_lines(blocks: list[Block]) -> list[str]:
    """The blocks as lines of plain text, a blank line after each block: what `bench report` prints."""
    lines: list[str] = []
    for b in blocks:
        lines += _block(b, plain=True).split("\n") + [""]
    return lines


def _span(span, plain: bool, in_table: bool = False) -> str:
    if isinstance(span, str):
        text = span
    else:
        text = span.text
    if in_table:
        text = text.replace("|", "\\|").replace("\n", " ")
    if plain or isinstance(span, str):
        return text
    if isinstance(span, Code):
        return f"`{text}`"
    if isinstance(span, Strong):
        return f"**{text}**"
    if isinstance(span, Link):
        return f"[{text}]({span.href})"
    raise TypeError(f"not a span: {span!r}")


def _inline(spans: Inline, plain: bool, in_table: bool = False) -> str:
    return "".join(_span(s, plain, in_table) for s in spans)


def _block(b: Block, plain: bool) -> str:
    if isinstance(b, Heading):
        return f"{'#' * b.level} {b.text}"
    if isinstance(b, Paragraph):
        # NOTE: two trailing spaces make a Markdown line break within the paragraph
        return ("\n" if plain else "  \n").join(_inline(line, plain) for line in b.lines)
    if isinstance(b, Bullets):
        return "\n".join(f"- {_inline(item, plain)}" for item in b.items)
    if isinstance(b, Table):
        lines = ["| " + " | ".join(b.header) + " |", "|" + "---|" * len(b.header)]
        lines += ["| " + " | ".join(_inline(cell, plain, in_table=True) for cell in row) + " |" for row in b.rows]
        return "\n".join(lines)
    if isinstance(b, Figure):
        return f"![{b.alt}]({b.path})"
    raise TypeError(f"not a block: {b!r}")
