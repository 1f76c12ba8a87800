"""`bench train`: datasets (the IDX reader on files written here), the plan, the verdicts, the
command end to end with the NumPy reference (always installed), planted training bugs as
third-party adapters, bad input, Ctrl-C and resume.

The end-to-end runs use the digits set (scikit-learn) with the reference adapter and its planted
variants: seconds each. The Fashion-MNIST tests skip, with the command that installs it, when
Debian's dataset-fashion-mnist is absent.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import reference_impl as ri
from harness import datasets, training
from harness.errors import BadInput
from harness.training import analysis
from harness.training import config as train_config
from tests.harness import planted_train

REPO = Path(__file__).resolve().parents[2]
sklearn = pytest.importorskip("sklearn",
                              reason=f"digits and breast-cancer need scikit-learn: {datasets.INSTALL_SKLEARN}")
FASHION_MISSING = datasets.available("fashion-mnist")


def _write_idx(path: Path, array: np.ndarray, gz: bool = False, code: int = 0x08) -> Path:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(">u1" if code == 0x08 else array.dtype).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def _fake_fashion(folder: Path, n_train: int = 60, n_test: int = 20, gz: bool = True) -> Path:
    rng = np.random.default_rng(0)
    (folder / "fashion-mnist").mkdir(parents=True)
    for part, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(folder / "fashion-mnist" / f"{part}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), gz)
        _write_idx(folder / "fashion-mnist" / f"{part}-labels-idx1-ubyte", np.arange(n) % 10, gz)
    return folder


# ------------------------------------------------------------------------------------------------
# the IDX reader and the datasets


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_gives_back_what_was_written(tmp_path, gz):
    a = np.random.default_rng(1).integers(0, 256, (5, 3, 4)).astype(np.uint8)
    path = _write_idx(tmp_path / "x-idx3-ubyte", a, gz)
    b = datasets.read_idx(path)
    assert b.dtype == np.uint8 and b.shape == (5, 3, 4)
    assert np.array_equal(a, b)


def test_read_idx_reads_big_endian_floats(tmp_path):
    a = np.linspace(-1, 1, 6).reshape(2, 3).astype(">f4")
    path = _write_idx(tmp_path / "f-idx2", a, code=0x0D)
    assert np.array_equal(datasets.read_idx(path), a.astype(np.float32))


@pytest.mark.parametrize("data, message", [
    (b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"ab", "two zero bytes"),
    (b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"ab", "unknown IDX type code 0x07"),
    (b"\x00\x00\x08\x02" + struct.pack(">I", 2), "ends first"),
    (b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"ab", "3 bytes of data"),
])
def test_read_idx_names_the_file_and_what_is_wrong(tmp_path, data, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(data)
    with pytest.raises(BadInput, match=message) as e:
        datasets.read_idx(path)
    assert str(path) in str(e.value)


def test_fashion_mnist_from_a_data_dir_and_its_variants(tmp_path):
    folder = _fake_fashion(tmp_path)
    ds = datasets.load("fashion-mnist", folder)
    assert ds.x_train.shape == (60, 1, 28, 28) and ds.x_test.shape == (20, 1, 28, 28)
    assert ds.x_train.dtype == np.float64 and 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    raw = datasets.read_idx(folder / "fashion-mnist" / "train-images-idx3-ubyte.gz")
    assert np.array_equal(ds.x_train[:, 0] * 255, raw.astype(np.float64))
    assert list(ds.y_train[:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    padded = datasets.load("fashion-mnist-32", folder)
    assert padded.x_train.shape == (60, 1, 32, 32)
    assert np.array_equal(padded.x_train[:, :, 2:30, 2:30], ds.x_train) and padded.x_train[:, :, :2].sum() == 0
    small = datasets.load("fashion-mnist-10x10", folder)
    assert small.x_train.shape == (60, 100)
    assert small.x_train[0, 0] == pytest.approx(ds.x_train[0, 0, 4:6, 4:6].mean())
    assert datasets.load("fashion-mnist", folder).limited(10, 5).x_test.shape[0] == 5


def test_fashion_files_may_sit_in_the_folder_itself_uncompressed(tmp_path):
    _fake_fashion(tmp_path, gz=False)
    ds = datasets.load("fashion-mnist", tmp_path / "fashion-mnist")
    assert len(ds.x_train) == 60


def test_a_missing_dataset_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FWBENCH_DATA", str(tmp_path))
    with pytest.raises(datasets.DatasetMissing, match="apt-get install dataset-fashion-mnist"):
        datasets.load("fashion-mnist")
    assert "apt-get install" in datasets.available("fashion-mnist")
    with pytest.raises(BadInput, match="no such data directory"):
        datasets.load("fashion-mnist", tmp_path / "nowhere")


def test_digits_and_breast_cancer_splits_are_stratified_fixed_and_preprocessed():
    digits = datasets.load("digits")
    assert digits.x_train.shape[1:] == (64,) and len(digits.x_train) + len(digits.x_test) == 1797
    assert 0 <= digits.x_train.min() and digits.x_train.max() <= 1
    counts = np.bincount(digits.y_test, minlength=10) / np.bincount(digits.y_train, minlength=10)
    assert np.allclose(counts, 0.25, atol=0.02)  # 20% of each class held out: 1 test for 4 train
    assert np.array_equal(datasets.load("digits").y_test, digits.y_test)  # the same split every time
    cancer = datasets.load("breast-cancer")
    assert cancer.x_train.shape[1:] == (30,) and cancer.classes == 2
    assert np.allclose(cancer.x_train.mean(axis=0), 0, atol=1e-12)
    assert np.allclose(cancer.x_train.std(axis=0), 1)


def test_every_catalogue_model_has_a_dataset_or_says_why_not():
    for name in ri.models.names():
        spec = ri.models.get(name)
        if name in datasets.NO_DATASET:
            with pytest.raises(BadInput, match="no dataset"):
                datasets.for_model(spec)
        else:
            assert datasets.fits(spec, datasets.for_model(spec)) is None


def test_a_dataset_that_does_not_fit_names_the_ones_that_do():
    with pytest.raises(BadInput, match=r"\(64,\).*takes \(1, 28, 28\).*fit mnist_cnn: fashion-mnist"):
        datasets.for_model(ri.models.get("mnist_cnn"), "digits")
    with pytest.raises(BadInput, match="unknown dataset 'mnist'; valid: digits"):
        datasets.for_model(ri.models.get("mnist_cnn"), "mnist")


def test_targets_fit_each_loss():
    labels = np.array([0, 2, 1])
    assert datasets.targets_for(ri.models.get("mnist_cnn"), labels) is labels
    onehot = datasets.targets_for(ri.models.get("sigmoid_mlp"), labels)
    assert onehot.shape == (3, 10) and onehot[1, 2] == 1 and onehot.sum() == 3
    assert datasets.targets_for(ri.models.get("logistic_regression"), np.array([0, 1])).shape == (2, 1)


# ------------------------------------------------------------------------------------------------
# the plan and the verdicts' statistics


def test_the_batch_order_is_the_same_everywhere_and_new_each_epoch():
    a = train_config.batch_indices(100, 16, seed=3, epoch=1)
    assert [len(b) for b in a] == [16] * 6 + [4]
    assert sorted(np.concatenate(a)) == list(range(100))
    again = train_config.batch_indices(100, 16, seed=3, epoch=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, again, strict=True))
    assert not np.array_equal(np.concatenate(a), np.concatenate(train_config.batch_indices(100, 16, seed=3, epoch=2)))


def test_plan_always_has_the_float64_reference_and_checks_its_values():
    config = training.plan("sigmoid_mlp", frameworks=("reference",), dtypes=("float32",))
    assert [c.key for c in config.contenders] == ["reference.cpu.float64.eager", "reference.cpu.float32.eager"]
    assert config.optimizer.params["lr"] == 3.0 and config.batch_size == 16
    assert train_config.TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(BadInput, match="epochs must be at least 1"):
        training.plan("sigmoid_mlp", frameworks=("reference",), epochs=0)
    with pytest.raises(BadInput, match="unknown framework 'nope'"):
        training.plan("sigmoid_mlp", frameworks=("nope",))
    with pytest.raises(BadInput, match="unknown model 'resnet'"):
        training.plan("resnet")


def test_wilson_interval_and_agreement():
    low, high = analysis.wilson(90, 100)
    assert 0.82 < low < 0.83 and 0.94 < high < 0.95  # the textbook values: [0.826, 0.945]
    assert analysis.accuracies_agree(0.90, 0.91, 1000)[0]
    assert not analysis.accuracies_agree(0.90, 0.95, 1000)[0]


# ------------------------------------------------------------------------------------------------
# end to end


def _env(extra_adapters: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    env.pop("FWBENCH_ADAPTERS", None)
    if extra_adapters:
        env["FWBENCH_ADAPTERS"] = ",".join(f"{k}={v}" for k, v in extra_adapters.items())
    return env


def _bench_train(args, tmp_path, adapters=None, timeout=300):
    cmd = [sys.executable, "-m", "harness.cli", "train", *args, "--results-dir", str(tmp_path / "results")]
    return subprocess.run(cmd, cwd=tmp_path, env=_env(adapters), capture_output=True, text=True, timeout=timeout)


def _verdicts(proc) -> dict[str, dict]:
    return {v["key"]: v for v in json.loads(proc.stdout)}


def _run_dir(tmp_path) -> Path:
    (run,) = (tmp_path / "results").iterdir()
    return run


def test_bench_train_digits_end_to_end_in_both_dtypes(tmp_path):
    proc = _bench_train(["sigmoid_mlp", "--framework", "reference", "--dtype", "float32", "--dtype", "float64",
                         "--epochs", "2", "--format", "json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = _verdicts(proc)
    assert set(found) == {"reference.cpu.float64.eager", "reference.cpu.float32.eager"}
    f32 = found["reference.cpu.float32.eager"]
    assert f32["status"] == "pass" and f32["epochs"] == 2 and f32["steps"] == 2 * 90
    assert 1e-9 < f32["max_loss_deviation"] < 1e-5  # float32 rounding, not zero: a real comparison
    assert f32["accuracy_agrees"] is True and f32["median_epoch_s"] > 0
    run = _run_dir(tmp_path)
    for name in ("report.html", "report.md", "verdicts.json", "plots/train_loss.png", "plots/train_trajectory.png",
                 "plots/train_time_to_accuracy.png", "train/reference.cpu.float32.eager/epoch-002.json"):
        assert (run / name).is_file(), name
    steps, epochs, verdicts = training.load(run)
    assert len(steps) == 2 * 2 * 90 and set(epochs["epoch"]) == {0, 1, 2}
    assert (steps.groupby("contender")["loss"].count() == 180).all()
    md = (run / "report.md").read_text()
    assert "Every contender passes." in md and "fwbench train" in md
    meta = json.loads((run / "run.json").read_text())
    assert meta["kind"] == "train" and meta["status"] == "finished" and meta["dataset"]["name"] == "digits"


def test_bench_train_logistic_regression_on_breast_cancer(tmp_path):
    proc = _bench_train(["logistic_regression", "--framework", "reference", "--epochs", "3", "--format", "json"],
                        tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = _verdicts(proc)
    assert found["reference.cpu.float64.eager"]["final_test_accuracy"] > 0.9


@pytest.mark.parametrize("args, message", [
    (["sigmoid_mlp", "--data", "mnist"], "unknown dataset 'mnist'; valid: digits"),
    (["mnist_cnn", "--data", "digits"], "datasets that fit mnist_cnn"),
    (["mnist_cnn", "--data-dir", "/nonexistent/data"], "no such data directory"),
    (["sigmoid_mlp", "--epochs", "0"], "epochs must be at least 1"),
    (["linear_regression"], "has no dataset"),
    ([], "which model?"),
])
def test_bad_input_exits_2_with_the_fix(tmp_path, args, message):
    proc = _bench_train([*args, "--framework", "reference"] if args else [], tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_planted_training_bugs_are_flagged_at_the_right_step(tmp_path):
    adapters = {k: v for k, v in planted_train.ADAPTERS.items() if k != "stalled"}
    proc = _bench_train(["sigmoid_mlp", "--framework", "reference", "--framework", "drifting", "--framework",
                         "lagging", "--dtype", "float64", "--epochs", "2", "--format", "json"], tmp_path, adapters)
    assert proc.returncode == 1, proc.stderr
    found = _verdicts(proc)
    drifting = found["drifting.cpu.float64.eager"]
    assert drifting["status"] == "fail"
    assert drifting["leaves_at_step"] == planted_train.DRIFT_FROM_STEP + 1
    assert drifting["accuracy_agrees"] is True  # it still learns as well: only the trajectory tells
    assert "step 41 (epoch 1)" in " ".join(drifting["reasons"])
    lagging = found["lagging.cpu.float64.eager"]
    assert lagging["status"] == "fail" and lagging["leaves_at_step"] == 1
    assert found["reference.cpu.float64.eager"]["status"] == "pass"


def test_a_framework_that_stops_learning_fails_naming_the_epoch(tmp_path):
    """In float32, where the trajectory is not judged: the learning verdict alone must catch it."""
    proc = _bench_train(["sigmoid_mlp", "--framework", "reference", "--framework", "stalled", "--epochs", "8",
                         "--format", "json"], tmp_path, {"stalled": planted_train.ADAPTERS["stalled"]})
    assert proc.returncode == 1, proc.stderr
    found = _verdicts(proc)
    stalled = found["stalled.cpu.float32.eager"]
    assert stalled["status"] == "fail"
    # digits' loss plateaus for the first epochs, then falls: the first epoch whose fall it misses
    assert any(r.startswith("does not learn: by the end of epoch 3 ") for r in stalled["reasons"]), stalled["reasons"]
    assert found["reference.cpu.float32.eager"]["status"] == "pass"


def test_a_crashing_framework_costs_only_its_own_results(tmp_path):
    proc = _bench_train(["sigmoid_mlp", "--framework", "reference", "--framework", "crashing", "--epochs", "2",
                         "--format", "json"], tmp_path, {"crashing": planted_train.ADAPTERS["crashing"]})
    assert proc.returncode == 1, proc.stderr
    found = _verdicts(proc)
    crashed = found["crashing.cpu.float32.eager"]
    assert crashed["status"] == "error" and "SIGSEGV" in crashed["reasons"][0]
    assert crashed["epochs"] == 0  # epoch 0 (the evaluation before training) is kept; epoch 1 died
    assert found["reference.cpu.float32.eager"]["status"] == "pass"
    assert found["reference.cpu.float32.eager"]["epochs"] == 2
    failure = json.loads((_run_dir(tmp_path) / "train" / "crashing.cpu.float32.eager" / "failure.json").read_text())
    assert failure["status"] == "crashed" and "stderr_tail" in failure


def test_ctrl_c_keeps_the_finished_epochs_and_resume_replays_them(tmp_path):
    config = training.plan("sigmoid_mlp", frameworks=("reference",), dtypes=("float32",), epochs=3)
    run = training.start(config, tmp_path)

    def interrupt_after_epoch_2(event, **d):
        if event == "epoch" and d["record"]["epoch"] == 2 and not d["contender"].is_truth:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(config, run, progress=interrupt_after_epoch_2)
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "interrupted"
    kept = sorted(p.name for p in (run / "train" / "reference.cpu.float32.eager").glob("epoch-*.json"))
    assert kept == ["epoch-000.json", "epoch-001.json", "epoch-002.json"]
    before = json.loads((run / "train" / "reference.cpu.float32.eager" / "epoch-001.json").read_text())

    config2, _ = training.resume(run)
    assert config2 == config
    training.train(config2, run)
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "finished"
    replay = meta["replays"]["reference.cpu.float32.eager"]
    assert replay["epochs"] == [1, 2] and replay["max_loss_difference"] == 0.0  # NumPy is deterministic
    after = json.loads((run / "train" / "reference.cpu.float32.eager" / "epoch-001.json").read_text())
    assert after == before  # finished epochs are not run again
    found = {v.contender.key: v for v in training.verdicts(training.read(run))}
    assert all(v.status == "pass" and v.epochs == 3 for v in found.values())
    # the resumed trajectory is the uninterrupted one: same losses as a fresh run of the same plan
    fresh = training.start(config, tmp_path)
    training.train(config, fresh)
    a, b = (training.read(r).runs["reference.cpu.float32.eager"].losses for r in (run, fresh))
    assert np.array_equal(a, b)


@pytest.mark.skipif(bool(FASHION_MISSING), reason=f"Fashion-MNIST: {FASHION_MISSING}")
def test_fashion_mnist_subset_trains_mnist_cnn(tmp_path):
    proc = _bench_train(["mnist_cnn", "--framework", "reference", "--limit-train", "256", "--limit-test", "200",
                         "--epochs", "1", "--format", "json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    f32 = _verdicts(proc)["reference.cpu.float32.eager"]
    assert f32["steps"] == 2 and f32["max_loss_deviation"] < 1e-5


def test_ctrl_c_at_the_terminal_exits_130_and_bench_train_resume_finishes(tmp_path):
    """A real SIGINT to `bench train` (the workers are in sessions of their own, as at a terminal)."""
    import signal
    import time

    cmd = [sys.executable, "-m", "harness.cli", "train", "sigmoid_mlp", "--framework", "reference", "--batch", "1",
           "--epochs", "200", "--results-dir", str(tmp_path / "results"), "--no-report"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = list((tmp_path / "results").glob("*/train/reference.cpu.float32.eager/epoch-003.json"))
        if found:
            break
        time.sleep(0.05)
    assert found, "no third epoch within 120 s"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "interrupted: every finished epoch is kept; finish with: bench train --resume" in out
    run = _run_dir(tmp_path)
    kept = {p.parent.name: len(list(p.parent.glob("epoch-*.json")))
            for p in run.glob("train/*/epoch-000.json")}
    assert all(3 <= n < 201 for n in kept.values()), kept
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    # finish it, with fewer epochs to go: the resumed run keeps its own settings, so shorten it in run.json
    meta = json.loads((run / "run.json").read_text())
    meta["config"]["epochs"] = max(kept.values())
    (run / "run.json").write_text(json.dumps(meta))
    done = subprocess.run([sys.executable, "-m", "harness.cli", "train", "--resume", str(run), "--no-report"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replaying epoch" in done.stdout
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_bench_report_on_the_committed_training_example_writes_its_report_md_again(tmp_path):
    """results/examples/*-train-mnist_cnn holds every epoch file and the last epoch's parameters:
    its verdicts and report.md come out of them again, byte for byte."""
    import shutil

    from harness.training import report as train_report

    (example,) = sorted((REPO / "results" / "examples").glob("*-train-mnist_cnn"))
    run = shutil.copytree(example, tmp_path / example.name)
    train_report.write(run, plots=True)
    assert (run / "report.md").read_text() == (example / "report.md").read_text()
    found = {v["key"]: v for v in json.loads((run / "verdicts.json").read_text())["verdicts"]}
    assert all(v["status"] == "pass" and v["epochs"] == 5 and v["accuracy_agrees"] is not False
               for v in found.values())
    assert all(v["max_param_deviation"] is not None for k, v in found.items() if not k.startswith("reference.cpu.f"
                                                                                                   "loat64"))
