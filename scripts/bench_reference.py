"""Time the NumPy reference against PyTorch eager, side by side in one process, and print ratios.

    python scripts/bench_reference.py                       # mnist_cnn, lenet5, mlp at batch 128
    python scripts/bench_reference.py --models mnist_cnn --batch 32 --batch 128 --rounds 40

Both run float32 with the same thread count and the same weights and batch. Rounds alternate
between the two (reference, torch, reference, ...) so that drift on a shared machine hits both
alike. Before each timed call the script idles (--gap-ms) and makes one untimed call: OpenBLAS's
and OpenMP's worker threads spin for a while after their work, and without the gap each library
ran up to 2x slower while the other's threads still spun. The ratio is median(reference) / median(torch)
for each phase, with a bootstrap 95% interval of that ratio; < 1 means the reference is faster.
Both models come from fwbench's adapters (the `reference` and `torch` ones `bench run` uses) and
are timed through their timing phases; before timing, the torch loss is checked against the
reference's.
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


# Thread pools read these when they start, so they are set before NumPy or torch is imported.
ARGS = _parse()
for var in _THREADS_ENV:
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import reference_impl as ri  # noqa: E402
from harness.adapters.reference import ReferenceAdapter  # noqa: E402
from harness.adapters.torch_adapter import TorchAdapter  # noqa: E402
from harness.stats import ratio_ci  # noqa: E402

try:
    import torch
except ImportError:
    sys.exit("bench_reference.py needs PyTorch: pip install -e '.[torch]' (see README)")


def _phases(spec: ri.ModelSpec, batch: int):
    """{phase: (reference Phase, torch Phase)} for forward and forward+backward, checked to agree."""
    weights = ri.init_weights(spec, seed=0, dtype=np.float64)  # each adapter rounds them to float32
    x, y = ri.random_batch(spec, batch, seed=1, dtype=np.float64)
    ref = ReferenceAdapter().build(spec, weights, dtype="float32")
    tm = TorchAdapter().build(spec, weights, dtype="float32")
    # The two must compute the same thing before their times mean anything.
    loss, tloss = ref.loss_and_grads(x, y)[0], tm.loss_and_grads(x, y)[0]
    if not np.isclose(loss, tloss, rtol=1e-4):
        raise SystemExit(f"{spec.name}: reference loss {loss} != torch loss {tloss}")
    return {label: (ref.timing_phase(phase, x, y), tm.timing_phase(phase, x, y))
            for label, phase in (("forward", "forward"), ("forward+backward", "forward_backward"))}


def _time_interleaved(fr, ft) -> tuple[np.ndarray, np.ndarray]:
    for _ in range(ARGS.warmup):
        fr.run()
        ft.run()
    tr: list[float] = []
    tt: list[float] = []
    gap = ARGS.gap_ms / 1e3
    for _ in range(ARGS.rounds):
        for phase, times in ((fr, tr), (ft, tt)):
            time.sleep(gap)
            phase.run()  # wakes this library's worker threads; not timed
            phase.sync()
            t0 = time.perf_counter()
            phase.run()
            phase.sync()
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
    for name in ARGS.models:
        spec = ri.models.get(name)
        for batch in batches:
            for phase, (fr, ft) in _phases(spec, batch).items():
                tr, tt = _time_interleaved(fr, ft)
                ratio, lo, hi = ratio_ci(tr, tt)
                print(f"{name:<12} {batch:>5} {phase:<17} {np.median(tr):>12.2f} "
                      f"{np.median(tt):>9.2f} {ratio:>9.2f}  [{lo:.2f}, {hi:.2f}]", flush=True)


if __name__ == "__main__":
    main()
