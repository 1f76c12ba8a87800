"""Measuring only: time a phase's calls into raw samples of seconds per call, with a sync before each clock read.

Why it is done this way:

- A sync before every clock read. Accelerators run asynchronously: a call returns once its work is
  queued, not done, so a clock read right after it times the queueing. `Phase.sync` waits for the
  device (torch.cuda.synchronize, tf.test.experimental.sync_devices, JAX block_until_ready) and the
  Timer calls it immediately before each read, so that every read sees all earlier work finished.
  Reading a result back (`.numpy()`, `.item()`) is not a sync: it waits at most for the work that one
  tensor depends on, and adds a device-to-host copy that would then be timed as well.
- Calibration. A clock has a resolution and each read has a cost (time.perf_counter: tens of
  nanoseconds; a device sync: microseconds), so a call of a few microseconds timed alone measures
  mostly the clock. A sample therefore times `iters_per_sample` calls, enough that it lasts at least
  `min_sample_s`, and divides by their number: every sample is in seconds per call.
- The first call apart. The first call traces, compiles, autotunes and allocates (tf.function, XLA,
  torch.compile, cudnn.benchmark), and can be slower than later calls by orders of magnitude. It is
  timed alone and reported as `first_call_s`; warm-up calls follow; neither enters the samples.
- prepare. Some work can only be timed after other work that must not be counted: a backward pass
  needs the graph of a forward pass, and consumes it, so each backward needs a fresh forward.
  `Phase.prepare` runs before each call of `run`, and the clock is read around `run` alone.

What a sample means, exactly: without prepare, one pair of clock reads encloses the loop of
`iters_per_sample` calls (sync, read, run × iters, sync, read) and the sample is that time divided by
iters. With prepare, every call is enclosed by its own pair (prepare, sync, read, run, sync, read),
the per-call times are summed and divided by iters: each call then carries one sync and one clock
read of overhead, which the sample includes. Calibration counts only the timed part, so with
prepare a sample's wall time is longer than `min_sample_s` by the prepares.

A worker drives a `Timer` step by step (first_call, warmup, calibrate, then sample in as many
interleaved rounds as the parent asks for); `measure` does all of it in one go.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from .cells import Measurement

__all__ = ["Phase", "Timer", "Measurement", "measure", "validate_known_duration", "MIN_SAMPLE_S"]

# The one default length of a sample, everywhere (Timing, Timer.calibrate, measure). Why 5 ms: a
# clock read costs ~50 ns and a device sync a few microseconds, under 0.1% of it; a sample spans
# at least one scheduler tick (4 ms at CONFIG_HZ=250), so one preemption by another process spoils a
# sample's worth of calls and not a whole run of them; and a quick suite of 216 cells x 3 passes x
# 6 samples still takes under 20 s of sampling. Shorter samples were noisier here (round spread
# 8-15% at 2 ms), longer ones buy fewer rounds in the same time.
MIN_SAMPLE_S = 0.005

# Calibration grows the number of calls per sample by at most this factor a step, so that one
# measurement made too short by noise or by the clock's resolution cannot send it far past its goal.
_MAX_GROWTH = 10


def _no_sync() -> None:
    """The sync of a phase that runs synchronously (CPU): nothing to wait for."""


@dataclass(frozen=True, slots=True)
class Phase:
    """What to time, and how.

    run: the timed work, one call (e.g. one forward pass).
    prepare: untimed work done before each call of run (e.g. the forward pass whose graph a timed
        backward pass consumes); None when there is none.
    sync: waits until the device has finished all work queued so far; called before every clock read.
    how: a sentence recorded with the results: how this phase is measured.
    readback: given what one call of run returned, the tensors that call computed, as host NumPy
        arrays in the canonical layout and names (docs/adapters.md, "What a timed phase hands
        back"): 'output' (forward), 'loss' and 'grad:<param>' (forward_backward, backward), and
        'param:<name>', the parameters after the call (train_step, with its 'loss' when run returns
        it). `bench run` calls it once, untimed, after the first call, and compares what the timed
        code computed with the float64 reference; None: the phase cannot hand its result back, and
        its cell is unverified.
    """

    run: Callable[[], object]
    prepare: Callable[[], object] | None = None
    sync: Callable[[], None] = _no_sync
    how: str = ""
    readback: Callable[[object], dict] | None = None

    def __post_init__(self) -> None:
        if not callable(self.run):
            raise TypeError(f"Phase.run must be callable with no arguments, got {type(self.run).__name__}")
        if self.prepare is not None and not callable(self.prepare):
            raise TypeError(f"Phase.prepare must be callable or None, got {type(self.prepare).__name__}")
        if self.readback is not None and not callable(self.readback):
            raise TypeError(f"Phase.readback must be callable or None, got {type(self.readback).__name__}")
        if not callable(self.sync):
            raise TypeError(f"Phase.sync must be callable with no arguments, got {type(self.sync).__name__}; "
                            "for CPU work leave the default, which waits for nothing")


class Timer:
    """Times the calls of one Phase, in the steps a worker process drives.

    The order is fixed: first_call() once, first of all; then warmup() and calibrate(); then sample(k)
    as many times as wanted (one call per interleaved round). Every sample taken is also kept in
    `samples_s`, and measurement() returns them all. Exceptions raised by the phase propagate.

    clock: a function returning seconds (default time.perf_counter); tests inject a fake one.
    """

    def __init__(self, phase: Phase, *, clock: Callable[[], float] = time.perf_counter) -> None:
        if not isinstance(phase, Phase):
            raise TypeError(f"Timer needs a Phase, got {type(phase).__name__}: wrap the work as Phase(run=...)")
        self.phase = phase
        self.clock = clock
        self.first_call_s: float | None = None
        self.warmup_calls = 0
        self.iters_per_sample: int | None = None
        self.min_sample_s: float | None = None
        self.calibration_s: float | None = None  # timed seconds of the last calibration measurement
        self.samples_s: list[float] = []
        self.first_result: object = None  # what the first call of run returned, for Phase.readback

    def _time(self, iters: int) -> float:
        """Seconds spent in `iters` calls of run; prepare's time is excluded."""
        run, prepare, sync, clock = self.phase.run, self.phase.prepare, self.phase.sync, self.clock
        if prepare is None:
            sync()
            start = clock()
            for _ in range(iters):
                run()
            sync()
            return clock() - start
        total = 0.0
        for _ in range(iters):
            prepare()
            sync()  # this sync also makes prepare's queued device work finish before the clock starts
            start = clock()
            run()
            sync()
            total += clock() - start
        return total

    def _require_first_call(self, step: str) -> None:
        if self.first_call_s is None:
            raise RuntimeError(f"Timer.{step}() before first_call(): the first call (compilation, tracing) "
                               "must come first and be timed apart; call first_call(), or use measure()")

    def first_call(self) -> float:
        """Time the very first call of run alone, compilation and tracing included; once, before anything else."""
        if self.first_call_s is not None:
            raise RuntimeError("Timer.first_call() was already called: there is one first call; "
                               "use warmup() or sample() for more calls")
        phase, clock = self.phase, self.clock
        if phase.prepare is not None:
            phase.prepare()
        phase.sync()
        start = clock()
        # Kept for the first call only: holding every call's result would keep two outputs alive
        # at once, which is not what the phase's own loop does.
        self.first_result = phase.run()
        phase.sync()
        self.first_call_s = clock() - start
        return self.first_call_s

    def readback(self) -> dict | None:
        """What the first call computed (Phase.readback of its result), or None when the phase has
        no readback; untimed, after first_call, once: the result is let go (it may be large)."""
        self._require_first_call("readback")
        result, self.first_result = self.first_result, None
        if self.phase.readback is None:
            return None
        return self.phase.readback(result)

    def warmup(self, calls: int = 3) -> None:
        """Make `calls` untimed calls (they go through the same path as samples, syncs included)."""
        self._require_first_call("warmup")
        if calls < 0:
            raise ValueError(f"warm-up calls cannot be negative, got {calls}")
        if calls:
            self._time(calls)
        self.warmup_calls += calls

    def calibrate(self, min_sample_s: float = MIN_SAMPLE_S, max_iters: int = 10**6) -> int:
        """Choose the number of calls per sample so that one sample lasts at least `min_sample_s`.

        Starts at 1 call and measures real calls; after each measurement short of min_sample_s the
        next count is the one predicted to reach it (iters * min_sample_s / elapsed, rounded up),
        growing by at least one call and at most x10 a step. The count whose measurement reached
        min_sample_s, or max_iters if none did below it, becomes `iters_per_sample` and is returned.
        With a workload of constant duration d this is the smallest count n with n * d >= min_sample_s.
        """
        self._require_first_call("calibrate")
        if not (math.isfinite(min_sample_s) and min_sample_s >= 0):
            raise ValueError(f"min_sample_s must be a finite number of seconds >= 0, got {min_sample_s}")
        if max_iters < 1:
            raise ValueError(f"max_iters must be at least 1, got {max_iters}")
        iters = 1
        while True:
            elapsed = self._time(iters)
            if elapsed >= min_sample_s or iters >= max_iters:
                break
            # elapsed can be 0 when the calls are shorter than the clock's resolution: grow by the cap.
            wanted = math.ceil(iters * min_sample_s / elapsed) if elapsed > 0 else iters * _MAX_GROWTH
            iters = min(max_iters, max(iters + 1, min(wanted, iters * _MAX_GROWTH)))
        self.iters_per_sample = iters
        self.min_sample_s = min_sample_s
        self.calibration_s = elapsed
        return iters

    def pin(self, iters_per_sample: int, min_sample_s: float) -> int:
        """Use `iters_per_sample` calls per sample instead of calibrating: a later pass of a run, or a run
        pinned to another's calibration (`bench run --loops-from`), so that its samples are comparable."""
        self._require_first_call("pin")
        if not isinstance(iters_per_sample, int) or iters_per_sample < 1:
            raise ValueError(f"iters_per_sample must be a positive integer, got {iters_per_sample!r}")
        self.iters_per_sample, self.min_sample_s = iters_per_sample, min_sample_s
        return iters_per_sample

    def sample(self, k: int) -> list[float]:
        """Take k samples, each the seconds per call over iters_per_sample calls; returns them and keeps them."""
        if self.iters_per_sample is None:
            self._require_first_call("sample")
            raise RuntimeError("Timer.sample() before calibrate(): the number of calls per sample is not chosen "
                               "yet; call calibrate(min_sample_s) first, or use measure()")
        if k < 1:
            raise ValueError(f"the number of samples must be at least 1, got {k}")
        iters = self.iters_per_sample
        taken = [self._time(iters) / iters for _ in range(k)]
        self.samples_s.extend(taken)
        return taken

    def measurement(self) -> Measurement:
        """Every sample taken so far, with how they were taken."""
        if not self.samples_s:
            raise RuntimeError("Timer.measurement() before any sample: call sample(k) first, or use measure()")
        assert self.first_call_s is not None and self.iters_per_sample is not None and self.min_sample_s is not None
        return Measurement(tuple(self.samples_s), self.iters_per_sample, self.first_call_s, self.warmup_calls,
                           self.min_sample_s, self.phase.how)


def measure(phase: Phase, *, samples: int = 20, warmup: int = 3, min_sample_s: float = MIN_SAMPLE_S,
            max_iters: int = 10**6, clock: Callable[[], float] = time.perf_counter) -> Measurement:
    """First call, warm-up, calibration and `samples` samples of one phase, in one process and one go.

    For comparisons between frameworks, workers drive a Timer in interleaved rounds instead.
    """
    timer = Timer(phase, clock=clock)
    timer.first_call()
    timer.warmup(warmup)
    timer.calibrate(min_sample_s, max_iters)
    timer.sample(samples)
    return timer.measurement()


def validate_known_duration(target_s: float = 0.002, samples: int = 15) -> dict:
    """Measure a workload of known duration and say how far the measured median is from it.

    The workload busy-waits on time.perf_counter until target_s has passed (time.sleep overshoots by
    tens of microseconds to milliseconds, depending on the OS timer). Returns target_s,
    median_s, relative_error = (median_s - target_s) / target_s (signed: positive when the measurement
    is longer), and how it was measured. `bench selftest` passes when |relative_error| <= 2%.
    """
    if not (math.isfinite(target_s) and target_s > 0):
        raise ValueError(f"target_s must be a positive number of seconds, got {target_s}")
    clock = time.perf_counter

    def spin() -> None:
        end = clock() + target_s
        while clock() < end:
            pass

    # One call per sample (a call of target_s is long against perf_counter's resolution): when another
    # process takes the CPU during a call, that call alone is longer, and the median discards it. With
    # several calls per sample the time taken would be spread over every sample the preemption touches.
    m = measure(Phase(spin, how=f"busy-wait of {target_s} s on time.perf_counter, one call per sample"),
                samples=samples, min_sample_s=target_s, clock=clock)
    median = m.stats().median
    return {"target_s": target_s, "median_s": median, "relative_error": (median - target_s) / target_s,
            "samples": len(m.samples_s), "iters_per_sample": m.iters_per_sample, "first_call_s": m.first_call_s}
