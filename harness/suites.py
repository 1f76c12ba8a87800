"""Suites: what `bench run SUITE` measures, loaded from TOML and validated into frozen dataclasses.

A suite file (suites/README.md has the full description) names the axes of a benchmark; the cells
are their product, less the excluded combinations:

    name = "quick"                      # optional; defaults to the file's stem
    description = "what it is for, and how long it takes where"    # optional
    models = "all"                      # or a list of catalogue names (reference_impl.models)
    frameworks = "all"                  # or a list; "all" = every registered adapter, plugins included
    devices = ["cpu"]                   # cpu, cuda, cuda:N
    dtypes = ["float32"]                # float32, float64; or "all"
    modes = ["eager"]                   # or "all"; a framework runs those of its modes that are named;
                                        # "idiomatic": each framework's own training mode (jax jit, ...)
    batch_sizes = [1, 32]
    phases = ["forward", "forward_backward"]   # forward, backward, forward_backward, train_step; or "all"
    threads = [2]                       # one run per thread count (a sweep when several)
    verify = true                       # optional (default true): check each cell before timing it

    [timing]                            # optional; every key has a default
    passes = 3                          # independent passes: fresh workers, groups reshuffled, each
                                        # taking every cell's samples and rounds below once more
    samples = 10                        # samples per cell and pass, spread over `rounds` interleaved rounds
    rounds = 5                          # samples >= rounds; the first samples % rounds rounds get one more
    max_rounds = 10                     # optional: a cell still loose after `rounds` takes more, up to this,
    target_ci = 0.02                    #   until its pass median is known to within ±target_ci
    warmup = 3                          # warm-up calls after the first call
    min_sample_s = 0.005                # a sample lasts at least this long (iterations calibrated)
    cell_timeout_s = 120                # a cell (build, first call, all its samples) past this is a timeout
    cooldown_s = 0                      # idle before each round's request (idle workers are stopped meanwhile)
    budget_s = 110                      # optional: cells that would start after it are skipped

    [[exclude]]                         # optional, repeatable: a cell is left out when it matches
    models = ["mnist_cnn"]              # every key given (any of the eight axis keys, each a list)
    batch_sizes = [256]

Every problem is a SuiteError raised at load, before anything runs, naming the file, the key, the
bad value and the valid choices. (Past 400 lines on purpose: one file format and every message about
it, read top to bottom; the cell it expands into is harness.cells.Cell.) Frameworks that are
registered but cannot run here (not installed, no CUDA) are not errors: their cells stay in the
suite and the runner records them as skipped.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

from reference_impl import models as catalogue

from . import adapters
from .cells import DTYPES, PHASES, Cell, parse_device
from .errors import BadInput
from .timing import MIN_SAMPLE_S

__all__ = [
    "PHASES",
    "AXES",
    "SUITES_DIR",
    "SuiteError",
    "Timing",
    "Exclude",
    "Cell",
    "Suite",
    "framework_modes",
    "idiomatic_mode",
    "IDIOMATIC",
    "load",
    "available",
]


def _suites_dir(checkout: Path | None = None, bases: tuple[str | None, ...] | None = None) -> Path:
    """Where a bare suite name is looked up: the checkout's suites/ when fwbench runs from one (an
    editable install), else the copy a regular install puts in <prefix>/share/fwbench/suites
    (pyproject's data-files; under the user base for `pip install --user`)."""
    import site
    import sys

    checkout = checkout or Path(__file__).resolve().parents[1] / "suites"
    bases = (sys.prefix, site.USER_BASE) if bases is None else bases
    installed = [Path(base) / "share" / "fwbench" / "suites" for base in bases if base]
    return next((d for d in (checkout, *installed) if d.is_dir()), checkout)


SUITES_DIR = _suites_dir()

# The axes of a cell, in the order of Cell's fields; each is a list in a suite file.
AXES = ("models", "frameworks", "devices", "dtypes", "modes", "batch_sizes", "phases", "threads")
_TOP_KEYS = ("name", "description", *AXES, "verify", "timing", "exclude")
_OPTIONAL_KEYS = ("name", "description", "verify", "timing", "exclude")
_ALL_ALLOWED = ("models", "frameworks", "dtypes", "modes", "phases")  # the axes whose set of values is known
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# The mode a suite names to time each framework as its users train (Adapter.idiomatic_mode).
IDIOMATIC = "idiomatic"


class SuiteError(BadInput):
    """A suite that cannot be run as written. `source` is the file (or None), `key` the offending key."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        super().__init__(message, source=source, key=key)

    def at(self, source: str) -> SuiteError:
        """The same error, said to come from `source` (when it names no file yet)."""
        return self if self.source else SuiteError(self.message, source=source, key=self.key)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


@cache
def framework_modes(name: str) -> tuple[str, ...]:
    """The modes of the registered framework `name`.

    An adapter that cannot even be loaded (a broken plugin) is given ('eager',), the mode every
    adapter must have first: its cells stay in the suite and the runner records the load error.
    """
    try:
        return tuple(adapters.get(name).modes)
    except (ImportError, TypeError):
        return ("eager",)


@cache
def idiomatic_mode(name: str) -> str:
    """The mode the users of framework `name` train in (Adapter.idiomatic_mode); 'eager' for an
    adapter that cannot be loaded."""
    try:
        return adapters.get(name).idiomatic_mode
    except (ImportError, TypeError):
        return "eager"


def _all_modes(frameworks: Iterable[str]) -> tuple[str, ...]:
    """The union of the frameworks' modes, in the order first seen."""
    registered = adapters.names()
    return tuple(dict.fromkeys(mode for name in frameworks if name in registered for mode in framework_modes(name)))


def _valid_modes(frameworks: Iterable[str]) -> tuple[str, ...]:
    """What a suite's modes may name: the frameworks' modes, and IDIOMATIC."""
    return (*_all_modes(frameworks), IDIOMATIC)


# --------------------------------------------------------------------------------------------
# validating one axis: shared by Suite and Exclude


def _known(axis: str) -> tuple[str, ...]:
    """Every valid value of a named axis: what "all" means, and what a message lists."""
    if axis == "models":
        return tuple(catalogue.names())
    if axis == "frameworks":
        return tuple(adapters.names())
    if axis == "modes":
        return _valid_modes(adapters.names())
    if axis == "dtypes":
        return DTYPES
    if axis == "phases":
        return PHASES
    raise AssertionError(f"axis {axis!r} has no fixed set of values")


_FORM = {
    "models": "a list of model names",
    "frameworks": "a list of framework names",
    "devices": 'a list of devices, e.g. ["cpu"] or ["cuda:0"]',
    "dtypes": "a list of dtypes",
    "modes": "a list of modes",
    "batch_sizes": "a list of positive integers, e.g. [1, 32]",
    "phases": "a list of phases",
    "threads": "a list of positive integers, e.g. [2]",
}


def _check_axis(axis: str, values: Any, key: str) -> None:
    """Raise SuiteError (with `key`) unless `values` is a non-empty, duplicate-free tuple of good values."""
    if not isinstance(values, tuple):
        hint = ' or "all"' if axis in _ALL_ALLOWED else ""
        raise SuiteError(f"expected {_FORM[axis]}{hint}, got {values!r} ({type(values).__name__})", key=key)
    if not values:
        raise SuiteError(f"is empty; expected {_FORM[axis]}", key=key)
    if axis in ("batch_sizes", "threads"):
        for v in values:
            if not _is_int(v):
                raise SuiteError(f"expected {_FORM[axis]}, got {v!r} ({type(v).__name__})", key=key)
            if v < 1:
                raise SuiteError(f"{v} is not positive; expected {_FORM[axis]}", key=key)
    else:
        for v in values:
            if not isinstance(v, str):
                raise SuiteError(f"expected {_FORM[axis]}, got {v!r} ({type(v).__name__})", key=key)
        if axis == "devices":
            for v in values:
                try:
                    parse_device(v)
                except ValueError:
                    raise SuiteError(f"unknown device {v!r}; valid: cpu, cuda, cuda:N", key=key) from None
        else:
            known = _known(axis)
            for v in values:
                if v not in known:
                    what = axis.removesuffix("s").replace("_", " ")
                    raise SuiteError(f"unknown {what} {v!r}{_did_you_mean(v, known)}; valid: {', '.join(known)}",
                                     key=key)
    seen: set = set()
    for v in values:
        if v in seen:
            raise SuiteError(f"{v!r} is listed twice", key=key)
        seen.add(v)


# --------------------------------------------------------------------------------------------
# the dataclasses


@dataclass(frozen=True, slots=True)
class Timing:
    """How each cell is timed: in `passes` independent passes (fresh worker processes, the groups in a
    new order), each of `samples` samples spread over `rounds` rounds interleaved across frameworks."""

    samples: int = 10
    rounds: int = 5
    passes: int = 3
    warmup: int = 3
    min_sample_s: float = MIN_SAMPLE_S
    cell_timeout_s: float = 120.0
    budget_s: float | None = None
    # Budgets: after its `rounds`, a cell that is still loose takes more rounds in the pass, up to
    # max_rounds, until its pass median is known to within ±target_ci (a t interval over its round
    # medians). The rule looks at the cell's own spread only, never at a difference with another
    # cell (sampling until a difference turns significant would bias every verdict).
    max_rounds: int | None = None  # None: no more than `rounds`
    target_ci: float = 0.02
    # Idle time before each round's request to a worker. The other workers are stopped (SIGSTOP)
    # while one is timed, so their thread pools cannot spin on its cores: measured, a spinning
    # neighbour costs nothing then (tests/harness/test_quiet.py), and the default is no wait.
    cooldown_s: float = 0.0

    def __post_init__(self):
        for name in ("samples", "rounds", "passes"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise SuiteError(f"expected a positive integer, got {value!r}", key=f"timing.{name}")
        if not _is_int(self.warmup) or self.warmup < 0:
            raise SuiteError(f"expected an integer >= 0, got {self.warmup!r}", key="timing.warmup")
        for name in ("min_sample_s", "cell_timeout_s", "budget_s"):
            value = getattr(self, name)
            if name == "budget_s" and value is None:
                continue
            if not _is_number(value) or value <= 0:
                raise SuiteError(f"expected a positive number of seconds, got {value!r}", key=f"timing.{name}")
        if not _is_number(self.cooldown_s) or self.cooldown_s < 0:
            raise SuiteError(f"expected a number of seconds >= 0, got {self.cooldown_s!r}", key="timing.cooldown_s")
        if self.max_rounds is not None and (not _is_int(self.max_rounds) or self.max_rounds < self.rounds):
            raise SuiteError(f"expected an integer >= rounds ({self.rounds}), got {self.max_rounds!r}",
                             key="timing.max_rounds")
        if not _is_number(self.target_ci) or not 0 < self.target_ci < 1:
            raise SuiteError(f"expected a fraction between 0 and 1 (0.02: ±2%), got {self.target_ci!r}",
                             key="timing.target_ci")
        if self.samples < self.rounds:
            raise SuiteError(f"{self.samples} samples cannot fill {self.rounds} rounds: samples must be >= rounds "
                             f"(lower rounds or raise samples)", key="timing.samples")

    @property
    def round_sizes(self) -> tuple[int, ...]:
        """Samples taken in each round: as even as possible, the first rounds one more when uneven."""
        base, extra = divmod(self.samples, self.rounds)
        return tuple(base + (i < extra) for i in range(self.rounds))

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("budget_s", "max_rounds"):
            if out[name] is None:
                del out[name]  # TOML has no null: absent is the default
        return out


@dataclass(frozen=True, slots=True)
class Exclude:
    """Cells to leave out: those matching every axis given (None = any value of that axis)."""

    models: tuple[str, ...] | None = None
    frameworks: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None
    dtypes: tuple[str, ...] | None = None
    modes: tuple[str, ...] | None = None
    batch_sizes: tuple[int, ...] | None = None
    phases: tuple[str, ...] | None = None
    threads: tuple[int, ...] | None = None

    def __post_init__(self):
        given = self.given()
        if not given:
            raise SuiteError(f"excludes nothing: give at least one of {', '.join(AXES)}", key="exclude")
        for axis, values in given.items():
            _check_axis(axis, values, f"exclude.{axis}")

    def given(self) -> dict[str, tuple]:
        return {axis: getattr(self, axis) for axis in AXES if getattr(self, axis) is not None}

    def matches(self, cell: Cell) -> bool:
        return all(getattr(cell, _CELL_FIELD[axis]) in values for axis, values in self.given().items())


_CELL_FIELD = {"models": "model", "frameworks": "framework", "devices": "device", "dtypes": "dtype",
               "modes": "mode", "batch_sizes": "batch_size", "phases": "phase", "threads": "threads"}


@dataclass(frozen=True, slots=True)
class Suite:
    """A validated suite: every axis a tuple of names or numbers, "all" already expanded."""

    name: str
    description: str
    path: Path | None
    models: tuple[str, ...]
    frameworks: tuple[str, ...]
    devices: tuple[str, ...]
    dtypes: tuple[str, ...]
    modes: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    phases: tuple[str, ...]
    threads: tuple[int, ...]
    verify: bool = True
    timing: Timing = field(default_factory=Timing)
    excludes: tuple[Exclude, ...] = ()

    def __post_init__(self):
        source = str(self.path) if self.path is not None else None
        try:
            self._validate()
        except SuiteError as e:
            if source is None:
                raise
            raise e.at(source) from None

    def _validate(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise SuiteError(f"expected letters, digits, '_', '-' or '.', got {self.name!r}", key="name")
        if not isinstance(self.description, str):
            raise SuiteError(f"expected a string, got {self.description!r}", key="description")
        for axis in AXES:
            if axis != "modes":
                _check_axis(axis, getattr(self, axis), axis)
        _check_axis("modes", self.modes, "modes")
        # A mode must belong to at least one selected framework, else it names nothing.
        selected = _valid_modes(self.frameworks)
        for mode in self.modes:
            if mode not in selected:
                raise SuiteError(f"mode {mode!r} belongs to none of the frameworks {', '.join(self.frameworks)}; "
                                 f"valid: {', '.join(selected)}", key="modes")
        if not isinstance(self.verify, bool):
            raise SuiteError(f"expected true or false, got {self.verify!r}", key="verify")
        if not isinstance(self.timing, Timing):
            raise SuiteError(f"expected a Timing, got {self.timing!r}", key="timing")
        if not isinstance(self.excludes, tuple) or not all(isinstance(e, Exclude) for e in self.excludes):
            raise SuiteError(f"expected a tuple of Exclude, got {self.excludes!r}", key="exclude")
        if not self.cells():
            raise SuiteError("the excludes leave no cell to run", key="exclude")

    def modes_for(self, framework: str) -> tuple[str, ...]:
        """The suite's modes that `framework` has, in the framework's own order; with IDIOMATIC among
        them, the framework's idiomatic mode too."""
        idiomatic = idiomatic_mode(framework) if IDIOMATIC in self.modes else None
        return tuple(m for m in framework_modes(framework) if m in self.modes or m == idiomatic)

    def cells(self) -> list[Cell]:
        """Every cell, excludes removed, in run order: by threads, model, batch size, phase, dtype,
        device, then framework and mode (each axis in the suite's order), so that consecutive cells
        belong to different frameworks and drift is shared among them."""
        out = []
        for threads in self.threads:
            for model in self.models:
                for batch in self.batch_sizes:
                    for phase in self.phases:
                        for dtype in self.dtypes:
                            for device in self.devices:
                                for framework in self.frameworks:
                                    for mode in self.modes_for(framework):
                                        cell = Cell(model, framework, device, dtype, mode, batch, phase, threads)
                                        if not any(e.matches(cell) for e in self.excludes):
                                            out.append(cell)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The suite in the file format, every value resolved ("all" expanded): from_dict reads it back."""
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        out.update({axis: list(getattr(self, axis)) for axis in AXES})
        out["verify"] = self.verify
        out["timing"] = self.timing.to_dict()
        if self.excludes:
            out["exclude"] = [{axis: list(v) for axis, v in e.given().items()} for e in self.excludes]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<suite>", path: Path | None = None,
                  default_name: str | None = None) -> Suite:
        """A suite from the file format's data (a parsed TOML document, or to_dict()'s output).
        `source` names where it came from in error messages."""
        return _parse(data, source, path, default_name)


# --------------------------------------------------------------------------------------------
# parsing


def _unknown_keys(data: Mapping[str, Any], valid: tuple[str, ...], key: str | None, source: str) -> None:
    for k in data:
        if k not in valid:
            raise SuiteError(f"unknown key {k!r}{_did_you_mean(k, valid)}; valid keys: {', '.join(valid)}",
                             source=source, key=key)


def _axis_value(axis: str, value: Any, frameworks: tuple[str, ...] | None) -> Any:
    """A file's value of an axis as a tuple, "all" expanded; anything else passed on for validation."""
    if value == "all" and axis in _ALL_ALLOWED:
        if axis == "modes":
            return _all_modes(frameworks) if isinstance(frameworks, tuple) else _known(axis)
        return _known(axis)
    return tuple(value) if isinstance(value, list) else value


def _parse(data: Mapping[str, Any], source: str, path: Path | None, default_name: str | None) -> Suite:
    if not isinstance(data, Mapping):
        raise SuiteError(f"expected a table of keys, got {type(data).__name__}", source=source)
    _unknown_keys(data, _TOP_KEYS, None, source)
    missing = [k for k in _TOP_KEYS if k not in data and k not in _OPTIONAL_KEYS]
    if missing:
        raise SuiteError(f"missing key{'s' * (len(missing) > 1)} {', '.join(map(repr, missing))}; every suite "
                         f"names {', '.join(AXES)}", source=source)
    name = data.get("name", default_name)
    if name is None:
        raise SuiteError("missing key 'name' (a suite not read from a file has no stem to default to)",
                         source=source)

    try:
        frameworks = _axis_value("frameworks", data["frameworks"], None)
        axes = {axis: _axis_value(axis, data[axis], frameworks) for axis in AXES}

        raw_timing = data.get("timing", {})
        if not isinstance(raw_timing, Mapping):
            raise SuiteError(f"expected a [timing] table, got {raw_timing!r}", key="timing")
        timing_keys = tuple(f.name for f in fields(Timing))
        _unknown_keys(raw_timing, timing_keys, "timing", source)
        timing = Timing(**raw_timing)

        raw_excludes = data.get("exclude", [])
        if not isinstance(raw_excludes, list) or not all(isinstance(e, Mapping) for e in raw_excludes):
            raise SuiteError(f"expected [[exclude]] tables, got {raw_excludes!r}", key="exclude")
        excludes = []
        for i, raw in enumerate(raw_excludes, 1):
            where = f"exclude[{i}]"  # numbered from 1, as a person counts the [[exclude]] tables
            _unknown_keys(raw, AXES, where, source)
            try:
                excludes.append(Exclude(**{axis: _axis_value(axis, v, frameworks) for axis, v in raw.items()}))
            except SuiteError as e:
                raise SuiteError(e.message, key=(e.key or "exclude").replace("exclude", where, 1)) from None

        return Suite(name=name, description=data.get("description", ""), path=path, **axes,
                     verify=data.get("verify", True), timing=timing, excludes=tuple(excludes))
    except SuiteError as e:
        raise e.at(source) from None


def available(directory: Path | None = None) -> list[str]:
    """The bare names of the suites in `directory` (default: SUITES_DIR), sorted."""
    directory = SUITES_DIR if directory is None else Path(directory)
    return sorted(p.stem for p in directory.glob("*.toml") if p.is_file())


def load(name_or_path: str | Path, *, directory: Path | None = None) -> Suite:
    """The suite in a .toml file, or the one called `name_or_path` in `directory` (default: SUITES_DIR).

    A value naming an existing file is that file; a bare name (no suffix, no folder) is looked up
    as `<directory>/<name>.toml`. Raises SuiteError for every problem, naming the file and key.
    """
    directory = SUITES_DIR if directory is None else Path(directory)
    given = Path(name_or_path)
    if given.is_file():
        path = given
    elif len(given.parts) == 1 and given.suffix != ".toml" and given.name not in ("", ".", ".."):
        path = directory / f"{given.name}.toml"
        if not path.is_file():
            names = available(directory)
            raise SuiteError(f"no suite named {str(name_or_path)!r} in {directory}"
                             f"{_did_you_mean(str(name_or_path), names)}; available: "
                             f"{', '.join(names) or '(none)'}; or give the path to a .toml file")
    else:
        names = available(directory)
        raise SuiteError(f"suite file {str(name_or_path)!r} does not exist; available suites: "
                         f"{', '.join(names) or '(none)'} (in {directory})")
    source = str(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(f"invalid TOML: {e}", source=source) from e
    except UnicodeDecodeError as e:
        raise SuiteError(f"not UTF-8 text: {e}", source=source) from e
    except OSError as e:
        raise SuiteError(f"cannot read: {e}", source=source) from e
    return _parse(data, source, path, default_name=path.stem)
