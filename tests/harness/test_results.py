"""The results format: atomic writes, round trips, schema versions, and load() on hand-made cells."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from harness import results
from harness.results import ResultsError

ROOT = Path(__file__).resolve().parents[2]


def make_cell(framework="torch", status="ok", samples=(0.010, 0.012, 0.011, 0.013, 0.0105), batch_size=32,
              device="cpu", flops=2.0e9, **extra) -> dict:
    cell = {"model": "mlp", "framework": framework, "device": device, "dtype": "float32", "mode": "eager",
            "batch_size": batch_size, "phase": "forward", "threads": 2}
    doc = {
        "cell": cell, "status": status, "reason": "" if status == "ok" else f"it was {status}",
        "stderr_tail": "", "verified": status == "ok" or None, "threads_verified": status == "ok" or None,
        "check": {"status": "pass", "worst_normwise": 3e-7, "first_divergence": None} if status == "ok" else None,
        "samples_s": list(samples) if status == "ok" else [], "iters_per_sample": 10 if status == "ok" else None,
        "first_call_s": 0.5 if status == "ok" else None, "warmup_calls": 3, "how": "direct",
        "threads_applied": {"torch.set_num_threads": 2}, "knobs": {"cudnn.benchmark": False},
        "flops": flops, "peak_memory_bytes": 123_456_789, "memory_kind": "rss",
        "started": "2026-11-23T18:45:12+00:00", "seconds": 4.25,
    }
    doc.update(extra)
    return doc


def key_of(doc: dict) -> str:
    c = doc["cell"]
    return ".".join(str(c[f]) for f in results.CELL_FIELDS).replace(":", "")


@pytest.fixture
def run_dir(tmp_path) -> Path:
    d = tmp_path / "20261123-184512-quick"
    results.write_run(d, {"suite": "quick", "environment": {"cpu": {"model": "x"}},
                          "peak_gflops": {"cpu": 100.0, "cuda:0": 50_000.0}})
    return d


# ------------------------------------------------------------------------------------------------
# run ids


def test_new_run_id_is_sortable_and_safe(tmp_path):
    now = datetime(2026, 11, 23, 18, 45, 12)
    assert results.new_run_id("quick", now) == "20261123-184512-quick"
    assert results.new_run_id("my suite/v2", now) == "20261123-184512-my-suite-v2"
    assert results.new_run_id("///", now) == "20261123-184512-run"
    later = results.new_run_id("quick", datetime(2026, 11, 23, 18, 45, 13))
    assert sorted([later, results.new_run_id("quick", now)])[0].endswith("184512-quick")


def test_new_run_id_adds_a_suffix_only_when_the_folder_exists(tmp_path):
    now = datetime(2026, 11, 23, 18, 45, 12)
    assert results.new_run_id("quick", now, tmp_path) == "20261123-184512-quick"
    (tmp_path / "20261123-184512-quick").mkdir()
    other = results.new_run_id("quick", now, tmp_path)
    assert other.startswith("20261123-184512-quick-") and len(other) == len("20261123-184512-quick") + 5
    assert not (tmp_path / other).exists()


# ------------------------------------------------------------------------------------------------
# atomic writes


def test_atomic_write_round_trips_floats_exactly_and_writes_nan_as_null(tmp_path):
    values = [0.1, 1 / 3, 2.0**-1074, 1.7976931348623157e308, 1e-9 + 1e-25, float(np.float32(0.1))]
    obj = {"values": values, "np": np.float64(1 / 7), "arr": np.arange(3), "i": np.int64(5),
           "nan": math.nan, "inf": [math.inf, -math.inf], "flag": np.bool_(True)}
    path = tmp_path / "doc.json"
    results.atomic_write_json(path, obj)
    back = json.loads(path.read_text())
    assert back["values"] == values  # exact: no rounding on the way
    assert back["np"] == 1 / 7 and back["arr"] == [0, 1, 2] and back["i"] == 5 and back["flag"] is True
    assert back["nan"] is None and back["inf"] == [None, None]
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]  # no temporary file left


def test_a_failed_replace_keeps_the_previous_file_and_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "doc.json"
    results.atomic_write_json(path, {"version": "old"})

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        results.atomic_write_json(path, {"version": "new"})
    assert json.loads(path.read_text()) == {"version": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_an_unserializable_value_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ResultsError, match="doc.json"):
        results.atomic_write_json(tmp_path / "doc.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_a_run_killed_between_write_and_replace_leaves_the_old_cell_and_a_temp_file_readers_ignore(run_dir):
    old = make_cell()
    key = key_of(old)
    results.write_cell(run_dir, key, old)
    # A real kill: the child process dies (os._exit, no clean-up) at the moment it would replace the file.
    code = f"""
