"""`bench report`: the HTML is self-contained and every image in it decodes; the summary says what the table says.

Most tests use the synthetic run of tests/harness/synthetic.py, whose medians are known. The last
test reads a real run when FWBENCH_REPORT_RUN names one (CI sets it to the `bench run quick` it
has just made): from a run on a fresh install, every plot is written and embedded.
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from harness import levels, report, results
from harness.cli import cli
from harness.fmt import contender_label
from tests.harness import synthetic


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    path = synthetic.make_run(tmp_path_factory.mktemp("report") / "20261201-120000-synthetic")
    report.write(path)
    return path


class _Page(HTMLParser):
    """The tags of a page that load or run something, and its images' sources."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        if tag == "script":
            self.scripts += 1
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(f"<{tag} {name}={value!r}>")


def _page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _decode(src: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:60]
    image = Image.open(io.BytesIO(base64.b64decode(src[len(prefix):], validate=True)))
    image.load()  # decodes every pixel: a truncated or corrupt PNG raises here
    return image


def test_report_files_are_written(run):
    assert (run / report.REPORT_HTML).is_file() and (run / report.REPORT_MD).is_file()
    pngs = sorted(p.stem for p in (run / report.PLOTS_DIR).glob("*.png"))
    svgs = sorted(p.stem for p in (run / report.PLOTS_DIR).glob("*.svg"))
    assert pngs == svgs and pngs
    for name in ("phases_mlp", "phases_lenet5", "relative", "efficiency", "equivalence_float32"):
        assert name in pngs, pngs
    assert any(name.startswith("scaling_") for name in pngs)


def test_every_image_in_the_html_is_embedded_and_decodes(run):
    page = _page(run / report.REPORT_HTML)
    pngs = sorted((run / report.PLOTS_DIR).glob("*.png"))
    assert len(page.images) == len(pngs)
    for src in page.images:
        image = _decode(src)
        assert image.format == "PNG" and image.width > 200 and image.height > 100
    # the embedded images are the plot files, byte for byte
    embedded = {base64.b64decode(src.split(",", 1)[1]) for src in page.images}
    assert embedded == {p.read_bytes() for p in pngs}


def test_the_html_loads_and_runs_nothing(run):
    page = _page(run / report.REPORT_HTML)
    assert page.external == [] and page.scripts == 0
    text = (run / report.REPORT_HTML).read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text


def test_the_svgs_are_svg(run):
    for path in (run / report.PLOTS_DIR).glob("*.svg"):
        head = path.read_text(encoding="utf-8")[:400]
        assert "<svg" in head, path


# --------------------------------------------------------------------------------------------
# the summary against the table

_HEADLINE = re.compile(r"^- (?P<model>\w+) (?P<phase>\w+), batch (?P<batch>\d+), (?P<device>\S+) (?P<dtype>\w+), "
                       r"(?P<threads>\d+) threads: \*\*(?P<best>[\w -]+)\*\*(?P<marks>[~!]*) fastest at "
                       r"(?P<time>[\d.]+ [µmn]?s)(?:; (?P<others>.*))?$")
_OTHER = re.compile(r"(?P<label>[\w -]+?)(?P<marks>[~!]*) (?P<ratio>[\d.]+)x \[(?P<lo>[\d.]+), (?P<hi>[\d.]+)\]"
                    r"(?P<ns>, not significant)?$")


def _headlines(md: str) -> list[dict]:
    section = md[md.index("## Summary"):md.index("\n## ", md.index("## Summary") + 1)]
    found = [m.groupdict() for line in section.splitlines() if (m := _HEADLINE.match(line))]
    assert found, section
    return found


def test_the_summary_names_the_fastest_and_the_ratios_of_the_results_table(run):
    headlines = _check_summary_against_table(run)
    assert {h["model"] for h in headlines} == set(synthetic.MODELS)


