"""One command reads each file of a run once, and a bug is not dressed up as bad input."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import report, results, store
from harness.cli import cli
from tests.harness.synthetic import make_run


@pytest.fixture
def reads(monkeypatch):
    """Counts of store.read_json calls per file (resolved path), the one way a run's files are read."""
    counts: collections.Counter = collections.Counter()
    real = store.read_json

    def counted(path):
        counts[Path(path).resolve()] += 1
        return real(path)

    monkeypatch.setattr(store, "read_json", counted)
    return counts


def _files(run_dir: Path) -> set[Path]:
    cells = (p.resolve() for p in (run_dir / results.CELLS_DIR).glob("*.json"))
    return {(run_dir / results.RUN_FILE).resolve(), *cells}


def test_bench_report_reads_every_file_of_the_run_once(tmp_path, reads):
    run_dir = make_run(tmp_path / "run")
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert set(reads) == _files(run_dir) and len(reads) > 20
    assert set(reads.values()) == {1}, {p.name: n for p, n in reads.items() if n != 1}


def test_writing_the_report_with_its_plots_reads_nothing_more(tmp_path, reads):
    run_dir = make_run(tmp_path / "run")
    run = results.read(run_dir)
    report.write(run, plots=True, processes=1)
    assert set(reads.values()) == {1} and set(reads) == _files(run_dir)
    assert (run_dir / report.PLOTS_DIR / "relative.png").is_file()


def test_bench_compare_reads_each_run_once(tmp_path, reads):
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b", seed=1)
    result = CliRunner().invoke(cli, ["compare", str(a), str(b), "--format", "json"])
    assert result.exit_code in (0, 1), result.output
    assert set(reads) == _files(a) | _files(b)
    assert set(reads.values()) == {1}


def test_bench_run_reads_its_run_json_once_and_no_cell(tmp_path, reads):
    suite = tmp_path / "tiny.toml"
    suite.write_text('models = ["linear_regression"]\nframeworks = ["reference"]\ndevices = ["cpu"]\n'
                     'dtypes = ["float32"]\nmodes = ["eager"]\nbatch_sizes = [1, 4]\nphases = ["forward"]\n'
                     'threads = [1]\n[timing]\npasses = 1\nsamples = 2\nrounds = 2\nmin_sample_s = 0.001\n')
    result = CliRunner().invoke(cli, ["run", str(suite), "--results-dir", str(tmp_path / "results"), "--no-report"])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "results").iterdir()
    assert len(list((run_dir / results.CELLS_DIR).glob("*.json"))) == 2  # both cells were written...
    assert dict(reads) == {(run_dir / results.RUN_FILE).resolve(): 1}  # ...and never read back


def test_a_programming_error_is_a_traceback_not_a_usage_error(tmp_path, monkeypatch):
    run_dir = make_run(tmp_path / "run")

    def planted(run):
        raise KeyError("planted bug")  # once turned into 'Usage: ... Error: planted bug', exit 2

    monkeypatch.setattr(report, "summarize", planted)
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--no-plots"])
    assert result.exit_code == 1
    assert isinstance(result.exception, KeyError) and "Usage:" not in result.output


def test_bad_input_found_deep_in_the_library_is_still_exit_2(tmp_path):
    (tmp_path / "notarun").mkdir()
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "notarun")], prog_name="bench")
    assert result.exit_code == 2
    assert "not an fwbench run folder" in result.output and "Usage: bench report" in result.output
