"""Benchmark: wall time of `nbgrader autograde` for one submission of each assignment.

Usage: python scripts/bench_autograde.py [ASSIGNMENT ...] [--repeats 3] [--threads 2]

For each assignment a scratch course is released, the reference submission is autograded
``--repeats`` times (``--force``) and the stub once, each as its own ``nbgrader autograde``
command, as an instructor would run it. Reported: the mean and the worst of the whole command
(nbgrader start-up, kernel start, the notebook with its training, writing the gradebook).
The budgets (``budget_s`` of ``source/<a>/grading/calibration.toml``, also in the README) are
for a 2-core CPU: 01_dnn under 90 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from graders import samples  # noqa: E402
from graders.course import Course  # noqa: E402


def bench(assignment: str, repeats: int, env: dict[str, str]) -> dict[str, float]:
    """Seconds per autograde of the reference (mean, max) and of the stub."""
    with tempfile.TemporaryDirectory() as tmp:
        course = Course.scratch(Path(tmp) / "course", origin=ROOT)
        course.generate_release(assignment)
        built = {s.student: s for s in samples.build(course, assignment, mutants=False)}
        course.submit("ref", assignment, built["ref"].notebook)
        course.submit("stub", assignment, built["stub"].notebook)
        ref_times = []
        for _ in range(repeats):
            start = time.perf_counter()
            proc = course.autograde(assignment, student="ref", env=env)
            ref_times.append(time.perf_counter() - start)
            if proc.returncode != 0:
                raise SystemExit(proc.stdout + proc.stderr)
        start = time.perf_counter()
        course.autograde(assignment, student="stub", env=env)
        stub_time = time.perf_counter() - start
        grade = course.grades(assignment)["ref"]
        if grade.score != grade.max_score:
            raise SystemExit(f"reference lost points: {grade.failed()}")
    return {
        "ref_mean": statistics.mean(ref_times),
        "ref_max": max(ref_times),
        "stub": stub_time,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignments", nargs="*")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    names = args.assignments or Course(ROOT).assignments()
    threads = str(args.threads)
    env = {v: threads for v in ("DLWORKSHOP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    import torch

    device = "CUDA" if torch.cuda.is_available() else "CPU"
    print(f"{os.cpu_count()} cores, {device}, {threads} threads per kernel, {args.repeats} runs")
    print("| assignment | reference: mean (s) | reference: worst (s) | stub (s) | budget (s) |")
    print("| --- | --- | --- | --- | --- |")
    for name in names:
        r = bench(name, args.repeats, env)
        budget = Course(ROOT).grading_file(name, "calibration").get("budget_s", "-")
        print(f"| {name} | {r['ref_mean']:.1f} | {r['ref_max']:.1f} | {r['stub']:.1f} | {budget} |")


if __name__ == "__main__":
    main()
