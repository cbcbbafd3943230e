"""Command line of the course's grading tool: ``python -m graders VERB --help``."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import nbformat

from graders import gradebook_sync, notebooks, parallel
from graders import samples as samples_mod
from graders.course import Course, NbgraderError


def _assignments(course: Course, chosen: str | None) -> list[str]:
    known = course.assignments()
    if chosen is None:
        return known
    if chosen not in known:
        raise SystemExit(f"unknown assignment {chosen!r}; known: {', '.join(known)}")
    return [chosen]


def cmd_release(args: argparse.Namespace) -> int:
    """Generate release/ from source/ (and record the assignments in the gradebook)."""
    course = Course(args.root, db_url=args.db_url)
    for assignment in _assignments(course, args.assignment):
        path = course.generate_release(assignment)
        print(f"released {assignment}: {path.relative_to(course.root)}")
        if getattr(args, "zip", False):
            from graders.export import zip_release

            out = zip_release(course, assignment)
            print(f"student zip of {assignment}: {out.relative_to(course.root)}")
    return 0


def cmd_autograde(args: argparse.Namespace) -> int:
    """Autograde submitted/ in parallel: each notebook by the real `nbgrader autograde` in a
    private scratch course (kernels sandboxed when bubblewrap works), merged into the gradebook
    by this process alone. Prints one line per submission (graded / timed out / crashed /
    missing / refused, with the reason); exits 0 only if every submission was graded."""
    course = Course(args.root, db_url=args.db_url)
    try:
        shard = gradebook_sync.parse_shard(args.shard) if args.shard else None
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    settings = parallel.settings_from_args(args)
    students = [args.student] if args.student else None
    jobs = parallel.select_jobs(course, _assignments(course, args.assignment), students, shard)
    if not jobs:
        print("nothing to grade: no student folders in submitted/ (or in this shard)")
        return 0
    results = parallel.grade_and_report(course, jobs, settings)
    return 0 if all(r.graded for r in results) else 1


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


def cmd_collect(args: argparse.Namespace) -> int:
    """Import submissions from a folder or a Moodle/Canvas zip into submitted/ (see
    graders/collect.py for the layouts, student ids and the duplicate rule); exit 1 if any file
    was refused."""
    from graders import collect as collect_mod

    course = Course(args.root)
    known = course.assignments()
    only = _assignments(course, args.assignment)[0] if args.assignment else None
    ids = collect_mod.course_grade_ids({a: course.source_path(a) for a in known})
    try:
        report = collect_mod.collect(
            Path(args.source), course.root / "submitted", known, ids, only=only
        )
    except collect_mod.CollectError as err:
        raise SystemExit(f"error: {err}") from None
    print(report.table())
    return report.exit_code


def cmd_feedback(args: argparse.Namespace) -> int:
    """Write feedback/<student>/<a>/<a>.html for autograded students: pass/fail, points and
    error message per test cell, never the hidden tests' source."""
    from graders import feedback as feedback_mod

    course = Course(args.root)
    status = 0
    for assignment in _assignments(course, args.assignment):
        grades = course.grades(assignment)
        students = feedback_mod.graded_students(course, assignment)
        if args.student:
            students = [s for s in students if s == args.student]
        if not students:
            print(
                f"{assignment}: no autograded submissions"
                + (f" of {args.student}" if args.student else "")
            )
            status = status or (1 if args.student else 0)
        for student in students:
            if student not in grades:
                print(
                    f"{assignment}  {student}: not in the gradebook, no feedback", file=sys.stderr
                )
                status = 1
                continue
            fb = feedback_mod.write_feedback(course, assignment, student, grades[student])
            print(
                f"{assignment}  {student:<20} {fb.score:5.1f} / {fb.max_score:<5.1f}"
                f"  {fb.path.relative_to(course.root)}"
            )
    return status