def _check_summary_against_table(run: Path) -> list[dict]:
    """Every headline of report.md against results.load: the fastest framework, its median, each
    other framework's ratio, its CI from the stored samples, and its marks. Returns the headlines."""
    md = (run / report.REPORT_MD).read_text(encoding="utf-8")
    df = results.load(run, raw=True)
    ok = df[df["status"] == "ok"]
    headlines = _headlines(md)
    for h in headlines:
        rows = ok[(ok["model"] == h["model"]) & (ok["phase"] == h["phase"]) & (ok["batch_size"] == int(h["batch"]))
                  & (ok["device"] == h["device"]) & (ok["dtype"] == h["dtype"])
                  & (ok["threads"] == int(h["threads"]))]
        # the CI: paired by round, the choice of the fastest redone in every resample (harness.levels),
        # carried over to the ratio of the medians that the table shows
        ratios = levels.ratios_to_fastest({r.key: (r.samples_s, r.sample_passes, r.sample_rounds)
                                           for r in rows.itertuples()})
        order = sorted(rows.itertuples(), key=lambda r: r.median_s)
        best = order[0]
        assert h["best"] == contender_label(best.framework, best.mode)
        assert h["time"] == report.fmt_time(best.median_s)
        others = h["others"].split("; ")
        assert len(others) == len(rows) - 1
        for text, row in zip(others, order[1:], strict=True):
            m = _OTHER.match(text)
            assert m, text
            r = ratios[row.key]
            ratio = row.median_s / best.median_s
            lo = 1.0 if r.ci_low <= 1 else max(1.0, r.ci_low * ratio / r.ratio)  # a CI at its bound stays there
            hi = max(ratio, r.ci_high * ratio / r.ratio)
            assert m["label"] == contender_label(row.framework, row.mode)
            assert float(m["ratio"]) == pytest.approx(ratio, abs=0.005)
            assert (float(m["lo"]), float(m["hi"])) == (round(lo, 2), round(hi, 2))
            assert bool(m["ns"]) == (lo <= 1)
            assert ("!" in m["marks"]) == (results.flag(row.verified) is False)
            assert ("~" in m["marks"]) == bool(results.flag(row.noisy))
    return headlines


def test_the_headline_is_the_largest_batch_and_the_training_step(run):
    # the synthetic run's largest batch is 64, and it has a train_step phase
    md = report.markdown(report.summarize(run))
    assert {(h["batch"], h["phase"]) for h in _headlines(md)} == {("64", "train_step")}


def test_the_tie_is_not_significant_and_the_clear_differences_are(run):
    summary = report.summarize(run)
    ns = {(w.model, w.phase, w.batch_size, c.label) for w, c in summary.not_significant}
    # lenet5 in torch and tensorflow cost the same (synthetic._SPEED); the reference is 30% slower
    lenet_ties = {(m, p, b, lab) for m, p, b, lab in ns if m == "lenet5" and lab in ("torch eager", "tensorflow eager")}
    assert len(lenet_ties) >= 3
    assert not any(lab == "reference" for m, p, b, lab in ns if m == "lenet5")
    assert not any(m == "mlp" for m, p, b, lab in ns)


