"""Time the NumPy reference against PyTorch eager, side by side in one process, and print ratios.

    python scripts/bench_reference.py                       # mnist_cnn, lenet5, mlp at batch 128
    python scripts/bench_reference.py --models mnist_cnn --batch 32 --batch 128 --rounds 40

Both run float32 with the same thread count and the same weights and batch. Rounds alternate
between the two (reference, torch, reference, ...) so that drift on a shared machine hits both
alike. Before each timed call the script idles (--gap-ms) and makes one untimed call: OpenBLAS's
and OpenMP's worker threads spin for a while after their work, and without the gap each library
ran up to 2x slower while the other's threads still spun. The ratio is median(reference) / median(torch)
for each phase, with a bootstrap 95% interval of that ratio; < 1 means the reference is faster.
Before timing, the torch loss and gradients are checked against the reference's.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

_THREADS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["mnist_cnn", "lenet5", "mlp"])
    p.add_argument("--batch", type=int, action="append", help="batch size (repeatable); default 128")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=30, help="timed calls per framework and phase")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--gap-ms", type=float, default=100.0,
                   help="idle time before each timed call, so the other library's spinning "
                        "worker threads have gone to sleep (OpenBLAS spins for up to ~0.1 s)")
    return p.parse_args()


if __name__ == "__main__":
    # Thread pools read these when they start, so they are set before NumPy or torch is imported.
    # (Imported as a module, by the pytest benchmarks, the script sets nothing.)
    ARGS = _parse()
    for var in _THREADS_ENV:
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import reference_impl as ri  # noqa: E402

try:
    import torch
except ImportError:
    sys.exit("bench_reference.py needs PyTorch: pip install -e '.[torch]' (see README)")


def torch_model(spec: ri.ModelSpec, weights: dict[str, np.ndarray]):
    """The same network in torch.nn, with the same weights (dense weights transposed to (out, in))."""
    nn = torch.nn
    acts = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
    mods = []
    for layer, in_shape, _ in spec.layer_shapes():
        if layer.kind == "dense":
            m = nn.Linear(in_shape[0], layer.out_features, bias=layer.use_bias)
            m.weight.data = torch.from_numpy(weights[f"{layer.name}.weight"].T.copy())
        elif layer.kind == "conv2d":
            padding = 0 if layer.padding == "valid" else layer.padding
            m = nn.Conv2d(in_shape[0], layer.out_channels, layer.kernel_size, layer.stride,
                          padding, bias=layer.use_bias)
            m.weight.data = torch.from_numpy(weights[f"{layer.name}.weight"].copy())
        elif layer.kind == "max_pool2d":
            if isinstance(layer.padding, str) and layer.padding != "valid":
                raise SystemExit(f"{spec.name}: this script handles numeric pooling padding only")
            m = nn.MaxPool2d(layer.kernel_size, layer.stride, 0 if layer.padding == "valid" else layer.padding)
        elif layer.kind == "flatten":
            m = nn.Flatten()
        else:
            m = acts[layer.kind]()
        if layer.use_bias and layer.has_params:
            m.bias.data = torch.from_numpy(weights[f"{layer.name}.bias"].copy())
        mods.append(m)
        # A final softmax is folded into the loss (cross_entropy takes logits), as in the reference.
        if layer.activation and not (layer is spec.layers[-1] and layer.activation == "softmax"):
            mods.append(acts[layer.activation]())
    return nn.Sequential(*mods)


def _bootstrap_ratio(a: np.ndarray, b: np.ndarray, rng, reps: int = 2000) -> tuple[float, float]:
    ia = rng.integers(0, len(a), (reps, len(a)))
    ib = rng.integers(0, len(b), (reps, len(b)))
    ratios = np.median(a[ia], axis=1) / np.median(b[ib], axis=1)
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def _callables(spec: ri.ModelSpec, batch: int):
    """(reference forward, torch forward, reference fwd+bwd, torch fwd+bwd), checked to agree."""
    weights = ri.init_weights(spec, seed=0, dtype=np.float32)
    x, y = ri.random_batch(spec, batch, seed=1)
    ref = ri.build(spec, weights)
    tm = torch_model(spec, weights)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    F = torch.nn.functional
    loss_fn = {
        "sparse_categorical_crossentropy": F.cross_entropy,
        "binary_crossentropy": F.binary_cross_entropy_with_logits,
        "mse": F.mse_loss,
    }[spec.loss]

    def torch_fb():
        for p in tm.parameters():
            p.grad = None
        loss = loss_fn(tm(tx), ty)
        loss.backward()
        return loss

    def torch_fwd():
        with torch.no_grad():
            return tm(tx)

    def ref_fb():
        return ref.loss_and_grads(x, y)

    def ref_fwd():
        return ref.forward(x)

    # The two must compute the same thing before their times mean anything.
    loss, grads = ref_fb()
    tloss = float(torch_fb().detach())
    if not np.isclose(float(loss), tloss, rtol=1e-4):
        raise SystemExit(f"{spec.name}: reference loss {loss} != torch loss {tloss}")
    return ref_fwd, torch_fwd, ref_fb, torch_fb


def _time_interleaved(fr, ft) -> tuple[np.ndarray, np.ndarray]:
    for _ in range(ARGS.warmup):
        fr()
        ft()
    tr: list[float] = []
    tt: list[float] = []
    gap = ARGS.gap_ms / 1e3
    for _ in range(ARGS.rounds):
        for fn, times in ((fr, tr), (ft, tt)):
            time.sleep(gap)
            fn()  # wakes this library's worker threads; not timed
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return np.array(tr) * 1e3, np.array(tt) * 1e3


def main() -> None:
    torch.set_num_threads(ARGS.threads)
    batches = ARGS.batch or [128]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; "
          f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}")
    print(f"threads {ARGS.threads} (torch.get_num_threads() = {torch.get_num_threads()}), float32, "
          f"{ARGS.rounds} interleaved rounds after {ARGS.warmup} warm-up calls, gap {ARGS.gap_ms:g} ms\n")
    print(f"{'model':<12} {'batch':>5} {'phase':<17} {'reference ms':>12} {'torch ms':>9} "
          f"{'ref/torch':>9}  95% CI")
    rng = np.random.default_rng(0)
    for name in ARGS.models:
        spec = ri.models.get(name)
        for batch in batches:
            ref_fwd, torch_fwd, ref_fb, torch_fb = _callables(spec, batch)
            for phase, fr, ft in (("forward", ref_fwd, torch_fwd), ("forward+backward", ref_fb, torch_fb)):
                tr, tt = _time_interleaved(fr, ft)
                lo, hi = _bootstrap_ratio(tr, tt, rng)
                ratio = np.median(tr) / np.median(tt)
                print(f"{name:<12} {batch:>5} {phase:<17} {np.median(tr):>12.2f} "
                      f"{np.median(tt):>9.2f} {ratio:>9.2f}  [{lo:.2f}, {hi:.2f}]", flush=True)


if __name__ == "__main__":
    main()
