"""Shards of a class and the gradebook rows that move between a worker's and the main gradebook.

Parallel grading never lets workers write the main gradebook: each worker grades one student in a
private scratch course whose SQLite gradebook holds only the assignment's definition
(:func:`make_worker_gradebook`), and the parent process, the only writer, then copies that
student's submission rows into the main gradebook (:func:`copy_submission`), which may be a
SQLite file or a PostgreSQL URL. Independent runs split the class by name with
:func:`parse_shard` / :func:`select_shard` (``--shard K/N``).

Everything goes through nbgrader's own SQLAlchemy models (:mod:`nbgrader.api`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from nbgrader.api import (
    Assignment,
    BaseCell,
    Comment,
    Gradebook,
    GradeCell,
    Notebook,
    SolutionCell,
    SourceCell,
    Student,
    SubmittedAssignment,
    SubmittedNotebook,
    TaskCell,
)
from nbgrader.api import Base as ModelBase
from nbgrader.api import Grade as GradeRow
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

__all__ = [
    "GradebookSyncError",
    "copy_submission",
    "make_worker_gradebook",
    "parse_shard",
    "select_shard",
    "shard_of",
]

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")

# Definition columns copied into a worker gradebook, per nbgrader model (ids included, so the
# worker's rows are the main gradebook's rows).
_DEFINITION_FIELDS: dict[type, tuple[str, ...]] = {
    Notebook: ("id", "name", "kernelspec", "assignment_id"),
    GradeCell: ("id", "name", "notebook_id", "max_score", "cell_type"),
    SolutionCell: ("id", "name", "notebook_id"),
    TaskCell: ("id", "name", "notebook_id", "max_score", "cell_type"),
    SourceCell: ("id", "name", "notebook_id", "cell_type", "locked", "source", "checksum"),
}
_STUDENT_FIELDS = ("first_name", "last_name", "email", "lms_user_id")


class GradebookSyncError(RuntimeError):
    """A gradebook lacks what a copy needs, or two gradebooks disagree on an assignment."""


# ------------------------------------------------------------------------------------ shards
def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (1 <= K <= N) as ``(K, N)``; a ValueError saying what is expected otherwise."""
    match = _SHARD.fullmatch(text or "")
    if not match:
        raise ValueError(f"shard must look like K/N (for example 1/2), not {text!r}")
    k, n = int(match[1]), int(match[2])
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"shard {text!r}: need 1 <= K <= N and N >= 1")
    return k, n


