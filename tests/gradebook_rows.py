"""Helpers for the gradebook-sync tests: the tiny course graded serially and the parallel way.

*Serially* is plain ``nbgrader autograde`` into the course's own gradebook. *Routed* is the
parallel design done by hand: per student a worker course with a private gradebook made by
:func:`~graders.merge.make_worker_gradebook`, a real ``nbgrader autograde`` there,
then :func:`~graders.merge.copy_submission` into the main gradebook. A gradebook is
compared through :func:`snapshot`: every submission row keyed by names, never by ids.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import tinycourse
from nbgrader.api import Gradebook, SubmittedAssignment
from sqlalchemy import text

from graders import cli
from graders.course import Course
from graders.merge import copy_submission, make_worker_gradebook

ASSIGNMENT = tinycourse.ASSIGNMENT
# student -> how their submission differs from the reference (see tinycourse.submission)
STUDENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "alice": {},
    "bob": {"wrong": ("mul",)},
    "carol": {"unsolved": ("add", "square")},
}
TIMESTAMP = "2024-05-01 10:00:00.000000 UTC"

_cache: dict[str, Course] = {}


def submit_all(course: Course) -> None:
    """Every student of STUDENTS submits (with a timestamp.txt, as ``nbgrader collect`` leaves)."""
    for student, how in STUDENTS.items():
        path = course.submit(student, ASSIGNMENT, tinycourse.submission(course, **how))
        (path.parent / "timestamp.txt").write_text(TIMESTAMP)


def grade_in_worker(main: Course, student: str, scratch: Path) -> str:
    """Grade ``student`` in a private scratch course and copy the rows into ``main``.

    Returns the worker gradebook's URL.
    """
    scratch.mkdir(parents=True)
    shutil.copy2(main.root / "nbgrader_config.py", scratch / "nbgrader_config.py")
    shutil.copytree(main.root / "source", scratch / "source")
    shutil.copytree(main.root / "submitted" / student, scratch / "submitted" / student)
    url = make_worker_gradebook(main.db_url, scratch / "gradebook.db", ASSIGNMENT)
    proc = Course(scratch).autograde(ASSIGNMENT, student)
    assert proc.returncode == 0, proc.stderr[-2000:]
    copy_submission(url, main.db_url, ASSIGNMENT, student)
    return url


def courses(base: Path) -> dict[str, Course]:
    """The tiny course released once, then graded serially and routed (built once per process).

    Keys: ``serial``, ``routed`` (submissions graded) and ``released`` (no submissions).
    """
    if not _cache:
        released = tinycourse.make_course(base / "released")
        serial = tinycourse.copy_course(released, base / "serial")
        routed = tinycourse.copy_course(released, base / "routed")
        for course in (serial, routed):
            submit_all(course)
        proc = serial.autograde(ASSIGNMENT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        for student in STUDENTS:
            grade_in_worker(routed, student, base / "workers" / student)
        _cache.update(released=released, serial=serial, routed=routed)
    return _cache


def snapshot(url: str) -> dict[tuple, tuple]:
    """Every submission row of ``url`` that grading writes or keeps, keyed by names."""
    rows: dict[tuple, tuple] = {}
    with Gradebook(url) as gb:
        for sub in gb.db.query(SubmittedAssignment):
            key = (sub.assignment.name, sub.student_id)
            rows[key] = (sub.timestamp, sub.extension)
            for nb in sub.notebooks:
                nb_key = (*key, nb.notebook.name)
                rows[nb_key] = (nb.late_submission_penalty, nb.flagged)
                for g in nb.grades:
                    rows[(*nb_key, "grade", g.cell.name)] = (
                        g.auto_score,
                        g.manual_score,
                        g.extra_credit,
                        g.needs_manual_grade,
                        g.max_score,
                    )
                for c in nb.comments:
                    rows[(*nb_key, "comment", c.cell.name)] = (c.auto_comment, c.manual_comment)
    return rows


def row_counts(url: str) -> dict[str, int]:
    """Number of rows per nbgrader table that a submission copy writes."""
    tables = ("student", "submitted_assignment", "submitted_notebook", "grade", "comment")
    with Gradebook(url) as gb:
        return {t: gb.db.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() for t in tables}


def check_reports(course: Course, flag: list[str], capsys) -> None:
    """The multi-machine recipe's last steps on a graded course (every student of STUDENTS):
    ``feedback``, ``grades`` and ``export`` with the course-wide gradebook (``flag`` is
    ``["--db-url", URL]`` or nothing, when the course's config names it). Feedback must exist
    for every student, and every table must hold every student with the right score."""
    root = ["--root", str(course.root), *flag]
    students = set(STUDENTS)
    assert cli.main([*root, "feedback", ASSIGNMENT]) == 0
    assert {s for s in students if course.feedback_path(s, ASSIGNMENT).is_file()} == students

    grades_csv = course.reports / "grades.csv"
    assert cli.main([*root, "grades", ASSIGNMENT, "--csv", str(grades_csv)]) == 0
    printed = capsys.readouterr().out
    assert all(s in printed for s in students) and "(no graded submissions)" not in printed
    with grades_csv.open(newline="") as fh:
        assert {r["student_id"] for r in csv.DictReader(fh)} == students

    assert cli.main([*root, "export"]) == 0
    with (course.reports / "gradebook.csv").open(newline="") as fh:
        exported = {r["student"]: r for r in csv.DictReader(fh)}
    assert set(exported) == students
    for student, how in STUDENTS.items():
        assert exported[student]["status"] == "graded"
        want = sum(tinycourse.expected_scores(**how).values())
        assert float(exported[student]["score"]) == want, student
    assert not (course.root / "gradebook.db").exists()  # nothing fell back to a local SQLite
