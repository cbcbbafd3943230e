"""The gradebook: the reads and writes of nbgrader's database, and the grade they carry
(the worker gradebooks and the merge of a worker's rows are :mod:`graders.merge`).

The one result type is :class:`SubmissionGrade` (one student's submission of one assignment,
with :class:`CellGrade` per grade cell): :func:`~graders.parallel.autograde` returns it with the
status, :func:`read_grades` gives it to the feedback and the autograde table, :func:`read_all`
to the export. Everything goes through nbgrader's own SQLAlchemy models (:mod:`nbgrader.api`),
for any URL nbgrader accepts (a SQLite file, PostgreSQL).

Parallel grading never lets workers write the main gradebook: each worker grades one student in
a private scratch course whose SQLite gradebook holds only the assignment's definition
(:func:`graders.merge.make_worker_gradebook`), and the parent process, the only writer, copies
that student's submission rows into the main gradebook (:mod:`graders.merge`).

Flags (findings of the static scan, strings like ``"flagged: reads IPython input history (In)
at cell affine line 3"``) are kept in nbgrader's own columns (:func:`set_flags`): the submitted
notebook's ``flagged`` and, per flag, the ``auto_comment`` of the solution cell the flag names.

A status other than graded or flagged has no place in nbgrader's schema: it is kept in a table
of this package's own in the same database (:mod:`graders.kept_status`), and the reads here
report it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import (
    Assignment,
    BaseCell,
    Gradebook,
    MissingEntry,
    Notebook,
    SolutionCell,
    SubmittedAssignment,
    SubmittedNotebook,
)
from nbgrader.api import Grade as GradeRow

from graders import kept_status
from graders.status import FLAGGED, GRADED, MISSING, is_scored

__all__ = [
    "CellGrade",
    "GradebookError",
    "NoGradebook",
    "SubmissionGrade",
    "read_all",
    "read_grades",
    "read_submission",
    "remove_students",
    "require_gradebook",
    "set_flags",
]

#: nbgrader's ``auto_comment`` of an unchanged solution cell; never a flag
NO_RESPONSE = "No response."

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
        flag as its reason (then its note, if any; other statuses say more and stay). Returns
        ``self``."""
        self.flags += [f for f in flags if f not in self.flags]
        if self.flags and self.status == GRADED:  # a note of the run stays after the flag
            self.status, self.reason = FLAGGED, "; ".join(filter(None, [self.flags[0],
                                                                       self.reason]))
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
        status, reason = stored[grade.student]
        if status == GRADED:  # a note of the run; its flags (if any) still make it flagged
            grade.reason = "; ".join(filter(None, [grade.reason, reason]))
        else:
            grade.status, grade.reason = status, reason
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
    submission's rows were written (autograde and :func:`graders.merge.copy_submission`
    rewrite the auto comments). ``notebook`` defaults to the assignment's notebook of the same
    name, else its first."""
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
