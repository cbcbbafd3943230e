"""The gradebook: every read and write of nbgrader's database, and the grade they carry.

The one result type is :class:`SubmissionGrade` (one student's submission of one assignment,
with :class:`CellGrade` per grade cell): :func:`~graders.parallel.autograde` returns it with the
status, :func:`read_grades` gives it to the feedback and the autograde table, :func:`read_all`
to the export. Everything goes through nbgrader's own SQLAlchemy models (:mod:`nbgrader.api`),
for any URL nbgrader accepts (a SQLite file, PostgreSQL).

Parallel grading never lets workers write the main gradebook: each worker grades one student in
a private scratch course whose SQLite gradebook holds only the assignment's definition
(:func:`make_worker_gradebook`), and the parent process, the only writer, copies that student's
submission rows into the main gradebook (:func:`copy_submission`, which returns the grade).

Flags (findings of the static scan, strings like ``"flagged: reads IPython input history (In)
at cell affine line 3"``) are kept in nbgrader's own columns (:func:`set_flags`): the submitted
notebook's ``flagged`` and, per flag, the ``auto_comment`` of the solution cell the flag names.

A status other than graded or flagged has no place in nbgrader's schema: it is kept in a table
of this package's own in the same database (:mod:`graders.kept_status`), and the reads here
report it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from nbgrader.api import (
    Assignment,
    BaseCell,
    Comment,
    Gradebook,
    GradeCell,
    MissingEntry,
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
from graders.status import FLAGGED, GRADED, MISSING, is_scored

__all__ = [
    "CellGrade",
    "GradebookError",
    "NoGradebook",
    "SubmissionGrade",
    "copy_submission",
    "make_worker_gradebook",
    "read_all",
    "read_grades",
    "read_submission",
    "record_submission",
    "remove_students",
    "require_gradebook",
    "set_flags",
]

#: nbgrader's ``auto_comment`` of an unchanged solution cell; never a flag
NO_RESPONSE = "No response."

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
_FLAG_CELL = re.compile(r"\bat cell (\S+)")


class GradebookError(RuntimeError):
    """A gradebook lacks what a copy needs, or two gradebooks disagree on an assignment."""


class NoGradebook(FileNotFoundError):
    """The gradebook URL names a SQLite file that does not exist."""


# ------------------------------------------------------------------------------ the grade
@dataclass
class CellGrade:
    """One grade cell of one submission, as the gradebook has it."""

    grade_id: str
    score: float
    max_score: float
    needs_manual_grade: bool = False
    test: bool = True  # an auto-graded code cell (a test cell); False: a written answer

    @property
    def passed(self) -> bool:
        return self.score >= self.max_score


@dataclass
class SubmissionGrade:
    """How one student's submission of one assignment was graded, and what it scored.

    ``status`` is a word of :mod:`graders.status` with a one-line ``reason``; ``flags`` are the
    scan's findings (a graded submission with flags is ``flagged``, the first flag its reason,
    see :meth:`add_flags`). ``cells`` (grade id -> :class:`CellGrade`, in notebook order) and
    ``in_gradebook`` come from the gradebook: a submission with no row there (missing, or
    never graded) has no cells. ``seconds``: the grading time, when autograde measured it.
    ``partial_points``: for a run stopped before nbgrader saved anything, the points of the test
    cells that completed (written into the gradebook when the grade is recorded).
    """

    assignment: str
    student: str
    status: str = GRADED
    reason: str = ""
    flags: list[str] = field(default_factory=list)
    cells: dict[str, CellGrade] = field(default_factory=dict)
    in_gradebook: bool = True
    seconds: float = 0.0
    partial_points: dict[str, float] | None = None

    @property
    def score(self) -> float:
        return sum(c.score for c in self.cells.values())

    @property
    def max_score(self) -> float:
        return sum(c.max_score for c in self.cells.values())

    @property
    def graded(self) -> bool:
        """nbgrader's verdict stands (graded or flagged), rather than a limit or a refusal."""
        return is_scored(self.status)

    def failed(self) -> list[str]:
        """The test cells that did not earn full marks, in notebook order."""
        return [g for g, c in self.cells.items() if c.test and c.score < c.max_score]

    def add_flags(self, flags: Iterable[str]) -> SubmissionGrade:
        """Add the scan's findings; a graded submission becomes ``flagged`` with the first
        flag as its reason (other statuses say more and stay). Returns ``self``."""
        self.flags += [f for f in flags if f not in self.flags]
        if self.flags and self.status == GRADED:
            self.status, self.reason = FLAGGED, self.flags[0]
        return self


def _score(grade: GradeRow) -> float:
    """nbgrader's ``Grade.score``: the manual score over the auto score, plus extra credit."""
    base = grade.manual_score if grade.manual_score is not None else grade.auto_score
    return float(base or 0.0) + float(grade.extra_credit or 0.0)


