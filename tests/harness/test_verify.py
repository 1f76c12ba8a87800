"""harness.verify: the run's float64 references of the timed phases are computed once and shared by
every framework's worker (the cache folder), and read back exactly."""

import numpy as np
import pytest

import reference_impl as ri
from harness import verify


def test_a_timed_phase_reference_is_computed_once_per_run_and_shared(tmp_path, monkeypatch):
    spec = ri.models.get("lenet5")
    weights = ri.init_weights(spec, 0, np.float64)
    first = verify.PhaseReference(spec, weights, 16, 0, str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch-lenet5-b16-s0.npz", "reference-lenet5-b16-s0.npz"]

    def no_second_computation(*args):
        raise AssertionError(f"the reference was computed again ({args[0]})")

    monkeypatch.setattr(verify.adapters, "get", no_second_computation)
    monkeypatch.setattr(verify.ri.data, "well_conditioned_batch", no_second_computation)
    second = verify.PhaseReference(spec, weights, 16, 0, str(tmp_path))  # another framework's worker
    assert second.tensors.keys() == first.tensors.keys()
    for name, value in first.tensors.items():
        np.testing.assert_array_equal(second.tensors[name], value)
    np.testing.assert_array_equal(second.x, first.x)
    # another batch size is another reference
    with pytest.raises(AssertionError, match="computed again"):
        verify.PhaseReference(spec, weights, 32, 0, str(tmp_path))
