"""How many threads should a student's kernel use? Time the notebooks' training cells at 1, 2 and
all cores, on a quiet machine and next to busy processes (another student, another grader).

Each measurement runs in a fresh process (threads are fixed at start, as in a kernel): it caps
torch's intra-op threads and NumPy's BLAS threads (threadpoolctl) at T, warms up, then times
    cnn    one epoch of 02's CNN (conv16-pool-conv32-pool-fc64, SGD, batch 64, 3,500 digits)
    mlp    three epochs of 01's PyTorch MLP (784-128-10, SGD, batch 64)
    numpy  three epochs of 01's NumPy MLP (784-128-10 forward/backward by matrix products)
and prints the best of ``--repeats`` runs. The load is ``--load`` processes that spin on the CPU.

    python scripts/bench_threads.py [--threads 1 2 0] [--loads 0 1 2] [--repeats 3]
                                    [--realtime] [--pause 30]

(0 threads = torch's own default, one per core.) Prints a Markdown table. On a machine others
use, ``--realtime`` (root) runs the measurement and its load in the round-robin real-time class
(``chrt -r 1``), ahead of everyone else's work (niceness does not do that across sessions), so
that "quiet" means quiet; ``--pause`` seconds between measurements give the others their turn.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

WORKLOADS = ("cnn", "mlp", "numpy")


def _spin() -> None:  # pragma: no cover - a load generator
    while True:
        pass


def child(threads: int, repeats: int) -> dict[str, float]:
    """Time every workload with ``threads`` threads (0: torch's default) in this process."""
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits
    from torch import nn

    from dlworkshop import data, train

    if threads:
        torch.set_num_threads(threads)
        threadpool_limits(threads)
    torch.manual_seed(0)
    images = data.load_mnist(flatten=False)
    flat = data.load_mnist(flatten=True)
    cnn = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip
    mlp = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    loss_fn = nn.CrossEntropyLoss()

    def torch_epochs(model: nn.Module, splits: data.DatasetSplits, epochs: int) -> None:
        loader = data.make_loaders(splits, batch_size=64)["train"]
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for _ in range(epochs):
            train.train_one_epoch(model, loader, opt, loss_fn, "cpu")

    rng = np.random.default_rng(0)
    W1 = rng.normal(0, 0.05, (784, 128)).astype(np.float32)
    W2 = rng.normal(0, 0.05, (128, 10)).astype(np.float32)
    X, y = flat.train.X, flat.train.y

    def numpy_epochs(epochs: int) -> None:
        for _ in range(epochs):
            for xb, yb in data.iterate_minibatches(X, y, 64, rng):
                h = np.maximum(xb @ W1, 0)
                logits = h @ W2
                p = np.exp(logits - logits.max(1, keepdims=True))
                p /= p.sum(1, keepdims=True)
                p[np.arange(len(yb)), yb] -= 1
                dW2 = h.T @ p
                dh = (p @ W2.T) * (h > 0)
                dW1 = xb.T @ dh
                W1[...] -= 1e-3 * dW1
                W2[...] -= 1e-3 * dW2

    runs = {
        "cnn": lambda: torch_epochs(cnn, images, 1),
        "mlp": lambda: torch_epochs(mlp, flat, 3),
        "numpy": lambda: numpy_epochs(3),
    }
    runs["cnn"]()  # warm-up: the first convolution steps on CPU are slow
    best = {}
    for name, run in runs.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        best[name] = min(times)
    best["torch_threads"] = torch.get_num_threads()
    return best


def measure(threads: int, load: int, repeats: int, realtime: bool = False) -> dict[str, float]:
    """Run :func:`child` in a fresh process while ``load`` spinning processes run (all of them
    in the real-time round-robin class with ``realtime``)."""
    prefix = ["chrt", "-r", "1"] if realtime else []
    spinners = [
        subprocess.Popen([*prefix, sys.executable, "-c", "while True: pass"]) for _ in range(load)
    ]
    try:
        time.sleep(0.5)
        env = {k: v for k, v in os.environ.items()
               if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                            "DLWORKSHOP_THREADS")}  # fmt: skip
        out = subprocess.run(
            [*prefix, sys.executable, __file__, "--child", str(threads), "--repeats", str(repeats)],
            env=env, capture_output=True, text=True, check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["loadavg"] = os.getloadavg()[0]
        return result
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 0])
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--realtime", action="store_true", help="measure ahead of other work")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between measurements")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.repeats)))
        return
    print(f"{os.cpu_count()} cores; seconds, best of {args.repeats}; real-time: {args.realtime}")
    print("| busy processes | threads | " + " | ".join(WORKLOADS) + " | load avg |")
    print("| --- | --- | " + " | ".join("---" for _ in WORKLOADS) + " | --- |")
    for load in args.loads:
        for threads in args.threads:
            time.sleep(args.pause)
            r = measure(threads, load, args.repeats, args.realtime)
            label = f"{threads}" if threads else f"default ({r['torch_threads']})"
            cells = " | ".join(f"{r[w]:.2f}" for w in WORKLOADS)
            print(f"| {load} | {label} | {cells} | {r['loadavg']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
