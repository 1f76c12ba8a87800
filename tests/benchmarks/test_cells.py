"""The cells of a suite timed by pytest-benchmark, through the same adapters' phases as `bench run`.

    pytest tests/benchmarks --benchmark-only                       # the quick suite's cells
    FWBENCH_BENCH_SUITE=smoke pytest tests/benchmarks --benchmark-only

Each cell is one benchmark, grouped with the other frameworks' cells of the same workload, so that
pytest-benchmark's table and `pytest-benchmark compare` show them side by side. The adapter's sync
runs after every call (a CUDA kernel is timed to its end, not to its launch), and a phase that
needs untimed work before each call (a backward after its forward) gets it as pytest-benchmark's
`setup`. Unlike `bench run`, everything runs in this one process, frameworks are not interleaved and
BLAS threads are whatever the environment set: use `bench run` for comparisons you will quote.
Benchmarks never assert a time.
"""

import os

import numpy as np
import pytest

import reference_impl as ri
from harness import adapters, suites
from harness.adapters.base import Unavailable

SUITE = suites.load(os.environ.get("FWBENCH_BENCH_SUITE", "quick"))
_models: dict = {}


def _model(cell):
    key = (cell.model, cell.framework, cell.device, cell.dtype, cell.mode)
    if key not in _models:
        adapter = adapters.get(cell.framework)
        reason = adapter.unavailable_reason(cell.device, cell.dtype, cell.mode)
        if reason:
            pytest.skip(reason)
        adapter.configure_threads(cell.threads)
        spec = ri.models.get(cell.model)
        _models[key] = adapter.build(spec, ri.init_weights(spec, 0, np.float64), device=cell.device,
                                     dtype=cell.dtype, mode=cell.mode)
    return _models[key]


@pytest.mark.parametrize("cell", SUITE.cells(), ids=lambda c: c.key)
def test_cell(benchmark, cell):
    model = _model(cell)
    x, y = ri.random_batch(model.spec, cell.batch_size, 100, np.float64)
    try:
        phase = model.timing_phase(cell.phase, x, y)
    except Unavailable as e:
        pytest.skip(str(e))
    benchmark.group = f"{cell.model} {cell.phase} b{cell.batch_size} {cell.dtype} {cell.device} t{cell.threads}"
    benchmark.extra_info.update(cell.to_dict(), how=phase.how)

    def run():
        phase.run()
        phase.sync()

    if phase.prepare is None:
        benchmark(run)
    else:
        def setup():
            phase.prepare()  # pytest-benchmark would take a returned value for the call's arguments

        benchmark.pedantic(run, setup=setup, rounds=20, iterations=1, warmup_rounds=3)
