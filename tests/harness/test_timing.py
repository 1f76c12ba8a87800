"""harness.timing with an injected fake clock: time passes only when the fake workload runs.

Durations are powers of two so that every sum and difference of clock readings is exact in float64,
and samples can be compared with ==. No test sleeps, and none asserts a real duration.
"""

import dataclasses
import math

import numpy as np
import pytest

from harness import timing
from harness.timing import Measurement, Phase, Timer

D = 2.0**-12  # one call of the fake workload: 244 us
FIRST = 2.0**-2  # its first call: 250 ms, as if it compiled
PREPARE = 2.0**-8  # one untimed prepare: 3.9 ms, longer than the timed call


class FakeClock:
    """A clock that stands still until advanced; it counts its reads and can log them."""

    def __init__(self, log: list[str] | None = None):
        self.now = 0.0
        self.reads = 0
        self.log = log

    def __call__(self) -> float:
        self.reads += 1
        if self.log is not None:
            self.log.append("clock")
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Work:
    """A workload that advances the fake clock by `per_call` a call, and by `first` on its first call."""

    def __init__(self, clock: FakeClock, per_call: float = D, first: float | None = None, name: str = "run"):
        self.clock, self.per_call, self.first, self.name = clock, per_call, first, name
        self.calls = 0

    def __call__(self) -> None:
        duration = self.first if self.calls == 0 and self.first is not None else self.per_call
        self.calls += 1
        if self.clock.log is not None:
            self.clock.log.append(self.name)
        self.clock.advance(duration)


def calibrated(phase: Phase, clock: FakeClock, min_sample_s: float = 0.01, **kwargs) -> Timer:
    timer = Timer(phase, clock=clock)
    timer.first_call()
    timer.warmup()
    timer.calibrate(min_sample_s, **kwargs)
    return timer


@pytest.mark.parametrize("per_call, min_sample_s, expected", [
    (D, 0.01, 41),  # 40 calls last 9.77 ms, 41 last 10.01 ms
    (D, 8 * D, 8),  # exactly min_sample_s is long enough
    (D, 8 * D + 2.0**-30, 9),  # a hair more needs one more call
    (D, 0.0, 1),
    (D, D, 1),
    (2.0**-20, 0.01, 10486),  # 1 us calls: 1 -> 10 -> 100 -> 1000 -> 10000 (capped at x10) -> 10486
    (2.0**-6, 0.01, 1),  # one 15.6 ms call is already long enough
])
def test_calibrate_picks_the_smallest_count_that_reaches_min_sample_s(per_call, min_sample_s, expected):
    clock = FakeClock()
    timer = calibrated(Phase(Work(clock, per_call, first=FIRST)), clock, min_sample_s)
    assert timer.iters_per_sample == expected
    assert expected * per_call >= min_sample_s
    assert expected == 1 or (expected - 1) * per_call < min_sample_s
    assert timer.calibration_s == expected * per_call


def test_calibrate_returns_the_count_and_stops_at_max_iters():
    clock = FakeClock()
    timer = Timer(Phase(Work(clock)), clock=clock)
    timer.first_call()
    assert timer.calibrate(0.01, max_iters=25) == 25 == timer.iters_per_sample
    assert timer.calibration_s == 25 * D < 0.01


def test_calibrate_grows_at_most_tenfold_a_step():
    clock = FakeClock()
    work = Work(clock, 2.0**-20)
    timer = Timer(Phase(work), clock=clock)
    timer.first_call()
    timer.calibrate(0.01)
    # first call, then the counts tried: 1, 10, 100, 1000, 10000, 10486
    assert work.calls == 1 + 1 + 10 + 100 + 1000 + 10000 + 10486


def test_a_clock_too_coarse_to_see_a_call_still_calibrates():
    """Calls shorter than the clock's resolution measure 0 s: calibration grows by the cap."""
    clock = FakeClock()
    calls = []

    def run():  # the clock ticks by 1 ms every 100 calls
        calls.append(1)
        if len(calls) % 100 == 0:
            clock.advance(2.0**-10)

    timer = Timer(Phase(run), clock=clock)
    timer.first_call()
    iters = timer.calibrate(2.0**-7)  # 8 ticks
    assert iters >= 800
    assert timer.sample(1)[0] > 0