def cmd_export(args: argparse.Namespace) -> int:
    """Write the gradebook as CSV (one row per student x assignment, total and per-cell scores)
    plus reports/score_distribution.png and reports/cell_failures.csv."""
    from graders import export as export_mod

    course = Course(args.root, db_url=args.db_url)
    chosen = [args.assignment] if args.assignment else None
    try:
        rows = export_mod.read_gradebook(course.db_url, chosen, course=course)
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err}") from None
    if args.assignment and not rows:
        raise SystemExit(f"error: assignment {args.assignment!r} is not in the gradebook")
    reports = course.root / "reports"
    csv_path = Path(args.csv).resolve() if args.csv else reports / "gradebook.csv"
    export_mod.write_csv(rows, csv_path)
    failures = export_mod.cell_failures(rows)
    fail_path = export_mod.write_failures_csv(failures, reports / "cell_failures.csv")
    png = export_mod.plot_distribution(rows, reports / "score_distribution.png")
    print(export_mod.format_failures(failures))
    for what, path in (("gradebook", csv_path), ("failure shares", fail_path), ("plot", png)):
        print(f"{what}: {path}")
    return 0


DEMO_COLLECTED = ("renamed", "text-only")  # students the demo hands in through `collect`
DEMO_CELL_TIMEOUT = 90  # s: the longest real cell takes 10 to 30 s on 2 busy cores


def cmd_demo(args: argparse.Namespace) -> int:
    """Release every assignment, autograde freshly derived sample submissions (adversarial ones
    included) with the parallel grader, print the table and check each got what it deserves."""
    course = Course(args.root)
    sandboxed = parallel.plan_sandbox(True).active
    ok = True
    chosen = _assignments(course, args.assignment)
    # Earlier demo students block regenerating a changed notebook (nbgrader refuses to change
    # cells that have submissions): remove them (with all their grades) once, before grading
    # anything, so that every assignment's demo grades stay in the gradebook for the export.
    # Real students are left alone.
    demo_students = {*samples_mod.ADVERSARIAL_STUDENTS, *DEMO_COLLECTED}
    for assignment in chosen:
        demo_students.update(samples_mod.student_names(assignment))
    course.remove_students(sorted(demo_students))
    for assignment in chosen:
        start = time.perf_counter()
        course.generate_release(assignment)
        built = samples_mod.build(course, assignment)
        # `escape` really writes outside its folder when unsandboxed: only run it sandboxed
        built += samples_mod.adversarial(course, assignment, escape=sandboxed)
        for student_dir in (course.root / "submitted").glob("*"):
            if (student_dir / assignment).is_dir():
                shutil.rmtree(student_dir / assignment)
        for sample in built:
            course.submit(sample.student, assignment, sample.notebook)
        built += _demo_collect(course, assignment, built[0].notebook)
        print(f"\n== {assignment}: autograding {len(built)} sample submissions in parallel ...")
        jobs = [parallel.Job(assignment, s.student) for s in built]
        settings = parallel.Settings(cell_timeout=DEMO_CELL_TIMEOUT)
        results = parallel.grade_and_report(course, jobs, settings)
        ok &= _print_demo(built, results)
        ok &= _demo_feedback(course, assignment, results)
        print(f"({time.perf_counter() - start:.0f} s)")
    print()
    cmd_export(argparse.Namespace(root=args.root, assignment=None, csv=None, db_url=None))
    print("every sample graded as expected" if ok else "SOME SAMPLES WERE NOT GRADED AS EXPECTED")
    return 0 if ok else 1


