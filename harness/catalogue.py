"""What `bench list` shows: the catalogue's models and the registered frameworks, as plain rows.

Frameworks are found without importing them (each adapter's availability() reads package metadata);
a plugin that cannot be loaded, or whose availability() raises, is a row that says so, never a crash.
"""

from __future__ import annotations

__all__ = ["model_rows", "framework_rows"]


def model_rows() -> list[dict]:
    """Each model of reference_impl's catalogue: name, params, flops_per_sample, input_shape, loss,
    optimizer, summary."""
    from reference_impl import models

    return [{"name": spec.name, "params": spec.num_params, "flops_per_sample": spec.flops_per_sample,
             "input_shape": list(spec.input_shape), "loss": spec.loss, "optimizer": spec.optimizer.kind,
             "summary": spec.summary}
            for spec in models.all_specs()]


def framework_rows() -> list[dict]:
    """Each registered framework: name, available, version, modes, reason (why not, and the fix)."""
    from . import adapters

    rows = []
    for name in adapters.names():
        try:
            adapter = adapters.get(name)
        except (ImportError, TypeError) as e:  # a broken plugin is reported, not fatal
            rows.append({"name": name, "available": False, "version": None, "modes": [], "reason": str(e)})
            continue
        try:
            status = adapter.availability()
        except Exception as e:  # the contract says never raise; a plugin may still do it
            rows.append({"name": name, "available": False, "version": None, "modes": list(adapter.modes),
                         "reason": f"availability() raised {type(e).__name__}: {e}"})
            continue
        rows.append({"name": name, "available": status.available, "version": status.version,
                     "modes": list(adapter.modes), "reason": status.reason})
    return rows