def shard_of(student: str, n: int) -> int:
    """The shard (1..n) of ``student``: a hash of the name alone, the same on every machine."""
    digest = hashlib.sha256(student.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def select_shard(students: Iterable[str], k: int, n: int) -> list[str]:
    """The students (in the given order, without repeats) that belong to shard ``k`` of ``n``.

    A student's shard depends on the name only, so adding students or listing them in another
    order never moves anyone; the ``n`` shards are disjoint and together hold every student.
    """
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: need 1 <= K <= N and N >= 1")
    return [s for s in dict.fromkeys(students) if shard_of(s, n) == k]


# ---------------------------------------------------------------------- worker gradebooks
def _copy_row(row: object, cls: type) -> object:
    return cls(**{name: getattr(row, name) for name in _DEFINITION_FIELDS[cls]})


def _find_assignment(session: Session, name: str, where: str) -> Assignment:
    found = session.query(Assignment).filter(Assignment.name == name).one_or_none()
    if found is None:
        raise GradebookSyncError(
            f"assignment {name!r} is not in the gradebook {where} (release it first)"
        )
    return found


def _alembic_version(session: Session) -> str | None:
    try:
        return session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception:  # a gradebook made without nbgrader's migrations table
        session.rollback()
        return None


def _create_schema(url: str, alembic_version: str | None) -> None:
    """nbgrader's tables at ``url``, stamped with ``alembic_version`` as nbgrader stamps them.

    Done here because nbgrader's Gradebook asks the ``alembic`` command for the version of a new
    database (a subprocess per worker, and one that needs ``alembic`` on PATH).
    """
    if alembic_version is None:
        return
    engine = create_engine(url)
    try:
        ModelBase.metadata.create_all(bind=engine)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            stamp = text("INSERT INTO alembic_version (version_num) VALUES (:v)")
            conn.execute(stamp, {"v": alembic_version})
    finally:
        engine.dispose()


def make_worker_gradebook(main_url: str, sqlite_path: Path, assignment: str) -> str:
    """A new SQLite gradebook at ``sqlite_path`` holding only ``assignment``'s definition.

    Copied from ``main_url``: the course id, the assignment (with its due date), its notebooks
    and their grade, solution, task and source cells (sources and checksums, so nbgrader restores
    edited or deleted test cells exactly as the main gradebook would). No students, no
    submissions. An existing file at ``sqlite_path`` is replaced. Returns the new URL.
    """
    sqlite_path = Path(sqlite_path).resolve()
    sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    sqlite_path.unlink(missing_ok=True)
    url = f"sqlite:///{sqlite_path}"
    with Gradebook(main_url) as main:
        source = _find_assignment(main.db, assignment, _safe_url(main_url))
        copy = Assignment(source.name, duedate=source.duedate, course_id=source.course_id)
        copy.id = source.id  # Assignment.__init__ drops other keywords
        rows: list[object] = [copy]
        version = _alembic_version(main.db)
        for notebook in source.notebooks:
            rows.append(_copy_row(notebook, Notebook))
            for cell in notebook._base_cells:
                rows.append(_copy_row(cell, type(cell)))
            rows.extend(_copy_row(cell, SourceCell) for cell in notebook.source_cells)
        _create_schema(url, version)
        with Gradebook(url, course_id=source.course_id) as worker:
            worker.db.add_all(rows)
            worker.db.commit()
    return url


# ------------------------------------------------------------------------ submission copies
@dataclass
class _NotebookResult:
    """What autograding wrote for one notebook of one submission (plain values, no session)."""

    late_submission_penalty: float | None
    grades: dict[str, tuple[float | None, bool]] = field(default_factory=dict)
    comments: dict[str, str | None] = field(default_factory=dict)


@dataclass
class _SubmissionResult:
    student: dict[str, str | None]
    timestamp: datetime | None
    notebooks: dict[str, _NotebookResult]


def _safe_url(url: str) -> str:
    """The URL without a password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _read_submission(src_url: str, assignment: str, student: str) -> _SubmissionResult:
    with Gradebook(src_url) as src:
        sub = (
            src.db.query(SubmittedAssignment)
            .join(Assignment, Assignment.id == SubmittedAssignment.assignment_id)
            .filter(Assignment.name == assignment, SubmittedAssignment.student_id == student)
            .one_or_none()
        )
        if sub is None:
            raise GradebookSyncError(
                f"no submission of {assignment!r} by {student!r} in {_safe_url(src_url)}"
            )
        notebooks = {}
        for nb in sub.notebooks:
            result = _NotebookResult(nb.late_submission_penalty)
            for grade in nb.grades:
                result.grades[grade.cell.name] = (grade.auto_score, bool(grade.needs_manual_grade))
            for comment in nb.comments:
                result.comments[comment.cell.name] = comment.auto_comment
            notebooks[nb.notebook.name] = result
        return _SubmissionResult(
            {name: getattr(sub.student, name) for name in _STUDENT_FIELDS},
            sub.timestamp,
            notebooks,
        )


def _one_or_new(session: Session, cls: type, **keys: object) -> object:
    row = session.query(cls).filter_by(**keys).one_or_none()
    if row is None:
        row = cls(**keys)
        session.add(row)
        session.flush()
    return row


def _graded_cells(notebook: Notebook) -> list[BaseCell]:
    return [*notebook.grade_cells, *notebook.task_cells]


def _commented_cells(notebook: Notebook) -> list[BaseCell]:
    return [*notebook.solution_cells, *notebook.task_cells]


def _check_same_cells(notebook: Notebook, result: _NotebookResult, what: str) -> None:
    graded = {c.name for c in _graded_cells(notebook)}
    commented = {c.name for c in _commented_cells(notebook)}
    if graded != set(result.grades) or commented != set(result.comments):
        raise GradebookSyncError(
            f"{what}: the two gradebooks disagree on the cells of notebook {notebook.name!r} "
            "(was the assignment released again since grading started?)"
        )


def _write_notebook(
    session: Session, submission: SubmittedAssignment, notebook: Notebook, result: _NotebookResult
) -> None:
    row = _one_or_new(
        session, SubmittedNotebook, assignment_id=submission.id, notebook_id=notebook.id
    )
    row.late_submission_penalty = result.late_submission_penalty
    for cell in _graded_cells(notebook):
        grade = _one_or_new(session, GradeRow, notebook_id=row.id, cell_id=cell.id)
        auto_score, needs_manual = result.grades[cell.name]
        grade.auto_score = auto_score
        # As nbgrader's SaveAutoGrades: an earlier manual score asks for another look.
        grade.needs_manual_grade = needs_manual or grade.manual_score is not None
    for cell in _commented_cells(notebook):
        comment = _one_or_new(session, Comment, notebook_id=row.id, cell_id=cell.id)
        comment.auto_comment = result.comments[cell.name]


def _write_submission(
    session: Session, assignment: str, student: str, result: _SubmissionResult, where: str
) -> None:
    target = _find_assignment(session, assignment, where)
    what = f"{assignment}/{student}"
    missing = set(result.notebooks) ^ {nb.name for nb in target.notebooks}
    if missing:
        raise GradebookSyncError(f"{what}: the gradebooks disagree on notebooks {sorted(missing)}")
    if session.get(Student, student) is None:
        session.add(Student(id=student, **result.student))
        session.flush()
    submission = _one_or_new(
        session, SubmittedAssignment, assignment_id=target.id, student_id=student
    )
    submission.timestamp = result.timestamp
    for notebook in target.notebooks:
        _check_same_cells(notebook, result.notebooks[notebook.name], what)
        _write_notebook(session, submission, notebook, result.notebooks[notebook.name])


def copy_submission(src_url: str, dst_url: str, assignment: str, student: str) -> None:
    """Put ``student``'s autograded submission of ``assignment`` from ``src_url`` into ``dst_url``.

    One transaction in ``dst_url``: the student row (if missing), the submission with its
    timestamp, every notebook (late penalty), grade (auto_score, needs_manual_grade) and
    comment (auto_comment). Rows are updated in place exactly as a re-run of ``nbgrader
    autograde`` on ``dst_url`` would: what a human put there (manual scores, extra credit,
    manual comments, flags, extensions) is kept, and a cell with a manual score is flagged for
    review again. Copying again changes nothing; other students are never touched. Works for
    any SQLAlchemy URL nbgrader accepts (SQLite, PostgreSQL).

    Raises GradebookSyncError when ``src_url`` has no such submission, ``dst_url`` does not
    know the assignment, or the two disagree on its notebooks or cells (nothing is written).
    """
    result = _read_submission(src_url, assignment, student)
    with Gradebook(dst_url) as dst:
        try:
            _write_submission(dst.db, assignment, student, result, _safe_url(dst_url))
            dst.db.commit()
        except BaseException:
            dst.db.rollback()
            raise