def test_the_every_cell_table_has_each_cell_with_its_median(run):
    md = (run / report.REPORT_MD).read_text(encoding="utf-8")
    table = md[md.index("## Every cell"):md.index("## Machine")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| model")]
    df = results.load(run)
    assert len(rows) == len(df)
    by_cell = {(r[0], r[6], int(r[3]), r[4]): r for r in rows}
    for row in df.itertuples():
        r = by_cell[(row.model, contender_label(row.framework, row.mode), row.batch_size, row.phase)]
        assert r[7] == row.status
        if row.status == "ok":
            assert r[8] == report.fmt_time(row.median_s)
            assert r[11] == f"{row.samples_per_s:,.0f}"
            assert ("~" in r[16]) == bool(row.noisy) and ("!" in r[16]) == (results.flag(row.verified) is False)


def test_failed_skipped_noisy_and_unverified_cells_are_named(run):
    md = (run / report.REPORT_MD).read_text(encoding="utf-8")
    summary_text = md[md.index("## Summary"):md.index("\n## ", md.index("## Summary") + 1)]
    assert f"`{synthetic.key(*synthetic.CRASHED)}`: crashed" in summary_text
    assert f"`{synthetic.key(*synthetic.SKIPPED)}`: skipped" in summary_text
    assert synthetic.key(*synthetic.NOISY) in summary_text
    assert "first divergence fc1 (forward)" in summary_text
    assert "Synthetic CPU 1000" in md and "torch 2.13.0" in md


def test_the_html_says_what_the_markdown_says(run):
    md = (run / report.REPORT_MD).read_text(encoding="utf-8")
    page = (run / report.REPORT_HTML).read_text(encoding="utf-8")
    for h in _headlines(md):
        assert f"<strong>{h['best']}</strong>" in page
        assert h["time"] in page
    assert page.count("<tr>") >= len(results.load(run))


def test_fmt_time():
    assert [report.fmt_time(s) for s in (35e-3, 227e-6, 1.2, 0.9999e-3, 812e-9, 12.345, math.nan)] == \
        ["35.0 ms", "227 µs", "1.20 s", "1.00 ms", "812 ns", "12.3 s", "-"]


# --------------------------------------------------------------------------------------------
# the command line


def test_bench_report_prints_the_summary_and_writes_the_files(tmp_path):
    path = synthetic.make_run(tmp_path / "r")
    result = CliRunner().invoke(cli, ["report", str(path)])
    assert result.exit_code == 0, result.output
    assert "fastest at" in result.output and "report.html" in result.output
    assert (path / report.REPORT_HTML).is_file() and list((path / report.PLOTS_DIR).glob("*.png"))


def test_bench_report_without_plots(tmp_path):
    path = synthetic.make_run(tmp_path / "r")
    result = CliRunner().invoke(cli, ["report", str(path), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert (path / report.REPORT_HTML).is_file() and not (path / report.PLOTS_DIR).exists()
    assert _page(path / report.REPORT_HTML).images == []


def test_bench_report_of_a_folder_that_is_not_a_run_exits_2(tmp_path):
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not an fwbench run folder" in result.output


def test_an_empty_run_has_a_report(tmp_path):
    results.write_run(tmp_path / "r", {"suite": {"name": "empty"}, "environment": {}})
    paths = report.write(tmp_path / "r")
    assert {p.name for p in paths} == {report.REPORT_MD, report.REPORT_HTML}
    assert "0 cells" in (tmp_path / "r" / report.REPORT_MD).read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------
# a real run


@pytest.mark.skipif(not os.environ.get("FWBENCH_REPORT_RUN"), reason="FWBENCH_REPORT_RUN names no run (CI sets it)")
def test_a_real_run_has_every_plot_embedded_and_a_summary_that_matches_its_table():
    path = Path(os.environ["FWBENCH_REPORT_RUN"])
    df = results.load(path)
    ok = df[df["status"] == "ok"]
    expected = {f"phases_{m}" for m in ok["model"].unique()} | {"relative", "efficiency"}
    expected |= {f"scaling_{p}" for p, g in ok.groupby("phase") if g["batch_size"].nunique() > 1}
    expected |= {f"equivalence_{d}" for d in results.load_checks(path)["dtype"].unique()}
    if ok["threads"].nunique() > 1:
        expected.add("threads")
    written = {p.stem for p in (path / report.PLOTS_DIR).glob("*.png")}
    assert expected <= written, expected - written
    page = _page(path / report.REPORT_HTML)
    assert len(page.images) == len(written) and page.external == [] and page.scripts == 0
    for src in page.images:
        _decode(src)
    assert np.isfinite(ok["median_s"]).all()
    assert {h["model"] for h in _check_summary_against_table(path)} == set(ok["model"])


# --------------------------------------------------------------------------------------------
# bench run writes the report


def _tiny_suite(path: Path) -> Path:
    path.write_text(
        'name = "tiny"\nmodels = ["linear_regression"]\nframeworks = ["reference"]\ndevices = ["cpu"]\n'
        'dtypes = ["float32"]\nmodes = ["eager"]\nbatch_sizes = [2, 4]\nphases = ["forward"]\nthreads = [1]\n'
        "verify = true\n[timing]\npasses = 2\nsamples = 2\nrounds = 2\nwarmup = 1\nmin_sample_s = 0.001\n"
        "cell_timeout_s = 60\n")
    return path


def _only_run(results_dir: Path) -> Path:
    (run_dir,) = [p for p in results_dir.iterdir() if p.is_dir()]
    return run_dir


def test_bench_run_writes_the_report_unless_told_not_to(tmp_path):
    suite = _tiny_suite(tmp_path / "tiny.toml")
    result = CliRunner().invoke(cli, ["run", str(suite), "--results-dir", str(tmp_path / "with")])
    assert result.exit_code == 0, result.output
    run_dir = _only_run(tmp_path / "with")
    assert f"report: {run_dir / report.REPORT_HTML}" in result.output
    assert (run_dir / report.REPORT_MD).is_file() and (run_dir / report.PLOTS_DIR / "relative.png").is_file()
    result = CliRunner().invoke(cli, ["run", str(suite), "--results-dir", str(tmp_path / "without"), "--no-report"])
    assert result.exit_code == 0, result.output
    run_dir = _only_run(tmp_path / "without")
    assert not (run_dir / report.REPORT_HTML).exists() and not (run_dir / report.PLOTS_DIR).exists()
    assert "report:" not in result.output


def test_a_report_that_fails_costs_the_run_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a planted plotting bug")

    monkeypatch.setattr(report, "write", broken)
    suite = _tiny_suite(tmp_path / "tiny.toml")
    result = CliRunner().invoke(cli, ["run", str(suite), "--results-dir", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "the report could not be written: RuntimeError: a planted plotting bug" in result.output
    assert "bench report" in result.output  # how to retry
    assert len(results.finished_cells(_only_run(tmp_path / "r"))) == 2


def test_the_contents_link_to_every_section(run):
    page = (run / report.REPORT_HTML).read_text(encoding="utf-8")
    ids = set(re.findall(r'<h2 id="([^"]+)"', page))
    links = re.findall(r'<a href="#([^"]+)">', page)
    assert set(links) == ids and len(ids) >= 10  # the summary, the tables, the machine and each plot
    assert report.anchor("mnist_cnn: time per phase, per framework") == "mnist_cnn-time-per-phase-per-framework"


def test_drawing_in_worker_processes_writes_the_same_report(tmp_path):
    # the same run (the footer of each plot names its folder) drawn here and in three worker processes
    here = synthetic.make_run(tmp_path / "a" / "run")
    report.write(here, processes=1)
    there = synthetic.make_run(tmp_path / "b" / "run")
    report.write(there, processes=3)
    files = sorted(p.relative_to(here).as_posix() for p in here.rglob("*") if p.suffix in (".png", ".svg"))
    files += [report.REPORT_MD, report.REPORT_HTML]
    assert len(files) > 10
    assert files[:-2] == sorted(p.relative_to(there).as_posix() for p in there.rglob("*")
                                if p.suffix in (".png", ".svg"))
    for name in files:
        a, b = (here / name).read_bytes(), (there / name).read_bytes()
        if name.endswith(".svg"):
            (words_a, numbers_a), (words_b, numbers_b) = _svg_drawing(a), _svg_drawing(b)
            assert words_a == words_b, name
            np.testing.assert_allclose(numbers_a, numbers_b, rtol=0, atol=1e-5, err_msg=name)
        else:
            assert a == b, name  # the PNGs, which the HTML embeds: the very same bytes


def _svg_drawing(svg: bytes) -> tuple[bytes, np.ndarray]:
    """What an SVG draws, as (its text without numbers and font glyphs, its numbers).

    Two processes drawing one figure agree on every PNG byte but not quite on the SVG: matplotlib
    numbers the font glyphs in the order the process first used them, a text extent measured by a
    font object in another state moves a coordinate in its sixth decimal, and the ids of clip paths
    and markers are hashes of such coordinates."""
    text = re.sub(rb"<defs>.*?</defs>", b"", svg, flags=re.DOTALL)  # the glyphs, placed at first use
    text = re.sub(rb'(id="|url\(#|href="#)[^")]+', rb"\1ID", text)  # every id and every reference to one
    numbers = np.array([float(x) for x in re.findall(rb"-?\d+\.\d+", text)])
    return re.sub(rb"-?\d+\.\d+", b"#", text), numbers


def test_workers_that_cannot_start_leave_the_drawing_to_this_process(tmp_path, monkeypatch):
    import concurrent.futures

    class Broken:
        def __init__(self, *args, **kwargs):
            raise concurrent.futures.process.BrokenProcessPool("a worker died while starting")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Broken)
    path = synthetic.make_run(tmp_path / "r")
    report.write(path, processes=2)
    assert len(_page(path / report.REPORT_HTML).images) == len(list((path / report.PLOTS_DIR).glob("*.png"))) > 5


def test_bench_report_on_the_committed_example_writes_its_report_md_again(tmp_path):
    """The example run in results/examples is complete (run.json and every cell): reading it and
    writing its report again gives the committed report.md, byte for byte."""
    import json

    examples = sorted(p for p in (Path(__file__).resolve().parents[2] / "results" / "examples").iterdir()
                      if json.loads((p / "run.json").read_text()).get("kind") != "train")  # bench train's: test_train
    assert examples, "no example run"
    import shutil

    run_dir = shutil.copytree(examples[-1], tmp_path / examples[-1].name)
    report.write(run_dir, plots=True, processes=1)
    assert (run_dir / report.REPORT_MD).read_text(encoding="utf-8") == \
        (examples[-1] / report.REPORT_MD).read_text(encoding="utf-8")