def test_samples_equal_the_per_call_duration_exactly():
    clock = FakeClock()
    timer = calibrated(Phase(Work(clock, first=FIRST)), clock)
    assert timer.sample(5) == [D] * 5
    assert timer.sample(3) == [D] * 3
    assert timer.samples_s == [D] * 8  # every round is kept


def test_a_slow_first_call_is_reported_apart_and_does_not_move_the_samples():
    clock = FakeClock()
    m = timing.measure(Phase(Work(clock, first=FIRST)), samples=10, clock=clock)
    assert m.first_call_s == FIRST
    assert m.samples_s == (D,) * 10
    assert m.stats().median == D and m.stats().max == D


def test_first_call_times_one_call():
    clock = FakeClock()
    work = Work(clock, first=FIRST)
    timer = Timer(Phase(work), clock=clock)
    assert timer.first_call() == FIRST == timer.first_call_s
    assert work.calls == 1


def test_prepare_is_excluded_from_the_samples():
    clock = FakeClock()
    run = Work(clock, first=FIRST)
    prepare = Work(clock, PREPARE, first=2 * FIRST, name="prepare")
    m = timing.measure(Phase(run, prepare=prepare), samples=4, min_sample_s=0.01, clock=clock)
    assert m.first_call_s == FIRST
    assert m.samples_s == (D,) * 4
    # calibration counts timed time only: prepare, 16 times longer, does not shorten the count
    assert m.iters_per_sample == 41
    assert prepare.calls == run.calls  # one prepare before each call of run, the first call included


def _assert_sync_before_every_clock_read(log: list[str]) -> None:
    reads = [i for i, event in enumerate(log) if event == "clock"]
    assert reads, "the clock was never read"
    assert all(i > 0 and log[i - 1] == "sync" for i in reads), log


def test_sync_comes_right_before_every_clock_read_without_prepare():
    log: list[str] = []
    clock = FakeClock(log)
    phase = Phase(Work(clock), sync=lambda: log.append("sync"))
    timer = calibrated(phase, clock)
    del log[:]
    timer.sample(2)
    _assert_sync_before_every_clock_read(log)
    # one pair of reads around the whole loop of a sample's calls
    iters = timer.iters_per_sample
    assert log == (["sync", "clock"] + ["run"] * iters + ["sync", "clock"]) * 2


def test_sync_comes_right_before_every_clock_read_with_prepare():
    log: list[str] = []
    clock = FakeClock(log)
    phase = Phase(Work(clock), prepare=Work(clock, PREPARE, name="prepare"), sync=lambda: log.append("sync"))
    timer = Timer(phase, clock=clock)
    timer.first_call()
    assert log == ["prepare", "sync", "clock", "run", "sync", "clock"]
    timer.warmup(2)
    timer.calibrate(4 * D)
    del log[:]
    timer.sample(1)
    # each call of run between its own pair of reads; prepare outside them
    assert log == ["prepare", "sync", "clock", "run", "sync", "clock"] * 4
    _assert_sync_before_every_clock_read(log)


def test_measure_syncs_before_every_clock_read_from_first_call_to_last_sample():
    log: list[str] = []
    clock = FakeClock(log)
    timing.measure(Phase(Work(clock, first=FIRST), sync=lambda: log.append("sync")), samples=3, clock=clock)
    _assert_sync_before_every_clock_read(log)
    log.clear()
    timing.measure(Phase(Work(clock, first=FIRST), prepare=Work(clock, PREPARE, name="prepare"),
                         sync=lambda: log.append("sync")), samples=3, clock=clock)
    _assert_sync_before_every_clock_read(log)


def test_warmup_makes_untimed_calls_and_counts_them():
    clock = FakeClock()
    work = Work(clock)
    timer = Timer(Phase(work), clock=clock)
    timer.first_call()
    timer.warmup(5)
    timer.warmup(0)
    assert work.calls == 6 and timer.warmup_calls == 5
    with pytest.raises(ValueError, match="negative"):
        timer.warmup(-1)


