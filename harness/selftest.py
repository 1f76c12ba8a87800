"""`bench selftest`: the timer checks itself on this machine against workloads whose answer is known."""

from __future__ import annotations

import importlib.util
import time

import numpy as np

from .timing import Phase, measure, validate_known_duration

__all__ = ["run_all", "known_duration", "slow_first_call", "torch_agreement"]


def _spin(seconds: float) -> None:
    # A busy-wait, not a sleep: sleep overshoots by the OS timer's slack, and a preempted spin still
    # ends on time, so the workload's duration is known on a busy machine too.
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def known_duration(target_s: float = 0.002) -> dict:
    found = validate_known_duration(target_s)
    error = found["relative_error"]
    return {"name": "known duration", "passed": abs(error) <= 0.02, "value": error,
            "detail": f"a {target_s * 1e3:g} ms busy-wait measured {found['median_s'] * 1e3:.4f} ms "
                      f"({error:+.2%}; bound 2%)"}


def slow_first_call(call_s: float = 0.001, first_s: float = 0.1) -> dict:
    """A first call 100x slower than the others (a compilation, say) is reported, not averaged in."""
    calls = [0]

    def workload() -> None:
        calls[0] += 1
        _spin(first_s if calls[0] == 1 else call_s)

    m = measure(Phase(workload, how="busy-wait with a slow first call"), samples=15, min_sample_s=0.005)
    median = m.stats().median
    error = (median - call_s) / call_s
    passed = abs(error) <= 0.02 and m.first_call_s >= first_s
    return {"name": "slow first call", "passed": passed, "value": error,
            "detail": f"first call {m.first_call_s * 1e3:.1f} ms reported apart; median {median * 1e3:.4f} ms "
                      f"against {call_s * 1e3:g} ms ({error:+.2%}; bound 2%)"}


def torch_agreement(rounds: int = 3) -> dict:
    """Our median against torch.utils.benchmark's blocked_autorange on the same callable, interleaved."""
    if importlib.util.find_spec("torch") is None:
        return {"name": "agrees with torch.utils.benchmark", "passed": None, "value": None,
                "detail": "skipped: torch is not installed"}
    import torch
    import torch.utils.benchmark as tb

    import reference_impl as ri

    from .adapters.torch_adapter import TorchAdapter

    spec = ri.models.get("mnist_cnn")
    model = TorchAdapter().build(spec, ri.init_weights(spec, 0, np.float64), dtype="float32")
    x, y = ri.random_batch(spec, 32, 0, np.float64)
    phase = model.timing_phase("forward", x, y)
    ours, theirs = [], []
    timer = tb.Timer(stmt="run()", globals={"run": phase.run}, num_threads=torch.get_num_threads())
    for _ in range(rounds):
        ours.append(measure(phase, samples=20, min_sample_s=0.02).stats().median)
        theirs.append(timer.blocked_autorange(min_run_time=0.5).median)
    a, b = float(np.median(ours)), float(np.median(theirs))
    ratio = a / b
    return {"name": "agrees with torch.utils.benchmark", "passed": abs(ratio - 1) <= 0.10, "value": ratio,
            "detail": f"mnist_cnn forward, batch 32: ours {a * 1e3:.3f} ms, blocked_autorange {b * 1e3:.3f} ms "
                      f"(ratio {ratio:.3f}; bound 10%)"}


def run_all(with_torch: bool = True) -> list[dict]:
    checks = [known_duration(), slow_first_call()]
    if with_torch:
        checks.append(torch_agreement())
    return checks
