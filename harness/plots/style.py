"""How contenders look in every plot: a colour per framework, a shade and marker per variant, and the marks."""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.colors import to_hex, to_rgb
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .. import results
from ..fmt import NOISY_MARK, UNVERIFIED_MARK
from ..levels import NOISY_DETECTABLE
from . import data

__all__ = [
    "RED",
    "DEVICE_LINESTYLES",
    "framework_color",
    "darker",
    "Style",
    "styles",
    "styles_of",
    "Marks",
    "red_cross",
]

# Fixed colours for the frameworks fwbench knows; any other (a plugin) gets one of _OTHER_COLORS by a
# hash of its name, the same in every plot and every run. Red is kept for failed checks.
_FRAMEWORK_COLORS = {"reference": "#5f5f5f", "torch": "#ee7d1a", "tensorflow": "#1f77b4", "jax": "#2ca02c",
                     "keras-jax": "#17becf", "keras-torch": "#9467bd"}
_OTHER_COLORS = ("#8c564b", "#e377c2", "#bcbd22", "#7f7f00", "#393b79", "#e7969c", "#637939")
RED = "#d62728"
_MARKERS = ("o", "s", "^", "D", "P", "X", "*")  # 'v' is kept for exact zeros in the equivalence plot
DEVICE_LINESTYLES = ("-", "--", ":", "-.")


def framework_color(framework: str) -> str:
    """The colour of a framework in every plot: fixed for the built-ins, a stable pick for plugins."""
    if framework in _FRAMEWORK_COLORS:
        return _FRAMEWORK_COLORS[framework]
    return _OTHER_COLORS[zlib.crc32(framework.encode()) % len(_OTHER_COLORS)]


