"""The NumPy reference against PyTorch eager, timed by pytest-benchmark; never asserts a time.

    pytest tests/benchmarks --benchmark-only --benchmark-group-by=param:model,param:phase

Each model's reference and torch benchmarks land in one group, so the table shows their ratio.
For an interleaved, side-by-side ratio with a confidence interval, use scripts/bench_reference.py.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import reference_impl as ri

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))

MODELS = ["mnist_cnn", "lenet5", "mlp"]
BATCH = 128


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    spec = ri.models.get(request.param)
    weights = ri.init_weights(spec, seed=0, dtype=np.float32)
    x, y = ri.random_batch(spec, BATCH, seed=1)
    return spec, weights, x, y


@pytest.mark.parametrize("phase", ["forward", "forward_backward"])
def test_reference(benchmark, model, phase):
    spec, weights, x, y = model
    net = ri.build(spec, weights)
    benchmark.group = f"{spec.name} {phase} batch {BATCH}"
    if phase == "forward":
        out = benchmark(net.forward, x)
        assert out.shape == (BATCH, *spec.output_shape)
    else:
        loss, grads = benchmark(net.loss_and_grads, x, y)
        assert np.isfinite(loss) and set(grads) == set(weights)


@pytest.mark.parametrize("phase", ["forward", "forward_backward"])
def test_torch(benchmark, model, phase):
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    import torch
    from bench_reference import torch_model

    spec, weights, x, y = model
    torch.set_num_threads(2)
    net = torch_model(spec, weights)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = {
        "sparse_categorical_crossentropy": torch.nn.functional.cross_entropy,
        "binary_crossentropy": torch.nn.functional.binary_cross_entropy_with_logits,
        "mse": torch.nn.functional.mse_loss,
    }[spec.loss]
    benchmark.group = f"{spec.name} {phase} batch {BATCH}"

    def forward():
        with torch.no_grad():
            return net(tx)

    def forward_backward():
        for p in net.parameters():
            p.grad = None
        loss = loss_fn(net(tx), ty)
        loss.backward()
        return loss

    result = benchmark(forward if phase == "forward" else forward_backward)
    assert result is not None
