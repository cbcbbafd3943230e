"""Benchmark: submissions per minute, plain serial ``nbgrader autograde`` vs ``graders autograde``.

Usage: python scripts/bench_graders.py [--submissions 8] [--assignment tiny|01_dnn|...]
       [--workers 1 2 4] [--out docs/benchmarks/graders.md]

One course is released once; every method grades the same ``--submissions`` copies of the same
sample submissions in a fresh copy of it: (a) one plain ``nbgrader autograde ASSIGNMENT`` (one
process, students one after another, no sandbox, no limits), (b) ``python -m graders autograde``
with each worker count (sandboxed when bubblewrap works) and once with 1 worker and
``--no-sandbox``. Every method must give the same scores. The default assignment is the tiny
synthetic one of the tests (tests/tinycourse.py: no torch, grading cost is almost all
overhead); ``--assignment 01_dnn`` uses a real one (its reference and partial samples).

Per-notebook overhead of the tool = (1-worker wall time - plain wall time) / submissions: a
scratch course, an nbgrader start-up, the merge into the gradebook and the sandbox per notebook;
the merge alone (make_worker_gradebook + copy_submission) and the sandbox share (sandbox vs
--no-sandbox) are reported separately. Writes a markdown table to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from graders import merge, samples  # noqa: E402
from graders.course import Course  # noqa: E402
from graders.sandbox import sandbox_status  # noqa: E402


@dataclass
class Measure:
    method: str
    seconds: float
    submissions: int
    note: str = ""

    @property
    def per_minute(self) -> float:
        return 60 * self.submissions / self.seconds


def build_course(base: Path, assignment: str) -> tuple[Course, list]:
    """A released course holding ``assignment`` and the sample notebooks to submit."""
    if assignment == "tiny":
        import tinycourse

        course = tinycourse.make_course(base / "released")
        notebooks = [
            tinycourse.submission(course),
            tinycourse.submission(course, wrong=("mul",)),
            tinycourse.submission(course, unsolved=("add", "square")),
        ]
        return course, notebooks
    course = Course.scratch(base / "released", origin=ROOT)
    course.generate_release(assignment)
    built = {s.student: s for s in samples.build(course, assignment, mutants=False)}
    return course, [built[name].notebook for name in ("ref", "partial") if name in built]


def fresh_copy(released: Course, dest: Path, assignment: str, notebooks: list, n: int) -> Course:
    """A copy of the released course with ``n`` submissions (the samples, round robin)."""
    shutil.copytree(released.root, dest, ignore=shutil.ignore_patterns("submitted", "autograded"))
    course = Course(dest)
    for i in range(n):
        course.submit(f"student{i:03d}", assignment, notebooks[i % len(notebooks)])
    return course


def scores(course: Course, assignment: str) -> dict[str, float]:
    return {s: g.score for s, g in course.grades(assignment).items()}


def time_plain(course: Course, assignment: str) -> float:
    start = time.perf_counter()
    proc = course.autograde(assignment)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"plain nbgrader autograde failed:\n{proc.stderr[-2000:]}")
    return seconds


def time_tool(course: Course, assignment: str, workers: int, sandbox: bool) -> float:
    cmd = [sys.executable, "-m", "graders", "--root", str(course.root), "autograde", assignment,
           "--workers", str(workers)] + ([] if sandbox else ["--no-sandbox"])
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return seconds


def time_merge(course: Course, assignment: str, scratch: Path) -> float:
    """Seconds per notebook for the gradebook part alone: worker gradebook + copy back."""
    students = sorted(scores(course, assignment))
    src = course.db_url
    start = time.perf_counter()
    for student in students:
        merge.make_worker_gradebook(src, scratch / f"{student}.db", assignment)
        merge.copy_submission(src, src, assignment, student)
    return (time.perf_counter() - start) / len(students)


def report(measures: list[Measure], extra: dict[str, str], assignment: str) -> str:
    """The markdown page."""
    plain = measures[0]
    lines = [
        "# Grading throughput: plain nbgrader vs `graders autograde`",
        "",
        f"Written by `scripts/bench_graders.py` (`make bench-graders`). Assignment `{assignment}`,"
        f" {plain.submissions} submissions, the same sample notebooks for every method; every"
        " method gave the same scores.",
        "",
        "| method | wall time (s) | submissions / minute | note |",
        "| --- | ---: | ---: | --- |",
    ]
    for m in measures:
        lines.append(f"| {m.method} | {m.seconds:.1f} | {m.per_minute:.1f} | {m.note} |")
    lines += ["", "| per-notebook figure | seconds |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="tiny", help="tiny (default) or one in source/")
    parser.add_argument("--submissions", type=int, default=8)
    cores = os.cpu_count() or 1
    parser.add_argument("--workers", type=int, nargs="+", default=sorted({1, 2, cores}))
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "graders.md"))
    parser.add_argument("--note", default="", help="a line about the machine for the page")
    args = parser.parse_args()
    n, a = args.submissions, args.assignment
    worker_counts = sorted(set(args.workers) | {1})
    sandboxed = sandbox_status().available
    kernels = "sandboxed kernels" if sandboxed else "no sandbox here (bubblewrap unavailable)"
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        released, notebooks = build_course(base, a)

        def run(label: str) -> Course:
            return fresh_copy(released, base / label, a, notebooks, n)

        plain_course = run("plain")
        measures = [Measure("plain `nbgrader autograde` (serial)",
                            time_plain(plain_course, a), n, "no sandbox, no limits")]
        expected = scores(plain_course, a)
        print(f"{measures[-1].method}: {measures[-1].seconds:.1f} s", flush=True)
        for workers in worker_counts:
            course = run(f"tool{workers}")
            seconds = time_tool(course, a, workers, sandbox=True)
            measures.append(Measure(f"`graders autograde --workers {workers}`", seconds, n,
                                    kernels))
            assert scores(course, a) == expected, f"{workers} workers: other scores"
            print(f"{measures[-1].method}: {seconds:.1f} s", flush=True)
        course = run("nosandbox")
        unsandboxed = time_tool(course, a, 1, sandbox=False)
        assert scores(course, a) == expected, "--no-sandbox: other scores"
        measures.append(Measure("`graders autograde --workers 1 --no-sandbox`", unsandboxed, n))
        one = next(m.seconds for m in measures if m.method.endswith("--workers 1`"))
        (base / "merge").mkdir()
        merge = time_merge(course, a, base / "merge")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    extra = {
        "plain nbgrader, per notebook": f"{measures[0].seconds / n:.2f}",
        "tool with 1 worker, per notebook": f"{one / n:.2f}",
        "tool overhead vs plain (1 worker), per notebook": f"{(one - measures[0].seconds) / n:.2f}",
        "of which the gradebook merge (worker gradebook + copy back)": f"{merge:.3f}",
        "of which the sandbox (1 worker, sandbox - no sandbox)": f"{(one - unsandboxed) / n:.2f}",
    }
    text = report(measures, extra, a)
    text += (
        f"\nMachine: {cores} CPU cores ({platform.processor() or platform.machine()}), "
        f"load average {load:.1f} at the end. {args.note}\n"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
