"""`bench noise`: an A/A calibration of this machine, the floor under `bench compare`'s threshold.

Two runs of the same code on a shared machine differ by more than either run's own spread says:
the machine itself changes between them (other tenants, clock speed, the host a VM landed on).
Statistics inside a run cannot see that (Kalibera and Jones call it the level above the ones
repeated), so it is measured: the suite is run several times, unchanged, and for every pair of
runs and every cell the ratio of medians is taken. Per kind of cell (framework, phase, device: a
TensorFlow train step varies more than a NumPy forward pass), the 95% quantile of |log ratio| is
the change that identical code shows once in twenty comparisons: the floor. `bench compare` never
calls a cell slower or faster by less than its kind's floor on the machine where it was measured.

`bench compare --relative-to F` compares each cell's times divided by framework F's in the same
rounds (harness.relative), which cancels what the machine did to every framework alike; its floors
are measured the same way, on those ratios, for every framework that finished cells in every run
(on the AMD EPYC they were lower than the floors of absolute times: README, "Did it get slower?").

The calibration is written to <results>/noise-<time>.json (format 1):

    {"format": 1, "kind": "noise", "created", "suite", "runs": [run folder, ...],
     "environment": metadata.environment() of the first run (the machine it holds for),
     "quantile": 0.95, "floors": {"torch.train_step.cpu": 0.061, ...},
     "pairs": {"torch.train_step.cpu": n ratios behind the floor, ...}, "floor_all": the same over every cell,
     "relative": {"reference": {"floors": {...}, "pairs": {...}, "floor_all": ...}, ...}}

"relative" (added to format 1 in December 2026; a calibration without it still reads) holds, per
control framework, the floors of times relative to it, in the shape of the top level's.

`find(run_dir)` picks the newest calibration beside a run that was made on the same machine.
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from . import metadata, relative, results
from .errors import BadInput

__all__ = ["FORMAT", "QUANTILE", "kind_of", "calibrate", "write", "read", "find", "floor_for", "has_relative"]

FORMAT = 1
QUANTILE = 0.95
_PREFIX = "noise-"


def kind_of(cell: dict) -> str:
    """The kind of a cell for its noise floor: 'framework.phase.device' (e.g. 'torch.train_step.cpu')."""
    return f"{cell['framework']}.{cell['phase']}.{str(cell['device']).split(':')[0]}"


def calibrate(run_dirs: list[str | os.PathLike], quantile: float = QUANTILE) -> dict[str, Any]:
    """The calibration document of runs of one suite, unchanged code: floors per kind of cell, of
    absolute times and of times relative to each framework that finished cells in every run."""
    if len(run_dirs) < 2:
        raise BadInput(f"a noise calibration needs at least 2 runs, got {len(run_dirs)}", key="--runs")
    runs = [results.read(d) for d in run_dirs]
    first = runs[0]
    for run in runs[1:]:
        differ = metadata.same_machine(first.meta.get("environment") or {}, run.meta.get("environment") or {})
        if differ:
            raise BadInput(f"{run.path} was not measured on the machine of {first.path} (differ: "
                           f"{', '.join(differ)}): a calibration holds for one machine", key="--of")
    tables = [run.table(raw=True) for run in runs]
    doc = {
        "format": FORMAT, "kind": "noise", "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "suite": runs[0].meta.get("suite", {}).get("name"), "runs": [str(r.path) for r in runs],
        "environment": runs[0].meta.get("environment") or {}, "quantile": quantile,
        **_floors(tables, quantile),
    }
    if doc["floors"] is None:
        raise BadInput("the runs share no finished cell: nothing to calibrate", key="--runs")
    in_every = set.intersection(*(set(t.loc[t["status"] == "ok", "framework"]) for t in tables))
    relative_floors = {}
    for control in sorted(in_every):
        part = _floors([relative.relative_table(t, control) for t in tables], quantile)
        if part["floors"] is not None:
            relative_floors[control] = part
    doc["relative"] = relative_floors
    return doc


def _floors(tables: list, quantile: float) -> dict[str, Any]:
    """{"floors", "pairs", "floor_all"} of raw results tables of identical code: per kind of cell, the
    quantile of |log(median B / median A)| over every pair of tables and every cell both finished
    (floors None when no pair shares a cell)."""
    medians = []
    for df in tables:
        ok = df[df["status"] == "ok"]
        medians.append({row.key: (kind_of(row._asdict()), float(row.median_s)) for row in ok.itertuples()})
    by_kind: dict[str, list[float]] = {}
    for a, b in combinations(medians, 2):
        for key in a.keys() & b.keys():
            kind, ma = a[key]
            mb = b[key][1]
            if ma > 0 and mb > 0:
                by_kind.setdefault(kind, []).append(abs(math.log(mb / ma)))
    every = [v for values in by_kind.values() for v in values]
    if not every:
        return {"floors": None, "pairs": {}, "floor_all": None}

    def floor(values: list[float]) -> float:
        return round(float(math.expm1(np.quantile(values, quantile))), 4)

    return {"floors": {kind: floor(v) for kind, v in sorted(by_kind.items())},
            "pairs": {kind: len(v) for kind, v in sorted(by_kind.items())}, "floor_all": floor(every)}


def write(doc: dict, results_dir: str | os.PathLike) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(results_dir) / f"{_PREFIX}{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
    return path


def read(path: str | os.PathLike) -> dict:
    """A calibration written by `write`; BadInput naming the file when it is not one."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot read the noise calibration: {e}", source=str(path)) from None
    if not isinstance(doc, dict) or doc.get("kind") != "noise" or not isinstance(doc.get("floors"), dict):
        raise BadInput("not a noise calibration (written by `bench noise`)", source=str(path))
    if doc.get("format") != FORMAT:
        raise BadInput(f"noise calibration format {doc.get('format')!r}; this fwbench reads {FORMAT}",
                       source=str(path), key="format")
    return doc


def find(run_dir: str | os.PathLike, environment: dict) -> Path | None:
    """The newest calibration in a run's results folder made on the same machine, or None."""
    folder = Path(run_dir).resolve().parent
    for path in sorted(folder.glob(f"{_PREFIX}*.json"), reverse=True):
        try:
            doc = read(path)
        except BadInput:
            continue
        if not metadata.same_machine(doc.get("environment") or {}, environment):
            return path
    return None


def floor_for(doc: dict | None, cell: dict, relative_to: str | None = None) -> float:
    """A cell's floor under a calibration: its kind's, else the one over every cell; 0 without one.

    With relative_to (bench compare --relative-to), the floors the calibration measured on times
    relative to that framework, which are lower where the machine's drift was what differed; a
    calibration without them (written before they were, or whose runs lack that framework) gives
    its floors of absolute times, the larger and so the safer."""
    if not doc:
        return 0.0
    floors = doc["relative"][relative_to] if relative_to and has_relative(doc, relative_to) else doc
    return float(floors["floors"].get(kind_of(cell), floors.get("floor_all") or 0.0))


def has_relative(doc: dict | None, control: str) -> bool:
    """Whether a calibration measured floors relative to the control framework."""
    return bool(doc) and control in (doc.get("relative") or {})
