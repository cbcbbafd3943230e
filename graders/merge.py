"""Worker gradebooks and the parent's merge: how a submission graded in a private scratch
course reaches the main gradebook (:mod:`graders.parallel`).

A worker grades one student in a scratch course whose SQLite gradebook holds only the
assignment's definition (:func:`make_worker_gradebook`); the parent process, the only writer of
the main gradebook, then copies that student's rows into it: :func:`record_submission` with the
static scan's flags and the status in one transaction (what ``graders autograde`` does),
:func:`copy_submission` the rows alone. Both write exactly what ``nbgrader autograde`` run on the
main gradebook would (``tests/test_gradebook.py`` compares), through nbgrader's own models, for
any URL nbgrader accepts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
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
from sqlalchemy.orm import Session, with_polymorphic

from graders import kept_status

# the grade's own helpers (one definition of a cell's score, of the cells a grade has)
from graders.gradebook import (
    GradebookError,
    SubmissionGrade,
    _cells,
    _commented_cells,
    _grade_of,
    _graded_cells,
    _mark_flags,
)
from graders.status import FLAGGED, GRADED

__all__ = ["copy_submission", "make_worker_gradebook", "record_submission"]

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


# ---------------------------------------------------------------------- worker gradebooks
def _copy_row(row: object, cls: type) -> object:
    return cls(**{name: getattr(row, name) for name in _DEFINITION_FIELDS[cls]})


def _find_assignment(session: Session, name: str, where: str) -> Assignment:
    found = session.query(Assignment).filter(Assignment.name == name).one_or_none()
    if found is None:
        raise GradebookError(
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


@contextlib.contextmanager
def _session(url: str) -> Iterator[Session]:
    """A session on an existing gradebook, without what nbgrader's :class:`Gradebook` does on
    every open (its schema checked table by table, its course row looked up): for the merge,
    which runs once per submission on gradebooks :func:`make_worker_gradebook` already
    checked."""
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _read_submission(src_url: str, assignment: str, student: str) -> _SubmissionResult | None:
    """What autograding wrote for one submission in ``src_url`` (None: no submission): plain
    values read column by column, a few queries whatever the number of cells."""
    with _session(src_url) as db:
        sub = (
            db.query(SubmittedAssignment)
            .join(Assignment, Assignment.id == SubmittedAssignment.assignment_id)
            .filter(Assignment.name == assignment, SubmittedAssignment.student_id == student)
            .one_or_none()
        )
        if sub is None:
            return None
        names = dict(
            db.query(BaseCell.id, BaseCell.name)
            .join(Notebook, Notebook.id == BaseCell.notebook_id)
            .filter(Notebook.assignment_id == sub.assignment_id)
        )
        notebooks = {}
        for nb_id, nb_name, penalty in (
            db.query(SubmittedNotebook.id, Notebook.name,
                     SubmittedNotebook.late_submission_penalty)
            .join(Notebook, Notebook.id == SubmittedNotebook.notebook_id)
            .filter(SubmittedNotebook.assignment_id == sub.id)
        ):
            result = notebooks[nb_name] = _NotebookResult(penalty)
            for cell_id, auto_score, needs_manual in db.query(
                GradeRow.cell_id, GradeRow.auto_score, GradeRow.needs_manual_grade
            ).filter(GradeRow.notebook_id == nb_id):
                result.grades[names[cell_id]] = (auto_score, bool(needs_manual))
            for cell_id, auto_comment in db.query(Comment.cell_id, Comment.auto_comment).filter(
                Comment.notebook_id == nb_id
            ):
                result.comments[names[cell_id]] = auto_comment
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


def _check_same_cells(notebook: Notebook, result: _NotebookResult, what: str) -> None:
    graded = {c.name for c in _graded_cells(notebook)}
    commented = {c.name for c in _commented_cells(notebook)}
    if graded != set(result.grades) or commented != set(result.comments):
        raise GradebookError(
            f"{what}: the two gradebooks disagree on the cells of notebook {notebook.name!r} "
            "(was the assignment released again since grading started?)"
        )


def _write_notebook(
    session: Session, submission: SubmittedAssignment, notebook: Notebook, result: _NotebookResult
) -> dict[str, GradeRow]:
    """Write one notebook's rows; its grade rows by cell id (scores as now in the session)."""
    row = _one_or_new(
        session, SubmittedNotebook, assignment_id=submission.id, notebook_id=notebook.id
    )
    row.late_submission_penalty = result.late_submission_penalty
    # The notebook's existing rows in one query each (not one per cell); new ones are added.
    grades = {g.cell_id: g for g in session.query(GradeRow).filter_by(notebook_id=row.id)}
    comments = {c.cell_id: c for c in session.query(Comment).filter_by(notebook_id=row.id)}
    for cell in _graded_cells(notebook):
        grade = grades.get(cell.id)
        if grade is None:
            grade = grades[cell.id] = GradeRow(notebook_id=row.id, cell_id=cell.id)
            session.add(grade)
        auto_score, needs_manual = result.grades[cell.name]
        grade.auto_score = auto_score
        # As nbgrader's SaveAutoGrades: an earlier manual score asks for another look.
        grade.needs_manual_grade = needs_manual or grade.manual_score is not None
    for cell in _commented_cells(notebook):
        comment = comments.get(cell.id)
        if comment is None:
            comment = Comment(notebook_id=row.id, cell_id=cell.id)
            session.add(comment)
        comment.auto_comment = result.comments[cell.name]
    return grades