def _demo_collect(course: Course, assignment: str, reference: object) -> list[samples_mod.Sample]:
    """Hand two more students in the way a class does, through ``collect``: one saved the
    notebook as "Copy of <a>.ipynb" (renamed on the way in, then graded in full), one handed in
    a text file (refused, so missing at grading)."""
    from graders import collect as collect_mod

    inbox = course.root / "reports" / "demo-inbox" / assignment
    shutil.rmtree(inbox, ignore_errors=True)
    (inbox / "renamed").mkdir(parents=True)
    nbformat.write(reference, str(inbox / "renamed" / f"Copy of {assignment}.ipynb"))
    (inbox / "text-only").mkdir()
    (inbox / "text-only" / "answers.txt").write_text("I did the tasks on paper.\n")
    for student in ("renamed", "text-only"):
        shutil.rmtree(course.root / "submitted" / student / assignment, ignore_errors=True)
    known = course.assignments()
    ids = collect_mod.course_grade_ids({a: course.source_path(a) for a in known})
    report = collect_mod.collect(inbox, course.root / "submitted", known, ids, only=assignment)
    print(f"\n== {assignment}: collect {inbox.relative_to(course.root)}")
    print(report.table())
    return [
        samples_mod.Sample("renamed", reference, "saved under another name; collect renamed it"),
        samples_mod.Sample(
            "text-only", b"", "handed in a text file, refused by collect", status="missing"
        ),
    ]


def _demo_feedback(course: Course, assignment: str, results: list[parallel.Result]) -> bool:
    """Write every graded student's feedback page; none may contain a hidden test line."""
    from graders import feedback as feedback_mod

    grades = course.grades(assignment)
    secrets = feedback_mod.secret_lines(
        notebooks.read(course.source_path(assignment)),
        notebooks.read(course.release_path(assignment)),
    )
    leaks = []
    for result in results:
        if result.graded and result.student in grades:
            fb = feedback_mod.write_feedback(
                course, assignment, result.student, grades[result.student]
            )
            html = fb.path.read_text()
            leaks += [result.student for line in secrets if line in html][:1]
    print(
        f"  feedback: {course.root / 'feedback'}/<student>/{assignment}/{assignment}.html"
        f"; hidden test lines found in feedback: {len(leaks)}"
    )
    return not leaks


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


def _print_demo(built: list[samples_mod.Sample], results: list[parallel.Result]) -> bool:
    """Whether each sample got the status (and, if graded, the lost test cells) it deserves."""
    by_student = {r.student: r for r in results}
    width = max(len(s.student) for s in built)
    all_ok = True
    for sample in built:
        result = by_student[sample.student]
        ok = result.status == sample.status
        if ok and result.graded:
            failed = set(result.failed)
            ok = sample.must_fail <= failed and not (failed - sample.must_fail - sample.may_fail)
        all_ok &= ok
        mark = "ok" if ok else "UNEXPECTED"
        print(f"  [{mark}] {sample.student:<{width}}  {result.status}: {sample.description}")
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
        ("feedback", cmd_feedback),
        ("export", cmd_export),
    ):
        p = verbs.add_parser(name, help=func.__doc__, description=func.__doc__)
        p.add_argument("assignment", nargs="?", help="one assignment (default: all)")
        p.set_defaults(func=func)
        if name == "autograde":
            parallel.add_arguments(p)
        if name == "grades":
            p.add_argument("--csv", default="reports/grades.csv", help="where to write the CSV")
        if name == "release":
            p.add_argument(
                "--zip", action="store_true", help="also write reports/release/<a>.zip for students"
            )
            p.add_argument(
                "--db-url", help="gradebook URL, e.g. PostgreSQL (default: <root>/gradebook.db)"
            )
        if name == "feedback":
            p.add_argument("--student", help="only this student")
        if name == "export":
            p.add_argument("--csv", help="where to write the CSV (default: reports/gradebook.csv)")
            p.add_argument(
                "--db-url", help="gradebook URL (default: sqlite:///<root>/gradebook.db)"
            )
    p = verbs.add_parser("collect", help=cmd_collect.__doc__, description=cmd_collect.__doc__)
    p.add_argument("source", help="a folder or a .zip export of a learning platform")
    p.add_argument("--assignment", help="collect only this assignment's notebooks")
    p.set_defaults(func=cmd_collect)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except NbgraderError as err:
        print(f"error: {_failures(str(err))}", file=sys.stderr)
        return 2