def _shade(color: str, variant: int) -> str:
    """The framework's colour for its n-th contender: the colour, then darker and lighter shades."""
    if variant == 0:
        return color
    rgb = np.array(to_rgb(color))
    amount = 0.25 * ((variant + 1) // 2)
    target = np.zeros(3) if variant % 2 else np.ones(3)
    return to_hex(rgb + (target - rgb) * min(amount, 0.7))


def darker(color: str) -> str:
    rgb = np.array(to_rgb(color))
    return to_hex(rgb * 0.65)


class Style(NamedTuple):
    color: str
    marker: str


def styles(cells: pd.DataFrame) -> dict[str, Style]:
    """A colour per framework, shaded and given another marker for each further mode or dtype of it."""
    return styles_of(data.contenders(cells)) if "contender" in cells.columns else {}


def styles_of(contenders: Iterable[data.Contender]) -> dict[str, Style]:
    seen: dict[str, int] = {}
    styles = {}
    for c in contenders:
        variant = seen.get(c.framework, 0)
        seen[c.framework] = variant + 1
        styles[c.name] = Style(_shade(framework_color(c.framework), variant), _MARKERS[variant % len(_MARKERS)])
    return styles


# ------------------------------------------------------------------------------------------------
# the marks: noisy and unverified cells, drawn the same way in every plot


# how each kind of plot draws the marks, as its caption says it: (noisy, unverified)
_CAPTION_HOW = {"bar": ("Hatched bars mark", f"A red edge and '{UNVERIFIED_MARK}'"),
                "point": ("Hollow markers mark", "A red cross"),
                "text": (f"A '{NOISY_MARK}' after a number marks", f"A red '{UNVERIFIED_MARK}' after a number")}


@dataclass
class Marks:
    """Draws the marks of a cell and remembers what it drew, for the legend and the caption.

    Noisy (harness.levels: a 95% CI wider than ±NOISY_DETECTABLE of the median): a hatched bar, a hollow
    marker, '~' after a number. Not verified (its check failed, or could not be made): a red edge and '!' over a
    bar, a red cross behind a marker, '!' in red after a number. A tensor beyond its tolerance in the
    equivalence plot gets the same red cross.
    """

    noisy: int = 0
    unverified: int = 0
    kind: str = ""  # 'bar', 'point' or 'text': how this plot draws its cells

    @staticmethod
    def is_noisy(row) -> bool:
        return results.flag(row["noisy"]) is True

    @staticmethod
    def is_unverified(row) -> bool:
        return results.flag(row["verified"]) is False

    def _count(self, row, kind: str) -> tuple[bool, bool]:
        self.kind = kind
        noisy, unverified = self.is_noisy(row), self.is_unverified(row)
        self.noisy += noisy
        self.unverified += unverified
        return noisy, unverified

    def bar(self, ax, bar, row, top: float = math.nan) -> None:
        """Mark a bar; top is where its whisker ends, so that the '!' sits above it."""
        noisy, unverified = self._count(row, "bar")
        if noisy:
            bar.set_hatch("//")
        if unverified:
            bar.set_edgecolor(RED)
            bar.set_linewidth(2.0)
            x = bar.get_x() + bar.get_width() / 2
            y = max(bar.get_height(), top) if math.isfinite(top) else bar.get_height()
            ax.annotate(UNVERIFIED_MARK, (x, y), xytext=(0, 2), textcoords="offset points", ha="center",
                        va="bottom", color=RED, fontweight="bold", fontsize=12, zorder=5)

    def point(self, ax, x, y, row, style: Style) -> None:
        noisy, unverified = self._count(row, "point")
        ax.plot(x, y, marker=style.marker, markersize=6, linestyle="none", zorder=3, color=style.color,
                markerfacecolor="white" if noisy else style.color, markeredgewidth=1.4 if noisy else 0.5,
                markeredgecolor=style.color if noisy else darker(style.color))
        if unverified:
            red_cross(ax, x, y)

    def suffix(self, row) -> str:
        """'~' noisy, '!' unverified: what follows a number (the report's tables write the same)."""
        noisy, unverified = self._count(row, "text")
        return (NOISY_MARK if noisy else "") + (UNVERIFIED_MARK if unverified else "")

    def handles(self) -> list:
        found = []
        if self.noisy:
            label = f"noisy: 95% CI wider than ±{NOISY_DETECTABLE:.0%}"
            if self.kind == "bar":
                found.append(Patch(facecolor="white", edgecolor="#333333", hatch="//", label=label))
            elif self.kind == "point":
                found.append(Line2D([], [], marker="o", markerfacecolor="white", markeredgecolor="#333333",
                                    markeredgewidth=1.4, linestyle="none", label=label))
            else:
                found.append(Patch(facecolor="none", edgecolor="none", label=f"{NOISY_MARK}  {label}"))
        if self.unverified:
            label = "not verified against the reference"
            if self.kind == "bar":
                found.append(Patch(facecolor="white", edgecolor=RED, linewidth=2,
                                   label=f"red edge, {UNVERIFIED_MARK}: {label}"))
            elif self.kind == "point":
                found.append(Line2D([], [], marker="x", color=RED, markeredgewidth=2, markersize=9,
                                    linestyle="none", label=label))
            else:
                found.append(Patch(facecolor="white", edgecolor=RED, label=f"{UNVERIFIED_MARK}  {label}"))
        return found

    def caption(self) -> str:
        found = ""
        how = _CAPTION_HOW.get(self.kind, ("", ""))
        if self.noisy:
            found += (f" {how[0]} noisy timings (95% CI wider than ±{NOISY_DETECTABLE:.0%}): "
                      "the median stands, but the spread says the machine was busy.")
        if self.unverified:
            found += (f" {how[1]} marks a contender not verified against the float64 reference: it was timed, but "
                      "its check failed, or could not be made (the report's summary says which, and why).")
        return found


def red_cross(ax, x, y) -> None:
    """A large red cross behind a marker (zorder 3), so that the marker's colour still shows in its middle."""
    ax.plot(x, y, marker="x", markersize=13, markeredgewidth=2.2, color=RED, linestyle="none", zorder=2.9)