def _write_submission(
    session: Session, assignment: str, student: str, result: _SubmissionResult, where: str
) -> tuple[Assignment, SubmittedAssignment, dict[str, GradeRow]]:
    """Write one submission's rows; the assignment, the submission and its grade rows by cell
    id (see :func:`_write_notebook`)."""
    target = _find_assignment(session, assignment, where)
    # Every cell of the assignment with its kind's columns, in one query (a notebook's cells
    # otherwise load their max score and type one query per cell); held here, since the
    # session keeps only what is referenced, until the notebooks' cell lists hold them.
    cells = session.query(with_polymorphic(BaseCell, "*")).join(
        Notebook, Notebook.id == BaseCell.notebook_id
    ).filter(Notebook.assignment_id == target.id).all()
    what = f"{assignment}/{student}"
    missing = set(result.notebooks) ^ {nb.name for nb in target.notebooks}
    if missing:
        raise GradebookError(f"{what}: the gradebooks disagree on notebooks {sorted(missing)}")
    if session.get(Student, student) is None:
        session.add(Student(id=student, **result.student))
        session.flush()
    submission = _one_or_new(
        session, SubmittedAssignment, assignment_id=target.id, student_id=student
    )
    submission.timestamp = result.timestamp
    rows: dict[str, GradeRow] = {}
    for notebook in target.notebooks:
        _check_same_cells(notebook, result.notebooks[notebook.name], what)
        rows.update(_write_notebook(session, submission, notebook, result.notebooks[notebook.name]))
    del cells
    return target, submission, rows


def copy_submission(
    src_url: str, dst_url: str, assignment: str, student: str, order: Sequence[str] | None = None
) -> SubmissionGrade:
    """Put ``student``'s autograded submission of ``assignment`` from ``src_url`` into ``dst_url``.

    One transaction in ``dst_url``: the student row (if missing), the submission with its
    timestamp, every notebook (late penalty), grade (auto_score, needs_manual_grade) and
    comment (auto_comment). Rows are updated in place exactly as a re-run of ``nbgrader
    autograde`` on ``dst_url`` would: what a human put there (manual scores, extra credit,
    manual comments, flags, extensions) is kept, and a cell with a manual score is flagged for
    review again. Copying again changes nothing; other students are never touched. Works for
    any SQLAlchemy URL nbgrader accepts (SQLite, PostgreSQL).

    Returns the submission's grade as ``dst_url`` now has it (manual scores and flags
    included; cells in ``order``, see :func:`read_grades`), status ``graded`` or ``flagged``.
    Raises GradebookError when ``src_url`` has no such submission, ``dst_url`` does not
    know the assignment, or the two disagree on its notebooks or cells (nothing is written).
    """
    result = _read_submission(src_url, assignment, student)
    if result is None:
        raise GradebookError(
            f"no submission of {assignment!r} by {student!r} in {_safe_url(src_url)}"
        )
    with Gradebook(dst_url) as dst:
        try:
            target, submission, _ = _write_submission(
                dst.db, assignment, student, result, _safe_url(dst_url)
            )
            dst.db.flush()
            grade = _grade_of(target, student, submission, order)  # before commit expires it all
            dst.db.commit()
        except BaseException:
            dst.db.rollback()
            raise
        return grade


def record_submission(
    src_url: str,
    dst_url: str,
    grade: SubmissionGrade,
    scan: Callable[[], Sequence[str]],
    order: Sequence[str] | None = None,
) -> None:
    """The parent's merge of one grading run (``graders autograde``): ``grade``'s submission
    from the worker gradebook ``src_url`` into ``dst_url`` with one read of each and one
    transaction in ``dst_url``.

    When ``src_url`` has the submission: its rows as :func:`copy_submission` writes them,
    ``grade`` gets the cells the main gradebook now has, and ``scan()`` (the static scan's
    findings, called only then) is stored as :func:`set_flags` stores it and added to
    ``grade`` (a graded submission becomes flagged). In any case ``grade``'s status is kept as
    :func:`graders.kept_status.set_status` keeps it. When any of it fails nothing is written
    and ``grade`` is left as it was.
    """
    a, student = grade.assignment, grade.student
    result = _read_submission(src_url, a, student)
    flags = list(scan()) if result is not None else []
    before = dataclasses.replace(grade, flags=list(grade.flags), cells=dict(grade.cells))
    note = grade.reason if grade.status == GRADED else ""  # kept as such if flags come
    with _session(dst_url) as db:
        if kept_status.keeps(grade.status, grade.reason):  # its table must exist
            kept_status.ensure_table(db.get_bind())
        try:
            if result is not None:
                target, submission, rows = _write_submission(db, a, student, result,
                                                             _safe_url(dst_url))
                # the scores as written (manual ones kept), before a flush expires them
                grade.cells, grade.in_gradebook = _cells(target, rows, order), True
                _mark_flags(submission, flags, order=order)
                grade.add_flags(flags)
            connection = db.connection()
            if kept_status.has_table(connection):
                kept = (GRADED, note) if grade.status == FLAGGED else (grade.status, grade.reason)
                kept_status.write(connection, a, student, *kept)
            db.commit()
        except BaseException:
            db.rollback()
            for f in dataclasses.fields(grade):
                setattr(grade, f.name, getattr(before, f.name))
            raise
