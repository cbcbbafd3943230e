"""Benchmark: what running the tests on the trusted side costs (issue 9: at most +20%).

Usage: python scripts/bench_verdict.py [ASSIGNMENT ...] [--repeats 3] [--tool nbgrader|graders]
       [--out FILE]

Per assignment, the reference submission is autograded ``--repeats`` times by two scratch
courses that differ in one line of ``nbgrader_config.py``, alternately (so that load from
elsewhere on the machine falls on both alike):

- *verdict*: the course as configured, :class:`graders.verdict.execute.VerdictExecute` (test
  cells on the trusted side, calling into the sandboxed student kernel);
- *in-kernel*: nbgrader's own ``Execute`` with the same sandboxed kernel manager, so the test
  cells run inside the student's kernel, as plain nbgrader does (what the verdict replaced),
  and the same immediate kernel shutdown (a graceful one costs 1.5-2.5 s more per notebook,
  in both modes alike).

``--tool nbgrader`` (default) times the whole ``nbgrader autograde --student`` command;
``--tool graders`` grades through :func:`graders.parallel.autograde` (one worker, what
``python -m graders autograde`` does: forked nbgrader processes that start with torch and the
course imported) and reports the grading process's seconds per submission; the forkserver they
fork from starts once per batch (about 6 s), so it is started before the timing. Both must
give the reference full marks. Reported per assignment: the median and the mean of the whole
``nbgrader autograde`` command for each, and the ratio of the medians. Appends a
dated section to ``--out`` (default docs/benchmarks/verdict.md) with the machine's load.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from graders import samples  # noqa: E402
from graders.course import Course  # noqa: E402

IN_KERNEL = """
# bench_verdict: the tests run inside the student's (sandboxed) kernel, as plain nbgrader does
c.Autograde.autograde_preprocessors = [
    "nbgrader.preprocessors.Execute" if p.endswith("VerdictExecute") else p
    for p in c.Autograde.autograde_preprocessors
]
c.Execute.kernel_manager_class = "graders.sandbox.SandboxKernelManager"
c.Execute.shutdown_kernel = "immediate"  # as the course's executor does: compare the tests only
"""


def _course(tmp: Path, name: str, assignment: str, extra: str = "") -> Course:
    course = Course.scratch(tmp / name, origin=ROOT)
    if extra:
        config = course.root / "nbgrader_config.py"
        config.write_text(config.read_text() + extra)
    course.generate_release(assignment)
    built = {s.student: s for s in samples.build(course, assignment, mutants=False)}
    course.submit("ref", assignment, built["ref"].notebook)
    return course


def _grade_with_graders(course: Course, assignment: str) -> float:
    from graders import parallel

    settings = parallel.Settings(workers=1, progress=False)
    [result] = parallel.autograde(course, parallel.select_jobs(course, [assignment]), settings)
    if result.score != result.max_score:
        raise SystemExit(f"{course.root.name}: the reference lost points: {result}")
    return result.seconds


def _grade(course: Course, assignment: str, env: dict[str, str], tool: str = "nbgrader") -> float:
    if tool == "graders":
        return _grade_with_graders(course, assignment)
    start = time.perf_counter()
    proc = course.autograde(assignment, student="ref", env=env)
    seconds = time.perf_counter() - start
    grade = course.grades(assignment).get("ref")
    if proc.returncode != 0 or grade is None or grade.score != grade.max_score:
        lost = grade.failed() if grade else "no grade"
        raise SystemExit(f"{course.root.name}: the reference lost points ({lost})\n"
                         f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return seconds


def bench(
    assignment: str, repeats: int, env: dict[str, str], tool: str = "nbgrader"
) -> dict[str, list[float]]:
    """Seconds per autograde of the reference, per mode."""
    with tempfile.TemporaryDirectory() as tmp:
        courses = {"verdict": _course(Path(tmp), "verdict", assignment),
                   "in-kernel": _course(Path(tmp), "in-kernel", assignment, IN_KERNEL)}
        times: dict[str, list[float]] = {mode: [] for mode in courses}
        for _ in range(repeats):
            for mode, course in courses.items():
                times[mode].append(_grade(course, assignment, env, tool))
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignments", nargs="*")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tool", choices=("nbgrader", "graders"), default="nbgrader")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "verdict.md")
    args = parser.parse_args()
    names = args.assignments or Course(ROOT).assignments()
    env: dict[str, str] = {}
    load_before = os.getloadavg()
    rows = []
    if args.tool == "graders":  # the forkserver starts once per process: not in the figures
        from graders import runner

        print(f"forkserver started in {runner.ForkedNbgrader.warm_up():.1f} s", flush=True)
    for name in names:
        t = bench(name, args.repeats, env, args.tool)
        v, k = statistics.median(t["verdict"]), statistics.median(t["in-kernel"])
        rows.append(f"| {name} | {k:.1f} ({statistics.mean(t['in-kernel']):.1f}) | "
                    f"{v:.1f} ({statistics.mean(t['verdict']):.1f}) | {v / k - 1:+.0%} |")
        print(rows[-1], flush=True)
    load_after = os.getloadavg()
    text = [
        f"\n## {datetime.date.today()}: {platform.node() or 'this machine'}, "
        f"{os.cpu_count()} cores, CPU",
        "",
        f"{args.repeats} autogrades of the reference per mode, alternating, with "
        f"`--tool {args.tool}`; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after.",
        "",
        "| assignment | in-kernel tests: median (mean) s | verdict: median (mean) s | cost |",
        "| --- | --- | --- | --- |",
        *rows,
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.out.exists():
        args.out.write_text("# What the trusted-side verdict costs (`scripts/bench_verdict.py`)\n")
    with args.out.open("a") as f:
        f.write("\n".join(text) + "\n")
    print(f"appended to {args.out}")


if __name__ == "__main__":
    main()