def _cell_key(order: Sequence[str] | None) -> Callable[[str], tuple]:
    """Sort key of grade ids: their place in ``order`` (notebook order), then the name."""
    pos = {name: i for i, name in enumerate(order or ())}
    return lambda name: (pos.get(name, len(pos)), name)


def _graded_cells(notebook: Notebook) -> list[BaseCell]:
    return [*notebook.grade_cells, *notebook.task_cells]


def _commented_cells(notebook: Notebook) -> list[BaseCell]:
    return [*notebook.solution_cells, *notebook.task_cells]


def _grade_of(
    assignment: Assignment, student: str, sub: SubmittedAssignment | None,
    order: Sequence[str] | None = None,
) -> SubmissionGrade:
    """The :class:`SubmissionGrade` of ``student`` from nbgrader's rows (``sub`` None: no
    submission, every cell scored 0)."""
    grade = SubmissionGrade(assignment.name, student, in_gradebook=sub is not None)
    rows = {}
    if sub is not None:
        for nb in sub.notebooks:
            rows.update({g.cell_id: g for g in nb.grades})
            grade.flags += _stored_flags(nb, order) if nb.flagged else []
            if nb.flagged:
                grade.status = FLAGGED
    else:
        grade.status, grade.reason = MISSING, "no submission in the gradebook"
    grade.cells = _cells(assignment, rows, order)
    if grade.status == FLAGGED:
        grade.reason = grade.flags[0] if grade.flags else "flagged for review"
    return grade


def _cells(
    assignment: Assignment, rows: dict[str, GradeRow], order: Sequence[str] | None = None
) -> dict[str, CellGrade]:
    """Per grade cell of ``assignment`` (in ``order``), its grade from ``rows`` (cell id ->
    nbgrader's grade row; a cell without one scores 0)."""
    cells = [c for nb in assignment.notebooks for c in _graded_cells(nb)]
    key = _cell_key(order)
    out = {}
    for cell in sorted(cells, key=lambda c: key(c.name)):
        row = rows.get(cell.id)
        out[cell.name] = CellGrade(
            cell.name,
            _score(row) if row is not None else 0.0,
            float(cell.max_score or 0.0),
            bool(row.needs_manual_grade) if row is not None else False,
            cell.cell_type == "code",
        )
    return out


def _with_status(grade: SubmissionGrade, stored: dict[str, tuple[str, str]]) -> SubmissionGrade:
    if grade.student in stored:
        grade.status, grade.reason = stored[grade.student]
    return grade


# ------------------------------------------------------------------------------ reading
def require_gradebook(db_url: str) -> None:
    """:class:`NoGradebook` when ``db_url`` is a SQLite file that does not exist (nbgrader
    would silently create an empty one, and every student would be "not in the gradebook")."""
    sqlite_file = db_url.removeprefix("sqlite:///")
    if sqlite_file != db_url and not Path(sqlite_file).is_file():
        raise NoGradebook(f"no gradebook at {sqlite_file} (wrong --root or --db-url?)")


def read_submission(
    db_url: str, assignment: str, student: str, order: Sequence[str] | None = None
) -> SubmissionGrade | None:
    """The grade of one submission, or None when the gradebook has none."""
    with Gradebook(db_url) as gb:
        try:
            sub = gb.find_submission(assignment, student)
        except MissingEntry:
            return None
        return _grade_of(sub.assignment, student, sub, order)


def read_grades(
    db_url: str, assignment: str, order: Sequence[str] | None = None
) -> dict[str, SubmissionGrade]:
    """Per student with a submission of ``assignment``, its grade (cells in ``order``, grade
    ids as in the source notebook, else as the gradebook stored them)."""
    require_gradebook(db_url)
    with Gradebook(db_url) as gb:
        try:
            definition = gb.find_assignment(assignment)
        except MissingEntry:
            return {}
        stored = kept_status.stored(gb.engine, assignment)
        return {
            sub.student_id: _with_status(_grade_of(definition, sub.student_id, sub, order),
                                         stored)
            for sub in sorted(definition.submissions, key=lambda s: s.student_id)
        }


def read_all(
    db_url: str,
    assignments: Sequence[str] | None = None,
    order: Callable[[str], Sequence[str] | None] | None = None,
) -> list[SubmissionGrade]:
    """One grade per student x assignment of the gradebook (``assignments`` limits them;
    default all). A student without a submission gets status ``missing``, no score and every
    cell at 0. ``order(assignment)`` may give the grade ids in notebook order."""
    require_gradebook(db_url)
    rows = []
    with Gradebook(db_url) as gb:
        known = [a.name for a in gb.assignments]
        chosen = known if assignments is None else [a for a in assignments if a in known]
        students = sorted(s.id for s in gb.students)
        for name in chosen:
            definition = gb.find_assignment(name)
            cell_order = order(name) if order else None
            subs = {s.student_id: s for s in definition.submissions}
            stored = kept_status.stored(gb.engine, name)
            rows += [_with_status(_grade_of(definition, s, subs.get(s), cell_order), stored)
                     for s in students]
    return rows


