"""The jax adapter, and Keras on the JAX and PyTorch backends: what they compute, in which dtype,
how they are timed and what they report; the equivalence of every model is `bench check`'s (CI)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax")

import reference_impl as ri  # noqa: E402
from harness import adapters  # noqa: E402
from harness.checks import ReferenceRun, check_cell  # noqa: E402
from harness.suites import Suite, load  # noqa: E402
from harness.timing import Timer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _model(name: str, dtype: str = "float32", mode: str = "eager"):
    spec = ri.models.get(name)
    return spec, adapters.get("jax").build(spec, ri.init_weights(spec, 0, np.float64), dtype=dtype, mode=mode)


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_computes_in_the_dtype_it_was_asked_for(dtype, mode):
    spec, model = _model("lenet5", dtype, mode)
    x, y = ri.random_batch(spec, 4, seed=1, dtype=np.float64)
    assert model.forward(x).dtype == np.dtype(dtype)
    loss, grads = model.loss_and_grads(x, y)
    assert {g.dtype for g in grads.values()} == {np.dtype(dtype)}
    assert set(grads) == {*spec.param_shapes(), "input"}
    assert all(grads[k].shape == shape for k, shape in spec.param_shapes().items())  # canonical layout as it is


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_jax_matches_the_float64_reference_to_rounding(mode):
    spec = ri.models.get("mnist_cnn")
    reference = ReferenceRun(spec, ri.init_weights(spec, 0, np.float64), 8, 0, 3)
    result = check_cell(adapters.get("jax"), reference, dtype="float64", mode=mode)
    assert result.status == "pass", [t.tensor for t in result.failures]
    worst = {stage: max(t.normwise for t in result.tensors if t.stage == stage)
             for stage in ("forward", "gradient", "update")}
    assert worst["forward"] < 1e-14 and worst["gradient"] < 1e-13, worst
    # updates are steps p_k - p_0, relative to the step: the timed Adam's eps 1e-7 amplifies rounding
    # where |g| ~ eps (4.0e-13 measured on dense2.weight), still 25x inside the 1e-11 tolerance
    assert worst["update"] < 2e-12, worst


@pytest.mark.parametrize("phase", ["forward", "backward", "forward_backward", "train_step"])
@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_every_phase_is_timed_with_a_sync_that_waits_for_its_result(phase, mode):
    spec, model = _model("mlp", mode=mode)
    x, y = ri.random_batch(spec, 8, seed=1, dtype=np.float64)
    timed = model.timing_phase(phase, x, y)
    synced = []
    real = timed.sync
    timer = Timer(dataclasses.replace(timed, sync=lambda: (synced.append(1), real())[1]))
    timer.first_call()
    timer.calibrate(0.0005)
    assert all(s > 0 for s in timer.sample(3))
    assert synced and mode in timed.how


def test_a_jit_train_step_moves_the_parameters_as_the_reference_does():
    spec, model = _model("mlp", "float64", "jit")
    x, y = ri.random_batch(spec, 8, seed=1, dtype=np.float64)
    reference = adapters.get("reference").build(spec, ri.init_weights(spec, 0, np.float64), dtype="float64")
    for m in (model, reference):
        m.set_optimizer(spec.optimizer)
        for _ in range(3):
            m.train_step(x, y)
    ours, theirs = model.get_weights(), reference.get_weights()
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-12, atol=1e-14)


def test_jax_threads_are_restricted_and_reported_in_a_fresh_process():
    code = ("import json, os; from harness import adapters; a = adapters.get('jax'); "
            "print(json.dumps(a.configure_threads(1)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    applied = json.loads(out.stdout.strip().splitlines()[-1])
    assert applied["threads"] is None  # XLA reports no count: not verified, and said so
    assert "intra_op_parallelism_threads=1" in applied["XLA_FLAGS"]
    if applied["cpu_affinity"] is not None:
        assert len(applied["cpu_affinity"]) == 1


def test_each_framework_names_its_idiomatic_mode_and_quick_times_it():
    expected = {"reference": "eager", "torch": "eager", "tensorflow": "function", "jax": "jit", "keras-jax": "jit",
                "keras-torch": "eager"}
    for name, mode in expected.items():
        assert adapters.get(name).idiomatic_mode == mode
        assert mode in adapters.get(name).modes
    quick = load("quick")
    modes = {c.framework: {x.mode for x in quick.cells() if x.framework == c.framework} for c in quick.cells()}
    assert {name: modes[name] for name in expected} == {name: {mode} for name, mode in expected.items()}


def test_idiomatic_beside_named_modes_adds_each_framework_once():
    suite = Suite.from_dict({"name": "s", "models": ["mlp"], "frameworks": ["jax", "torch"], "devices": ["cpu"],
                             "dtypes": ["float32"], "modes": ["idiomatic", "eager"], "batch_sizes": [1],
                             "phases": ["forward"], "threads": [1]})
    assert [(c.framework, c.mode) for c in suite.cells()] == [("jax", "eager"), ("jax", "jit"), ("torch", "eager")]


# -- Keras on other backends: one process per backend ---------------------------------------------


def test_a_keras_backend_other_than_this_processs_is_unavailable_with_the_reason():
    pytest.importorskip("keras")
    from harness.adapters.base import Unavailable

    code = ("import os; os.environ['KERAS_BACKEND'] = 'tensorflow'; import keras; "
            "import numpy as np, reference_impl as ri; from harness import adapters; "
            "spec = ri.models.get('mlp'); adapters.get('keras-jax').build(spec, ri.init_weights(spec, 0))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0 and Unavailable.__name__ in out.stderr
    assert "process of its own" in out.stderr


def test_bench_check_runs_a_keras_backend_in_a_worker_of_its_own():
    pytest.importorskip("keras")
    from click.testing import CliRunner

    from harness.cli import cli

    result = CliRunner().invoke(cli, ["check", "mlp", "--framework", "keras-jax", "--framework", "tensorflow",
                                      "--dtype", "float32", "--mode", "jit", "--mode", "function", "--format",
                                      "json"])
    assert result.exit_code == 0, result.output
    cells = {(c["framework"], c["mode"]): c for c in json.loads(result.stdout)}
    assert cells[("keras-jax", "jit")]["status"] == "pass" and cells[("tensorflow", "function")]["status"] == "pass"
