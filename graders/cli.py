"""Command line of the course's grading tool: ``python -m graders VERB --help``."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from graders import samples as samples_mod
from graders.course import Course, NbgraderError, SubmissionGrade


def _assignments(course: Course, chosen: str | None) -> list[str]:
    known = course.assignments()
    if chosen is None:
        return known
    if chosen not in known:
        raise SystemExit(f"unknown assignment {chosen!r}; known: {', '.join(known)}")
    return [chosen]


def cmd_release(args: argparse.Namespace) -> int:
    """Generate release/ from source/ (and record the assignments in gradebook.db)."""
    course = Course(args.root)
    for assignment in _assignments(course, args.assignment):
        path = course.generate_release(assignment)
        print(f"released {assignment}: {path.relative_to(course.root)}")
    return 0


def cmd_autograde(args: argparse.Namespace) -> int:
    """Autograde the submissions in submitted/ with nbgrader and print the scores."""
    course = Course(args.root)
    status = 0
    for assignment in _assignments(course, args.assignment):
        proc = course.autograde(assignment, student=args.student)
        if proc.returncode != 0:
            status = 1
            print(_failures(proc.stdout + proc.stderr), file=sys.stderr)
        _print_table(course.grades(assignment).values())
    return status


def cmd_grades(args: argparse.Namespace) -> int:
    """Print the gradebook and write it as CSV (nbgrader export)."""
    course = Course(args.root)
    for assignment in _assignments(course, args.assignment):
        _print_table(course.grades(assignment).values())
    out = Path(args.csv).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    course.nbgrader("export", f"--to={out}")
    print(f"gradebook written to {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Release every assignment, autograde freshly derived sample submissions, print grades."""
    course = Course(args.root)
    ok = True
    for assignment in _assignments(course, args.assignment):
        start = time.perf_counter()
        # Earlier demo students block regenerating a changed notebook (nbgrader refuses to
        # change cells that have submissions): remove them; real students are left alone.
        course.remove_students(samples_mod.student_names(assignment))
        course.generate_release(assignment)
        built = samples_mod.build(course, assignment)
        for student_dir in (course.root / "submitted").glob("*"):
            if (student_dir / assignment).is_dir():
                shutil.rmtree(student_dir / assignment)
        for sample in built:
            course.submit(sample.student, assignment, sample.notebook)
        print(f"\n== {assignment}: autograding {len(built)} sample submissions with nbgrader ...")
        course.autograde(assignment)
        grades = course.grades(assignment)
        refused = {
            s.student for s in built if not course.autograded_path(s.student, assignment).exists()
        }
        ok &= _print_demo(built, grades, refused)
        print(f"({time.perf_counter() - start:.0f} s)")
    out = course.root / "reports" / "grades.csv"
    out.parent.mkdir(exist_ok=True)
    course.nbgrader("export", f"--to={out}")
    print(f"\ngradebook CSV: {out.relative_to(course.root)}")
    print("every sample graded as expected" if ok else "SOME SAMPLES WERE NOT GRADED AS EXPECTED")
    return 0 if ok else 1


def _failures(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if "ERROR" in line) or log[-2000:]


def _print_table(subs) -> None:
    subs = sorted(subs, key=lambda s: s.student)
    if not subs:
        print("(no graded submissions)")
        return
    width = max(len(s.student) for s in subs)
    for s in subs:
        failed = ", ".join(s.failed()) or "-"
        print(f"{s.student:<{width}}  {s.score:5.1f} / {s.max_score:<5.1f}  lost: {failed}")


def _print_demo(built, grades: dict[str, SubmissionGrade], refused: set[str]) -> bool:
    width = max(len(s.student) for s in built)
    all_ok = True
    for sample in built:
        sub = grades.get(sample.student)
        if not sample.processed or sample.student in refused:
            expected = not sample.processed and sample.student in refused
            verdict = "[ok]  refused by nbgrader (scores 0)" if expected else "[UNEXPECTED] refused"
            all_ok &= expected
            print(f"  {sample.student:<{width}}  {'-':>13}  {verdict}: {sample.description}")
            continue
        if sub is None:
            all_ok = False
            print(f"  {sample.student:<{width}}  NOT GRADED")
            continue
        failed = set(sub.failed())
        ok = sample.must_fail <= failed and not (failed - sample.must_fail - sample.may_fail)
        all_ok &= ok
        mark = "ok" if ok else "UNEXPECTED"
        lost = ", ".join(sorted(failed)) if len(failed) < 5 else f"{len(failed)} test cells"
        print(
            f"  {sample.student:<{width}}  {sub.score:5.1f} / {sub.max_score:<5.1f}  [{mark}]"
            f"  {sample.description}; lost: {lost or '-'}"
        )
    return all_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m graders",
        description="Release, autograde and report the course's assignments (nbgrader inside).",
    )
    parser.add_argument("--root", default=str(Course().root), help="course root (default: repo)")
    verbs = parser.add_subparsers(dest="verb", required=True)
    for name, func in (
        ("release", cmd_release),
        ("autograde", cmd_autograde),
        ("grades", cmd_grades),
        ("demo", cmd_demo),
    ):
        p = verbs.add_parser(name, help=func.__doc__, description=func.__doc__)
        p.add_argument("assignment", nargs="?", help="one assignment (default: all)")
        p.set_defaults(func=func)
        if name == "autograde":
            p.add_argument("--student", help="only this student")
        if name == "grades":
            p.add_argument("--csv", default="reports/grades.csv", help="where to write the CSV")
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except NbgraderError as err:
        print(f"error: {_failures(str(err))}", file=sys.stderr)
        return 2
