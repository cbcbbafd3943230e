"""Calibrate assignments' accuracy thresholds: run the reference solution over several seeds.

Usage: python scripts/calibrate.py [ASSIGNMENT ...] [--seeds 0 1 2 3 4 5 6 7] [--workers 2]
       [--out FILE]

Without assignments, every assignment with a ``source/<a>/grading/calibration.toml`` is
calibrated, one after another. The source notebook runs as a whole (reference solutions, visible
and hidden tests) in a fresh kernel per seed, with the course seed
``SEED = dlworkshop.seed_everything(0)`` replaced by each seed in turn. The ``metrics`` code of
``calibration.toml``, appended at the end, prints the figures the thresholds are set from.
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
from graders.course import Course  # noqa: E402

COURSE = Course(ROOT)

SEED_LINE = "SEED = dlworkshop.seed_everything(0)"

def calibrated() -> list[str]:
    """The assignments that say how to calibrate them (``grading/calibration.toml``)."""
    return [a for a in COURSE.assignments() if COURSE.grading_file(a, "calibration")]


def metrics_code(assignment: str) -> str:
    """The ``metrics`` code of the assignment's ``grading/calibration.toml``."""
    code = COURSE.grading_file(assignment, "calibration").get("metrics")
    if not code:
        raise SystemExit(f"{COURSE.grading_folder(assignment)}/calibration.toml has no metrics")
    return code


def run_seed(assignment: str, seed: int) -> tuple[dict[str, float], list[str], float]:
    """Metrics, failed test cells and wall time of the reference notebook run with ``seed``."""
    nb = notebooks.read(COURSE.source_path(assignment))
    setup = nb.cells[notebooks.cell_index(nb, "setup")]
    if SEED_LINE not in setup.source:
        raise SystemExit(f"the setup cell must contain {SEED_LINE!r} for calibration")
    setup.source = setup.source.replace(SEED_LINE, f"SEED = dlworkshop.seed_everything({seed})")
    nb.cells.append(nbformat.v4.new_code_cell(metrics_code(assignment)))
    start = time.perf_counter()
    executed, outcomes = notebooks.run(
        nb, cwd=COURSE.source_path(assignment).parent, env={"DLWORKSHOP_PROGRESS": "0"}
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


def calibrate(assignment: str, seeds: list[int], workers: int, out: Path | None) -> None:
    """Run ``assignment`` over ``seeds`` and write (and print) its table."""
    out = out or ROOT / "docs" / "calibration" / f"{assignment}.md"
    with ThreadPoolExecutor(workers) as pool:
        futures = {s: pool.submit(run_seed, assignment, s) for s in seeds}
        results = {s: f.result() for s, f in futures.items()}
    report = table(assignment, results)
    out.parent.mkdir(parents=True, exist_ok=True)
    existing = out.read_text() if out.exists() else ""
    notes = existing[existing.index("## Thresholds") :] if "## Thresholds" in existing else ""
    out.write_text(report + ("\n" + notes if notes else ""))
    print(report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    known = calibrated()
    parser.add_argument("assignments", nargs="*", metavar="ASSIGNMENT",
                        help=f"default: all of {', '.join(known)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="(one assignment only)")
    args = parser.parse_args()
    chosen = args.assignments or known
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        parser.error(f"no grading/calibration.toml for {unknown}; known: {', '.join(known)}")
    if args.out and len(chosen) != 1:
        raise SystemExit("--out needs exactly one assignment")
    for assignment in chosen:
        calibrate(assignment, args.seeds, args.workers, args.out)


if __name__ == "__main__":
    main()
