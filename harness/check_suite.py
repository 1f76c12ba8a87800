"""`bench check`'s cells: every model x framework x device x dtype x mode named, each checked against
the float64 reference (harness.checks) in this process, or in a worker of its own for an adapter that
needs one (an `environment`, such as a Keras backend chosen before keras is imported)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import numpy as np

import reference_impl as ri

from . import adapters
from .adapters.base import Adapter
from .cells import DTYPES, parse_device
from .checks import CHECK_BATCH, CHECK_STEPS, CheckResult, ReferenceRun, check_cell, error_result
from .errors import BadInput, UnknownName

__all__ = ["check_all"]


def check_all(models: Iterable[str] = (), frameworks: Iterable[str] = (), dtypes: Iterable[str] = (),
              devices: Iterable[str] = (), modes: Iterable[str] = (), *, batch: int = CHECK_BATCH,
              steps: int = CHECK_STEPS,
              seed: int = 0) -> Iterator[CheckResult]:
    """`bench check`: every model x framework x device x dtype x mode named (each axis empty = all;
    devices empty = cpu), one CheckResult per cell, yielded as each is checked.

    Every name is validated before anything runs (UnknownName, BadInput). A framework that cannot be
    loaded is one 'error' result per model, device and dtype; a mode is run by the frameworks that
    have it.
    """
    models, frameworks, dtypes, devices, modes = map(tuple, (models, frameworks, dtypes, devices, modes))
    _known("model", models, ri.models.names())
    _known("framework", frameworks, adapters.names())
    _known("dtype", dtypes, DTYPES)
    for device in devices:
        try:
            parse_device(device)
        except ValueError as e:
            raise BadInput(str(e), key="--device", value=device, choices=("cpu", "cuda", "cuda:N")) from None
    loaded: dict[str, Adapter | Exception] = {}
    for name in frameworks or adapters.names():
        try:
            loaded[name] = adapters.get(name)
        except (ImportError, TypeError) as e:
            loaded[name] = e
    _known("mode", modes, sorted({m for a in loaded.values() if not isinstance(a, Exception) for m in a.modes}))
    return _check_all(models or tuple(ri.models.names()), loaded, dtypes or DTYPES, devices or ("cpu",), modes,
                      batch, steps, seed)


def _known(what: str, given: tuple, valid) -> None:
    for value in given:
        if value not in valid:
            raise UnknownName(what, value, list(valid), key=f"--{what}" if what != "model" else None)


def _check_all(models, loaded, dtypes, devices, modes, batch, steps, seed) -> Iterator[CheckResult]:
    apart = _Apart()
    try:
        for model_name in models:
            spec = ri.models.get(model_name)
            reference = ReferenceRun(spec, ri.init_weights(spec, seed, np.float64), batch, seed, steps)
            for fw_name, adapter in loaded.items():
                for device in devices:
                    for dtype in dtypes:
                        if isinstance(adapter, Exception):
                            yield CheckResult(model_name, fw_name, device, dtype, "-", "error", reason=str(adapter))
                            continue
                        for mode in [m for m in adapter.modes if not modes or m in modes]:
                            if adapter.environment:
                                yield apart.check(adapter, model_name, device, dtype, mode, batch, steps, seed)
                            else:
                                yield check_cell(adapter, reference, device=device, dtype=dtype, mode=mode)
    finally:
        apart.close()


class _Apart:
    """The adapters that need a process of their own (an `environment`, e.g. a Keras backend): one
    worker each (harness.workers), started when first needed, asked one cell at a time."""

    def __init__(self) -> None:
        self.workers: dict = {}

    def check(self, adapter: Adapter, model: str, device: str, dtype: str, mode: str, batch: int, steps: int,
              seed: int) -> CheckResult:
        from . import metadata
        from .workers import Worker, WorkerDied, WorkerTimeout

        start = time.perf_counter()
        try:
            worker = self.workers.get(adapter.name)
            if worker is None or not worker.alive:
                worker = self.workers[adapter.name] = Worker(adapter.name, "cpu", metadata.usable_cpus())
                worker.request({"op": "setup", "framework": adapter.name, "threads": metadata.usable_cpus()}, 600)
            reply = worker.request({"op": "check", "model": model, "device": device, "dtype": dtype, "mode": mode,
                                    "batch": batch, "steps": steps, "seed": seed}, 600)
        except (WorkerDied, WorkerTimeout) as e:
            self.workers.pop(adapter.name, None)
            return error_result(CheckResult(model, adapter.name, device, dtype, mode, "error"), e, start)
        if not reply.get("ok"):
            return CheckResult(model, adapter.name, device, dtype, mode, "error", reason=reply.get("error", ""),
                               seconds=time.perf_counter() - start)
        return CheckResult.from_dict(reply["result"])

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()