import os, sys
from harness import results
os.replace = lambda src, dst: os._exit(9)
results.write_cell(sys.argv[1], sys.argv[2], {{"cell": {old["cell"]!r}, "status": "error", "reason": "new"}})
"""
    proc = subprocess.run([sys.executable, "-c", code, str(run_dir), key], cwd=ROOT)
    assert proc.returncode == 9
    stray = [p.name for p in (run_dir / "cells").iterdir() if p.name.endswith(".tmp")]
    assert len(stray) == 1 and stray[0].startswith(".")
    assert '"new"' in (run_dir / "cells" / stray[0]).read_text()  # the new text was written, not renamed

    cells = results.finished_cells(run_dir)
    assert list(cells) == [key]
    assert cells[key]["status"] == "ok" and cells[key]["samples_s"] == old["samples_s"]
    pytest.importorskip("harness.stats")
    assert len(results.load(run_dir)) == 1


# ------------------------------------------------------------------------------------------------
# round trips and schema versions


def test_run_round_trip_adds_the_schema_version(run_dir):
    run = results.read_run(run_dir)
    assert run["schema_version"] == results.SCHEMA_VERSION
    assert run["suite"] == "quick" and run["peak_gflops"] == {"cpu": 100.0, "cuda:0": 50_000.0}
    assert json.loads((run_dir / "run.json").read_text())["schema_version"] == results.SCHEMA_VERSION


def test_cell_round_trip(run_dir):
    docs = [make_cell("torch"), make_cell("tensorflow", status="oom"), make_cell("reference", device="cuda:0")]
    for doc in docs:
        path = results.write_cell(run_dir, key_of(doc), doc)
        assert path == results.cell_path(run_dir, key_of(doc)) and path.parent.name == "cells"
    cells = results.finished_cells(run_dir)
    assert list(cells) == sorted(key_of(d) for d in docs)
    for doc in docs:
        assert cells[key_of(doc)] == {"schema_version": results.SCHEMA_VERSION, **doc}


def test_writing_a_cell_again_replaces_it(run_dir):
    doc = make_cell(status="error")
    results.write_cell(run_dir, key_of(doc), doc)
    results.write_cell(run_dir, key_of(doc), make_cell())
    assert [c["status"] for c in results.finished_cells(run_dir).values()] == ["ok"]


def test_keys_unsafe_in_file_names_are_encoded_and_given_back(run_dir):
    for key in ("mlp/torch/cuda:0", ".hidden", "a b%c"):
        path = results.write_cell(run_dir, key, make_cell())
        assert path.parent == run_dir / "cells" and not path.name.startswith(".")
    assert set(results.finished_cells(run_dir)) == {"mlp/torch/cuda:0", ".hidden", "a b%c"}


def test_write_cell_refuses_an_unknown_status_or_a_missing_cell(run_dir):
    with pytest.raises(ResultsError, match="'finished' is not one of ok, skipped"):
        results.write_cell(run_dir, "k", make_cell(status="finished"))
    with pytest.raises(ResultsError, match="'cell' must be an object"):
        results.write_cell(run_dir, "k", {"status": "ok"})


def test_no_cells_yet(run_dir):
    assert results.finished_cells(run_dir) == {}


def test_a_newer_schema_is_refused_with_the_file_and_both_versions(run_dir):
    doc = make_cell()
    path = results.write_cell(run_dir, key_of(doc), doc)
    newer = results.SCHEMA_VERSION + 1
    path.write_text(json.dumps({**doc, "schema_version": newer}))
    with pytest.raises(ResultsError) as info:
        results.finished_cells(run_dir)
    message = str(info.value)
    assert str(path) in message and f"schema_version {newer}" in message
    assert f"schema_version {results.SCHEMA_VERSION}" in message and "upgrade fwbench" in message

    run = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**run, "schema_version": newer}))
    with pytest.raises(ResultsError, match="run.json: schema_version .* upgrade fwbench"):
        results.read_run(run_dir)


def test_refuse_newer_returns_the_version_and_refuses_a_missing_one():
    assert results.refuse_newer({"schema_version": 1}, "x.json") == 1
    with pytest.raises(ResultsError, match="x.json: no valid schema_version"):
        results.refuse_newer({}, "x.json")


def test_an_older_file_missing_optional_fields_is_read_with_defaults(run_dir, monkeypatch):
    # What a minimal cell of an older (or the same) version holds: only the required fields.
    bare = {"schema_version": 1, "cell": make_cell()["cell"], "status": "skipped"}
    path = results.cell_path(run_dir, "bare")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bare))
    (run_dir / "run.json").write_text(json.dumps({"schema_version": 1}))
    # Pretend this fwbench is a later version: version-1 files must still be accepted.
    monkeypatch.setattr(results, "SCHEMA_VERSION", 3)
    cell = results.finished_cells(run_dir)["bare"]
    assert cell["status"] == "skipped" and cell["verified"] is None and cell["flops"] is None
    assert cell["samples_s"] == [] and cell["check"] is None and cell["knobs"] == {}
    assert results.read_run(run_dir)["peak_gflops"] == {}
    pytest.importorskip("harness.stats")
    df = results.load(run_dir)
    assert df.loc[0, "status"] == "skipped" and math.isnan(df.loc[0, "median_s"])


def test_a_corrupt_cell_file_names_the_file(run_dir):
    doc = make_cell()
    path = results.write_cell(run_dir, key_of(doc), doc)
    path.write_text(path.read_text()[:40])  # truncated, as by a writer that did not write atomically
    with pytest.raises(ResultsError, match=f"{path}: corrupt results file"):
        results.finished_cells(run_dir)
    path.write_text("[1, 2]")
    with pytest.raises(ResultsError, match=f"{path}: expected a JSON object"):
        results.finished_cells(run_dir)


def test_a_folder_without_run_json_is_not_a_run(tmp_path):
    with pytest.raises(ResultsError, match="not an fwbench run folder"):
        results.read_run(tmp_path)


# ------------------------------------------------------------------------------------------------
# load() and the table


def test_load_columns_and_derived_values(run_dir):
    pytest.importorskip("harness.stats")
    samples = [0.010, 0.012, 0.011, 0.013, 0.0105, 0.0111, 0.0098]
    cpu = make_cell("torch", samples=samples, batch_size=32, flops=2.0e9)
    gpu = make_cell("tensorflow", samples=[s / 100 for s in samples], device="cuda", batch_size=64, flops=2.0e9)
    for doc in (cpu, gpu):
        results.write_cell(run_dir, key_of(doc), doc)
    df = results.load(run_dir)
    assert list(df.columns) == list(results.COLUMNS)
    assert len(df) == 2 and set(df.run_id) == {run_dir.name}
    row = df.set_index("framework").loc["torch"]
    x = np.asarray(samples)
    assert row.key == key_of(cpu) and row.model == "mlp" and row.batch_size == 32 and row.threads == 2
    assert row.median_s == np.median(x)
    assert row.q1_s == np.quantile(x, 0.25) and row.q3_s == np.quantile(x, 0.75)
    assert row.iqr_s == pytest.approx(np.quantile(x, 0.75) - np.quantile(x, 0.25))
    assert row.min_s == x.min() and row.max_s == x.max() and row.n == len(x)
    assert row.mean_s == pytest.approx(x.mean()) and row.stdev_s == pytest.approx(x.std(ddof=1))
    assert row.cv == pytest.approx(x.std(ddof=1) / x.mean())
    assert row.ci_low_s <= row.median_s <= row.ci_high_s
    assert row.noisy == (row.noisy_cv or row.noisy_iqr)
    assert row.samples_per_s == pytest.approx(32 / np.median(x))
    assert row.gflops_per_s == pytest.approx(2.0e9 / np.median(x) / 1e9)
    assert row.peak_share == pytest.approx(row.gflops_per_s / 100.0)
    assert row.verified == True and row.check_status == "pass" and row.worst_normwise == 3e-7  # noqa: E712
    assert row.first_call_s == 0.5 and row.iters_per_sample == 10 and row.peak_memory_bytes == 123_456_789
    assert row.how == "direct" and row.memory_kind == "rss" and row.seconds == 4.25
    gpu_row = df.set_index("framework").loc["tensorflow"]
    assert gpu_row.samples_per_s == pytest.approx(64 / np.median(x / 100))
    # 'cuda' finds the peak stored under 'cuda:0'
    assert gpu_row.peak_share == pytest.approx(2.0e9 / np.median(x / 100) / 1e9 / 50_000.0)
    assert "samples_s" not in df.columns


def test_load_without_a_peak_or_flops_gives_nan(tmp_path):
    pytest.importorskip("harness.stats")
    results.write_run(tmp_path, {"suite": "quick"})  # no peak_gflops measured
    doc = make_cell(flops=None)
    results.write_cell(tmp_path, key_of(doc), doc)
    row = results.load(tmp_path).iloc[0]
    assert math.isnan(row.gflops_per_s) and math.isnan(row.peak_share) and row.samples_per_s > 0


def test_statuses_other_than_ok_have_nan_statistics(run_dir):
    pytest.importorskip("harness.stats")
    for status in results.STATUSES:
        doc = make_cell(framework=f"fw_{status}", status=status)
        results.write_cell(run_dir, key_of(doc), doc)
    df = results.load(run_dir).set_index("status")
    assert df.loc["ok", "median_s"] > 0 and df.loc["ok", "n"] == 5
    others = df.drop(index="ok")
    assert len(others) == len(results.STATUSES) - 1
    for column in ("median_s", "q1_s", "iqr_s", "ci_low_s", "cv", "n", "noisy", "samples_per_s", "gflops_per_s",
                   "peak_share"):
        assert others[column].isna().all(), column
    assert (others.reason == [f"it was {s}" for s in others.index]).all()
    assert others.verified.isna().all()


def test_load_raw_keeps_the_samples(run_dir):
    pytest.importorskip("harness.stats")
    doc = make_cell()
    results.write_cell(run_dir, key_of(doc), doc)
    df = results.load(run_dir, raw=True)
    assert df.loc[0, "samples_s"] == doc["samples_s"] and df.loc[0, "knobs"] == doc["knobs"]
    assert list(df.columns)[: len(results.COLUMNS)] == list(results.COLUMNS)


def test_an_ok_cell_with_unusable_samples_names_its_file(run_dir):
    pytest.importorskip("harness.stats")
    doc = make_cell(samples=[0.01, None, 0.02])  # a NaN written as null
    results.write_cell(run_dir, key_of(doc), doc)
    with pytest.raises(ResultsError, match="cannot tabulate this cell"):
        results.load(run_dir)


def test_an_empty_run_loads_as_an_empty_table_with_the_columns(run_dir):
    df = results.load(run_dir)  # no cell: no statistics needed
    assert df.empty and list(df.columns) == list(results.COLUMNS)
    assert list(results.load(run_dir, raw=True).columns)[-1] == "knobs"


def test_write_table_writes_the_loaded_table(run_dir):
    pandas = pytest.importorskip("pandas")
    pytest.importorskip("harness.stats")
    for doc in (make_cell("torch"), make_cell("tensorflow", status="timeout")):
        results.write_cell(run_dir, key_of(doc), doc)
    path = results.write_table(run_dir)
    assert path == run_dir / "cells.csv"
    table = pandas.read_csv(path)
    loaded = results.load(run_dir)
    assert list(table.columns) == list(results.COLUMNS)
    assert table.framework.tolist() == loaded.framework.tolist() == ["tensorflow", "torch"]  # sorted by key
    assert table.status.tolist() == ["timeout", "ok"]
    assert math.isnan(table.median_s[0]) and table.median_s[1] == loaded.median_s[1]  # floats exact via CSV
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_a_suites_cell_round_trips_under_its_key(run_dir):
    suites = pytest.importorskip("harness.suites")
    cell = suites.Cell("mnist_cnn", "torch", "cuda:1", "float32", "eager", 32, "forward", 2)
    results.write_cell(run_dir, cell.key, make_cell(status="skipped") | {"cell": cell.to_dict()})
    assert results.cell_path(run_dir, cell.key).name == f"{cell.key}.json"  # the key is already safe
    (key, doc), = results.finished_cells(run_dir).items()
    assert key == cell.key and suites.Cell.from_dict(doc["cell"]) == cell
