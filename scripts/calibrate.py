"""Calibrate an assignment's accuracy thresholds: run the reference solution over several seeds.

Usage: python scripts/calibrate.py 01_dnn [--seeds 0 1 2 3 4 5 6 7] [--workers 2] [--out FILE]

The source notebook runs as a whole (reference solutions, visible and hidden tests) in a fresh
kernel per seed, with the course seed ``SEED = dlworkshop.seed_everything(0)`` replaced by each
seed in turn. A metrics cell appended at the end prints the figures the thresholds are set from.
The table (mean, min, max per metric, and which test cells failed for which seed) is written as
Markdown to ``docs/calibration/<assignment>.md``; thresholds in the notebook are the minimum over
seeds minus the margin stated there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from graders import notebooks  # noqa: E402

SEED_LINE = "SEED = dlworkshop.seed_everything(0)"

#: Code appended to each assignment's notebook; it must print one line "CALIBRATION {json}".
METRICS = {
    "01_dnn": """
import json as _json
_lin, _hid = linear_model, hidden_model
_h = mnist.test.X.astype(np.float64)
for _l in range(1, len(mlp_params) // 2 + 1):
    _h = _h @ mlp_params[f"W{_l}"] + mlp_params[f"b{_l}"]
    if _l < len(mlp_params) // 2:
        _h = np.maximum(_h, 0)
_metrics = {
    "circles: linear test accuracy": _lin.score(circles.test.X, circles.test.y),
    "circles: one-hidden-layer test accuracy": _hid.score(circles.test.X, circles.test.y),
    "NumPy MLP test accuracy": float((_h.argmax(1) == mnist.test.y).mean()),
    "TorchMLP test accuracy": train.evaluate(torch_model, loaders["test"], DEVICE)[1],
    "NumPy MLP training time (s)": numpy_seconds,
    "TorchMLP training time (s)": torch_seconds,
}
print("CALIBRATION " + _json.dumps(_metrics))
""",
    "02_cnn": """
import json as _json
_metrics = {
    "DigitCNN validation accuracy": history.val_acc[-1],
    "DigitCNN test accuracy": train.evaluate(cnn, loaders["test"], DEVICE)[1],
    "DigitCNN training time, 6 epochs (s)": cnn_seconds,
}
print("CALIBRATION " + _json.dumps(_metrics))
""",
    "03_transfer_learning": """
import json as _json
_metrics = {}
for _name, _model, _hist in (("feature extraction", fe_model, fe_history),
                             ("fine-tuning", ft_model, ft_history),
                             ("from scratch", sc_model, sc_history)):
    _metrics[f"{_name}: test accuracy"] = train.evaluate(_model, loaders["test"], DEVICE)[1]
    _metrics[f"{_name}: validation accuracy"] = _hist.val_acc[-1]
    _metrics[f"{_name}: training time (s)"] = results[_name]["seconds"]
_metrics["fine-tuning minus from scratch: test accuracy"] = (
    _metrics["fine-tuning: test accuracy"] - _metrics["from scratch: test accuracy"])
print("CALIBRATION " + _json.dumps(_metrics))
""",
}


def run_seed(assignment: str, seed: int) -> tuple[dict[str, float], list[str], float]:
    """Metrics, failed test cells and wall time of the reference notebook run with ``seed``."""
    nb = notebooks.read(ROOT / "source" / assignment / f"{assignment}.ipynb")
    setup = nb.cells[notebooks.cell_index(nb, "setup")]
    if SEED_LINE not in setup.source:
        raise SystemExit(f"the setup cell must contain {SEED_LINE!r} for calibration")
    setup.source = setup.source.replace(SEED_LINE, f"SEED = dlworkshop.seed_everything({seed})")
    nb.cells.append(nbformat.v4.new_code_cell(METRICS[assignment]))
    start = time.perf_counter()
    executed, outcomes = notebooks.run(
        nb, cwd=ROOT / "source" / assignment, env={"DLWORKSHOP_PROGRESS": "0"}
    )
    wall = time.perf_counter() - start
    text = "".join(
        o.get("text", "") for o in executed.cells[-1].outputs if o.output_type == "stream"
    )
    lines = [ln for ln in text.splitlines() if ln.startswith("CALIBRATION ")]
    if not lines:
        errors = [notebooks.cell_error(c) for c in executed.cells if notebooks.cell_error(c)]
        raise RuntimeError(f"seed {seed}: no metrics printed; errors: {errors[:3]}")
    metrics = json.loads(lines[-1].removeprefix("CALIBRATION "))
    failed = [g for g, o in outcomes.items() if not o.passed]
    return metrics, failed, wall


def table(assignment: str, results: dict[int, tuple[dict[str, float], list[str], float]]) -> str:
    """The Markdown report."""
    seeds = sorted(results)
    names = list(results[seeds[0]][0])
    out = [
        f"# Calibration of {assignment}",
        "",
        f"Reference solution (source notebook) run whole with the course seed set to each of "
        f"{len(seeds)} seeds; produced by `python scripts/calibrate.py {assignment}` on "
        f"{time.strftime('%Y-%m-%d')}, {_machine()}.",
        "",
        "| metric | mean | min | max | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in seeds) + " |",
    ]
    for name in names:
        vals = [results[s][0][name] for s in seeds]
        cells = [f"{statistics.mean(vals):.3f}", f"{min(vals):.3f}", f"{max(vals):.3f}"]
        out.append(f"| {name} | " + " | ".join(cells + [f"{v:.3f}" for v in vals]) + " |")
    walls = [results[s][2] for s in seeds]
    out.append(
        "| whole notebook, wall time (s) | "
        + " | ".join(
            [f"{statistics.mean(walls):.1f}", f"{min(walls):.1f}", f"{max(walls):.1f}"]
            + [f"{w:.1f}" for w in walls]
        )
        + " |"
    )
    out += ["", "Test cells that failed (reference solution):", ""]
    for s in seeds:
        out.append(f"- seed {s}: {', '.join(results[s][1]) or 'none'}")
    return "\n".join(out) + "\n"


def _machine() -> str:
    import os
    import platform

    import torch

    return (
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, torch {torch.__version__}"
        f", {'CUDA' if torch.cuda.is_available() else 'CPU only'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignment", choices=sorted(METRICS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or ROOT / "docs" / "calibration" / f"{args.assignment}.md"
    with ThreadPoolExecutor(args.workers) as pool:
        futures = {s: pool.submit(run_seed, args.assignment, s) for s in args.seeds}
        results = {s: f.result() for s, f in futures.items()}
    report = table(args.assignment, results)
    out.parent.mkdir(parents=True, exist_ok=True)
    existing = out.read_text() if out.exists() else ""
    notes = existing[existing.index("## Thresholds") :] if "## Thresholds" in existing else ""
    out.write_text(report + ("\n" + notes if notes else ""))
    print(report)


if __name__ == "__main__":
    main()
