"""A run as a person reads it: the summary first, then the plots, the tables and the machine. No measuring.

    summary.py    Run -> Summary: workloads, contenders fastest first with ratio CIs, headlines, marks
    document.py   Summary -> blocks (headings, paragraphs, lists, tables, figures)
    md.py         blocks -> report.md, and plain lines for a terminal
    page.py       blocks -> report.html, self-contained
    text.py       what the command line prints: bench check's and bench run's tables, bench list
    comparison.py bench compare's verdicts as text and Markdown
    write.py      the files of a run's report, the figures (harness.plots) drawn in worker processes
"""

from ..fmt import contender_label, fmt_time
from .document import anchor, headline
from .md import markdown
from .page import html_page
from .summary import Contender, Summary, Workload, summarize
from .write import PLOTS_DIR, REPORT_HTML, REPORT_MD, write

__all__ = ["Contender", "Workload", "Summary", "summarize", "headline", "markdown", "html_page", "anchor",
           "contender_label", "fmt_time", "write", "REPORT_HTML", "REPORT_MD", "PLOTS_DIR"]
