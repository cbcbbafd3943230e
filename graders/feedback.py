"""``python -m graders feedback``: per-student feedback pages, made by nbgrader itself.

The pages are written by the real ``nbgrader generate_feedback`` (what the formgrader's
"Generate Feedback" buttons run), with the preprocessors of the course's ``nbgrader_config.py``:
:class:`graders.feedback_preprocessor.SafeFeedback` rebuilds each autograded notebook so that
the page cannot show hidden tests (see that module). This command passes the same preprocessor
list on nbgrader's command line, so its pages are safe even with a configuration that lacks it,
and puts this package on ``PYTHONPATH`` for nbgrader, so any course folder works.

Output: ``feedback/<student>/<a>/<a>.html`` (nbgrader's layout); a table of student, score and
page; exit code 1 when a page could not be written (student not in the gradebook, nbgrader
failed) or ``--student`` names no autograded student.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from graders.course import REPO_ROOT, Course
from graders.feedback_preprocessor import PREPROCESSORS


@dataclass
class Feedback:
    """The page written for one student and assignment, and the score it shows."""

    student: str
    assignment: str
    path: Path
    score: float
    max_score: float


def generate(course: Course, assignment: str, student: str | None = None
             ) -> subprocess.CompletedProcess:
    """``nbgrader generate_feedback <a> --force`` (one student, or all autograded ones) with the
    safe preprocessors; nbgrader keeps going past a student it cannot do (see the result)."""
    args = ["generate_feedback", assignment, "--force"]
    if student:
        args.append(f"--student={student}")
    args += [f"--GenerateFeedback.preprocessors={name}" for name in PREPROCESSORS]
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return course.nbgrader(*args, env={"PYTHONPATH": path}, check=False)


def _errors(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in f"{proc.stdout}\n{proc.stderr}".splitlines() if "ERROR" in ln]
    return lines[-1].strip() if lines else f"nbgrader exited {proc.returncode}"


def write_feedback(course: Course, assignment: str, student: str | None = None
                   ) -> tuple[dict[str, Feedback], dict[str, str]]:
    """Write the pages of ``assignment`` (one student, or every autograded one) with one
    nbgrader run. Returns the pages written and, per student without a page, why."""
    students = course.autograded_students(assignment)
    if student is not None:
        students = [s for s in students if s == student]
    if not students:
        return {}, {}
    grades = course.grades(assignment)
    proc = generate(course, assignment, student)
    written, failed = {}, {}
    for name in students:
        path = course.feedback_path(name, assignment)
        if name not in grades:
            failed[name] = "not in the gradebook, no feedback"
        elif not path.is_file():
            failed[name] = f"no feedback: {_errors(proc)}"
        else:
            grade = grades[name]
            written[name] = Feedback(name, assignment, path, grade.score, grade.max_score)
    return written, failed


def report(course: Course, assignments: list[str], student: str | None = None) -> int:
    """Write the pages of ``assignments`` and print one line per student (score and page);
    exit status 0, or 1 when a page is missing or ``student`` has nothing autograded."""
    status = 0
    for assignment in assignments:
        written, failed = write_feedback(course, assignment, student)
        if not written and not failed:
            print(f"{assignment}: no autograded submissions"
                  + (f" of {student}" if student else ""))
            status = status or (1 if student else 0)
        for name in sorted({*written, *failed}):
            if name in failed:
                print(f"{assignment}  {name}: {failed[name]}", file=sys.stderr)
                status = 1
                continue
            fb = written[name]
            print(f"{assignment}  {name:<20} {fb.score:5.1f} / {fb.max_score:<5.1f}"
                  f"  {fb.path.relative_to(course.root)}")
    return status
