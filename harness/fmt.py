"""The bottom floor of presentation: times, counts, numbers, contender labels and marks, as every
table, plot, report and command writes them. Pure functions over plain values; imports nothing of fwbench."""

from __future__ import annotations

import math

__all__ = ["NOISY_MARK", "UNVERIFIED_MARK", "fmt_time", "si", "num", "ratio", "contender_label", "marks"]

# The marks every table and plot of a report puts after a contender or a number.
NOISY_MARK = "~"  # its timing is noisy (harness.stats: CV or IQR past its threshold)
UNVERIFIED_MARK = "!"  # not verified: its check against the float64 reference failed or could not be made


def fmt_time(seconds: float | None) -> str:
    """Seconds per call as a person reads them: '812 ns', '45.6 µs', '1.23 ms', '2.05 s'; '-' for NaN."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale * 0.9995 or unit == "ns":  # 0.9999 ms is '1.00 ms', not '1000 µs'
            value = seconds / scale
            # three significant digits, trailing zeros kept: 35.0 ms, 227 µs, 1.20 s
            decimals = max(0, 2 - math.floor(math.log10(max(value, 1.0))))
            return f"{value:.{decimals}f} {unit}"
    raise AssertionError("unreachable")


def si(n: float) -> str:
    """27, 14.2k, 5.67M: a count a person reads at a glance."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def num(value: float | None, spec: str) -> str:
    """value formatted with spec, or '-' where there is none (None, NaN, infinite)."""
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def ratio(value: float) -> str:
    """A time relative to another: '1.30x'."""
    return f"{value:.2f}x"


def contender_label(framework: str, mode: str) -> str:
    """'torch eager', 'tensorflow function', 'jax jit': how every table and plot names a framework
    in a mode, the mode always said (an eager torch and a jit-compiled JAX are not the same race);
    the NumPy reference, which has one mode, is 'reference'."""
    return framework if framework == "reference" else f"{framework} {mode}"


def marks(noisy: bool | None, verified: bool | None) -> str:
    """'~' noisy, '!' not verified (a failed check, or one that could not be made; an unchecked
    cell, None, is not marked), both, or ''."""
    return (NOISY_MARK if noisy else "") + (UNVERIFIED_MARK if verified is False else "")