def test_steps_out_of_order_raise_a_clear_error():
    clock = FakeClock()
    work = Work(clock)
    timer = Timer(Phase(work), clock=clock)
    for step in (lambda: timer.sample(3), timer.warmup, timer.calibrate):
        with pytest.raises(RuntimeError, match=r"before first_call\(\)"):
            step()
    with pytest.raises(RuntimeError, match="before any sample"):
        timer.measurement()
    assert work.calls == 0  # nothing ran before the first call
    timer.first_call()
    with pytest.raises(RuntimeError, match="already called"):
        timer.first_call()
    with pytest.raises(RuntimeError, match=r"sample\(\) before calibrate\(\)"):
        timer.sample(3)
    timer.calibrate(0.01)
    with pytest.raises(ValueError, match="at least 1"):
        timer.sample(0)


def test_bad_arguments():
    clock = FakeClock()
    timer = Timer(Phase(Work(clock)), clock=clock)
    timer.first_call()
    with pytest.raises(ValueError, match="min_sample_s"):
        timer.calibrate(-1.0)
    with pytest.raises(ValueError, match="min_sample_s"):
        timer.calibrate(math.nan)
    with pytest.raises(ValueError, match="max_iters"):
        timer.calibrate(0.01, max_iters=0)
    with pytest.raises(TypeError, match="Phase"):
        Timer(lambda: None)
    with pytest.raises(TypeError, match="run must be callable"):
        Phase(42)
    with pytest.raises(TypeError, match="prepare"):
        Phase(lambda: None, prepare="forward")
    with pytest.raises(TypeError, match="sync"):
        Phase(lambda: None, sync=None)


def test_the_phase_errors_propagate():
    def broken():
        raise ZeroDivisionError("in the model")

    with pytest.raises(ZeroDivisionError, match="in the model"):
        timing.measure(Phase(broken))


def test_measure_records_how_and_the_raw_data():
    clock = FakeClock()
    m = timing.measure(Phase(Work(clock, first=FIRST), how="forward, one call"), samples=6, warmup=4,
                       min_sample_s=16 * D, clock=clock)
    assert m == Measurement((D,) * 6, 16, FIRST, 4, 16 * D, "forward, one call")
    assert m.to_dict() == {"samples_s": [D] * 6, "iters_per_sample": 16, "first_call_s": FIRST, "warmup_calls": 4,
                           "min_sample_s": 16 * D, "how": "forward, one call"}


def test_measurement_computes_stats_once_on_demand():
    m = Measurement((3.0, 1.0, 2.0), 1, 5.0, 3, 0.01)
    s = m.stats()
    assert s.median == 2.0 and s.n == 3
    assert m.stats() is s
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.iters_per_sample = 2


def test_measurement_validates_its_data():
    with pytest.raises(ValueError, match="at least one sample"):
        Measurement((), 1, 0.1, 3, 0.01)
    with pytest.raises(ValueError, match="iters_per_sample"):
        Measurement((1.0,), 0, 0.1, 3, 0.01)


def test_measure_with_the_real_clock_on_a_tiny_workload():
    x = np.arange(100, dtype=np.float64)
    m = timing.measure(Phase(lambda: x.sum(), how="sum of 100 float64"), samples=5, min_sample_s=0.001)
    assert len(m.samples_s) == 5
    assert all(s > 0 for s in m.samples_s)
    assert m.first_call_s > 0 and m.iters_per_sample >= 1 and m.warmup_calls == 3
    assert m.stats().median > 0


def test_validate_known_duration_returns_its_report():
    report = timing.validate_known_duration(target_s=0.0005, samples=3)
    assert set(report) == {"target_s", "median_s", "relative_error", "samples", "iters_per_sample", "first_call_s"}
    assert report["target_s"] == 0.0005 and report["samples"] == 3
    assert report["median_s"] > 0 and report["first_call_s"] > 0 and report["iters_per_sample"] >= 1
    assert math.isfinite(report["relative_error"])
    with pytest.raises(ValueError, match="target_s"):
        timing.validate_known_duration(target_s=0)
