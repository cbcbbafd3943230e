"""Time ``python -m graders similarity`` on a generated class (``make``-free; see
docs/benchmarks/similarity.md).

Builds a scratch course (the repository's configuration, source and release of the assignment)
with ``--students`` submissions from :func:`graders.similarity.synthetic.large_class` (each
solution cell the reference or one of its mutants and alternatives, every cell disguised, plot
outputs attached), then times, ``--repeat`` times each: the comparison and reports in this
process (:func:`graders.similarity.run`), and the whole command in a fresh interpreter
(imports included), pinned to at most ``--cores`` CPU cores.

    PYTHONPATH=. .venv/bin/python scripts/bench_similarity.py [--assignment 01_dnn]
        [--students 200] [--cores 2] [--repeat 3] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from graders import similarity
from graders.course import REPO_ROOT, Course
from graders.similarity import synthetic


def pin(cores: int) -> list[int]:
    """Run this process (and its children) on at most ``cores`` CPUs; the CPUs used."""
    allowed = sorted(os.sched_getaffinity(0))[:cores]
    os.sched_setaffinity(0, allowed)
    return allowed


def make_course(root: Path, assignment: str, students: int) -> tuple[Course, int]:
    """A scratch course with ``students`` generated submissions; returns it and their bytes."""
    course = Course.scratch(root)
    shutil.copytree(REPO_ROOT / "release" / assignment, root / "release" / assignment)
    size = 0
    for name, nb in synthetic.large_class(Course(REPO_ROOT), assignment, students).items():
        size += course.submit(name, assignment, nb).stat().st_size
    return course, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="01_dnn")
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", help="append the result as a table row to this file")
    args = parser.parse_args(argv)
    cpus = pin(args.cores)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "course"
        start = time.perf_counter()
        course, size = make_course(root, args.assignment, args.students)
        print(f"generated {args.students} submissions of {args.assignment} "
              f"({size / 2**20:.1f} MiB) in {time.perf_counter() - start:.1f} s")
        inner, whole = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            report = similarity.run(course, args.assignment)
            inner.append(time.perf_counter() - start)
            start = time.perf_counter()
            cmd = [sys.executable, "-m", "graders", "--root", str(root), "similarity",
                   args.assignment]
            subprocess.run(cmd, check=True, capture_output=True,
                           env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
            whole.append(time.perf_counter() - start)
        cmp = report.comparison
    cpu = platform.processor() or platform.machine()
    line = (f"| {datetime.date.today()} | {args.assignment} | {args.students} | "
            f"{len(cmp.pairs)} | {statistics.median(inner):.1f} s | "
            f"{statistics.median(whole):.1f} s | {len(cpus)} of {os.cpu_count()} "
            f"({cpu}), Python {platform.python_version()} |")
    print(f"pairs sharing code: {len(cmp.pairs)}; in-process {min(inner):.2f}..{max(inner):.2f}"
          f" s; whole command {min(whole):.2f}..{max(whole):.2f} s")
    print(line)
    if args.markdown:
        with open(args.markdown, "a") as fh:
            fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
