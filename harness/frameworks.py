"""Which frameworks are installed, at which version, and why not when they are not.

Answers from package metadata, without importing the frameworks (importing TensorFlow alone takes
seconds), so `bench list` stays fast and works with NumPy alone.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

__all__ = ["FrameworkStatus", "FRAMEWORKS", "probe", "probe_all"]


@dataclass(frozen=True, slots=True)
class FrameworkStatus:
    name: str
    module: str
    available: bool
    version: str | None
    distribution: str | None
    reason: str  # why it is unavailable; empty when available


# name -> (module imported, distributions that provide it, the install hint)
FRAMEWORKS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "reference": ("reference_impl", ("numpy",), "it ships with fwbench; reinstall fwbench"),
    "torch": ("torch", ("torch",), "pip install -e '.[torch]' (README: CPU-only or CUDA)"),
    "tensorflow": (
        "tensorflow",
        ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly", "tf-nightly-cpu"),
        "pip install -e '.[tensorflow]' (or '.[tensorflow-cpu]')",
    ),
}


def probe(name: str) -> FrameworkStatus:
    """The status of one framework of FRAMEWORKS, from metadata only."""
    try:
        module, dists, hint = FRAMEWORKS[name]
    except KeyError:
        raise KeyError(f"unknown framework {name!r}; valid: {', '.join(FRAMEWORKS)}") from None
    found_module = importlib.util.find_spec(module) is not None
    for dist in dists:
        try:
            ver = version(dist)
        except PackageNotFoundError:
            continue
        if found_module:
            shown = f"numpy {ver}" if name == "reference" else ver
            return FrameworkStatus(name, module, True, shown, dist, "")
        return FrameworkStatus(name, module, False, ver, dist,
                               f"{dist} {ver} is installed but module {module!r} is not importable")
    return FrameworkStatus(name, module, False, None, None, f"not installed: {hint}")


def probe_all() -> list[FrameworkStatus]:
    return [probe(name) for name in FRAMEWORKS]