# ------------------------------------------------------------------------------ writing
def remove_students(db_url: str, students: Iterable[str]) -> None:
    """Delete these students and all their submissions from the gradebook (if present)."""
    try:
        require_gradebook(db_url)
    except NoGradebook:
        return
    students = list(students)
    with Gradebook(db_url) as gb:
        for student in students:
            try:
                gb.remove_student(student)
            except MissingEntry:
                pass
        kept_status.forget(gb.engine, students)


def _stored_flags(nb: SubmittedNotebook, order: Sequence[str] | None = None) -> list[str]:
    """The flags :func:`set_flags` stored in a submitted notebook's auto comments."""
    key = _cell_key(order)
    comments = sorted(nb.comments, key=lambda c: key(c.cell.name))
    found = []
    for comment in comments:
        if comment.auto_comment and comment.auto_comment != NO_RESPONSE:
            found += [line for line in comment.auto_comment.splitlines() if line.strip()]
    return found


def set_flags(
    db_url: str,
    assignment: str,
    student: str,
    flags: Sequence[str],
    notebook: str | None = None,
    order: Sequence[str] | None = None,
) -> None:
    """Keep the scan's ``flags`` for a submission in the gradebook, where the export (and
    nbgrader's formgrader) sees them: the submitted notebook is ``flagged`` (nbgrader's "flag
    for review"), and each flag becomes the ``auto_comment`` of the solution cell it names
    (``... at cell <grade id> ...``), or of the first solution cell (in ``order``, the grade
    ids in notebook order, else by name); several flags of one cell share its comment, one per
    line. No flags: the notebook is unflagged and nothing else changes. Call it after the
    submission's rows were written (autograde and :func:`copy_submission` rewrite the auto
    comments). ``notebook`` defaults to the assignment's notebook of the same name, else its
    first."""
    with Gradebook(db_url) as gb:
        _mark_flags(gb.find_submission(assignment, student), flags, notebook, order)
        gb.db.commit()


def _mark_flags(
    sub: SubmittedAssignment,
    flags: Sequence[str],
    notebook: str | None = None,
    order: Sequence[str] | None = None,
) -> None:
    """:func:`set_flags` on a submission's rows in an open session (not committed)."""
    nbs = {nb.notebook.name: nb for nb in sub.notebooks}
    if not nbs:
        raise GradebookError(f"{sub.assignment.name}/{sub.student_id}: the submission has no "
                             "notebooks")
    name = notebook or (sub.assignment.name if sub.assignment.name in nbs else sorted(nbs)[0])
    row = nbs[name]
    row.flagged = bool(flags)
    comments = {c.cell.name: c for c in row.comments if isinstance(c.cell, SolutionCell)}
    ordered = sorted(comments, key=_cell_key(order))
    per_cell: dict[str, list[str]] = {}
    for flag in flags:
        match = _FLAG_CELL.search(flag)
        target = match[1] if match and match[1] in comments else None
        if target is None and ordered:
            target = ordered[0]
        if target is not None:
            per_cell.setdefault(target, []).append(" ".join(flag.split()))
    for cell, lines in per_cell.items():
        comments[cell].auto_comment = "\n".join(lines)


def set_auto_scores(
    db_url: str, assignment: str, student: str, points: dict[str, float]
) -> None:
    """Score the auto-graded test cells of a submission whose grading was stopped before
    nbgrader saved anything (:mod:`graders.partial`): each cell in ``points`` gets that score
    (capped at its maximum), every other auto-graded code cell 0. nbgrader's autograde created
    the submission's rows when it started, so they exist."""
    with Gradebook(db_url) as gb:
        sub = gb.find_submission(assignment, student)
        for nb in sub.notebooks:
            for grade in nb.grades:
                if grade.cell_type != "code" or isinstance(grade.cell, SolutionCell):
                    continue
                earned = points.get(grade.cell.name, 0.0)
                grade.auto_score = max(0.0, min(float(grade.max_score), earned))
                grade.needs_manual_grade = False
        gb.db.commit()


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
    :func:`graders.kept_status.set_status` keeps it. Nothing is written when any of it fails.
    """
    a, student = grade.assignment, grade.student
    result = _read_submission(src_url, a, student)
    flags = list(scan()) if result is not None else []
    with _session(dst_url) as db:
        if kept_status.keeps(grade.status):  # its table must exist
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
                kept_status.write(connection, a, student, grade.status, grade.reason)
            db.commit()
        except BaseException:
            db.rollback()
            raise
