"""What `bench run` and `bench selftest` show a person: the progress line, and the self-test's report."""

import io

from click.testing import CliRunner

from harness import selftest
from harness.cells import Cell, CellRecord
from harness.cli import _Progress, cli

CELL = Cell("mlp", "torch", "cpu", "float32", "eager", 8, "forward", 2)
OK = CellRecord(CELL, "ok", samples_s=(0.002, 0.001, 0.003), iters_per_sample=1, verified=True)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_progress_is_one_rewritten_line_with_counts_and_time_left():
    out = _Terminal()
    progress = _Progress(file=out)
    progress("start", total=4, done=0, todo=4, passes=2, work=8)  # the bar counts cell-passes
    progress("pass", index=0, passes=2, cells=4)
    progress("cell", cell=CELL)
    progress("step", cell=CELL)
    text = out.getvalue()
    assert "\r" in text and "\n" not in text  # rewritten in place, never scrolled
    assert "1/8" in text and CELL.key in text and "cells x 2 passes" in text
    progress("finish", summary=None)
    assert out.getvalue().endswith("\n")  # the bar's last state stays on screen, the next line below it


def test_plain_progress_is_one_line_per_finished_cell():
    out = io.StringIO()
    progress = _Progress(file=out)
    progress("start", total=2, done=1, todo=1, passes=2, work=2)
    progress("pass", index=1, passes=2, cells=1)
    progress("cell", cell=CELL)
    progress("step", cell=CELL)
    progress("done", cell=CELL, record=OK, done=2, total=2, elapsed=1.0)
    progress("done", cell=CELL, record=CellRecord(CELL, "timeout", "no answer within 60 s"), done=2, total=2,
             elapsed=2.0)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("resuming: 1 of 2")
    assert lines[1] == "pass 2 of 2: 1 cells"
    assert lines[2] == f"[2/2] {CELL.key}: median 2.000 ms over 3 samples"
    assert lines[3].endswith("timeout: no answer within 60 s")
    assert "\r" not in "".join(lines)


def test_selftest_reports_every_check_with_its_numbers():
    """Structure only: whether the bounds hold depends on how busy the machine is (bench selftest)."""
    checks = selftest.run_all(with_torch=False)
    assert [c["name"] for c in checks] == ["known duration", "slow first call"]
    for check in checks:
        assert check["passed"] in (True, False) and isinstance(check["value"], float)
        assert "bound 2%" in check["detail"]


def test_bench_run_without_a_suite_lists_the_suites():
    result = CliRunner().invoke(cli, ["run"])
    assert result.exit_code == 2
    assert "quick" in result.output and "smoke" in result.output
