"""report.html: the document of document.py as one self-contained page (images embedded as data:
URIs, style inline, no script, nothing fetched)."""

from __future__ import annotations

import base64
import html

from .document import Block, Bullets, Code, Figure, Heading, Inline, Link, Paragraph, Strong, Table, report
from .summary import Summary

__all__ = ["html_page", "render"]

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


def html_page(summary: Summary, plot_files: list[tuple[str, str, str]], images: dict[str, bytes]) -> str:
    """The report page: plot_files as for markdown(); images are the PNG bytes keyed by those paths."""
    return render(report(summary, plot_files), images)


def render(blocks: list[Block], images: dict[str, bytes]) -> str:
    """A self-contained HTML page of blocks; every Figure's path must be a key of images."""
    title = blocks[0].text if blocks and isinstance(blocks[0], Heading) else "fwbench report"
    body = "\n".join(_block(b, images) for b in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _span(span) -> str:
    if isinstance(span, str):
        return html.escape(span, quote=False)
    text = html.escape(span.text, quote=False)
    if isinstance(span, Code):
        return f"<code>{text}</code>"
    if isinstance(span, Strong):
        return f"<strong>{text}</strong>"
    if isinstance(span, Link):
        return f'<a href="{html.escape(span.href)}">{text}</a>'
    raise TypeError(f"not a span: {span!r}")


def _inline(spans: Inline) -> str:
    return "".join(_span(s) for s in spans)


def _block(b: Block, images: dict[str, bytes]) -> str:
    if isinstance(b, Heading):
        return f'<h{b.level} id="{html.escape(b.anchor)}">{html.escape(b.text, quote=False)}</h{b.level}>'
    if isinstance(b, Paragraph):
        return "<p>" + "<br>\n".join(_inline(line) for line in b.lines) + "</p>"
    if isinstance(b, Bullets):
        return "<ul>\n" + "\n".join(f"<li>{_inline(item)}</li>" for item in b.items) + "\n</ul>"
    if isinstance(b, Table):
        head = "".join(f"<th>{html.escape(h, quote=False)}</th>" for h in b.header)
        rows = "\n".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in b.rows)
        return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>"
    if isinstance(b, Figure):
        if b.path not in images:
            raise ValueError(f"the report names image {b.path!r}, which was not rendered")
        data = base64.b64encode(images[b.path]).decode("ascii")
        return f'<figure><img alt="{html.escape(b.alt)}" src="data:image/png;base64,{data}"></figure>'
    raise TypeError(f"not a block: {b!r}")
