"""Statuses nbgrader's schema has no place for, kept in the gradebook's database.

A status other than graded or flagged (``timed out (partial)``, ``crashed``, ``refused``, ...)
is kept with its reason in a table of this package's own in the same database
(``graders_status``, SQLite or PostgreSQL; nbgrader ignores tables it does not know), so that
the export, ``graders grades`` and a later run of the tool say what happened.
:mod:`graders.gradebook` reads it with nbgrader's rows and writes it with them (:func:`write`);
:func:`set_status` writes it alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Column, MetaData, String, Table, create_engine, exc, inspect
from sqlalchemy.engine import Connection, Engine

from graders.status import FLAGGED, GRADED

#: The last ``graders autograde`` status of a submission that was not plainly graded or flagged,
#: or the note of a graded run (status ``graded``, read with the flags of a flagged one); one row
#: per assignment and student, none where nbgrader's rows say it all.
TABLE = Table(
    "graders_status", MetaData(),
    Column("assignment", String(128), primary_key=True),
    Column("student", String(128), primary_key=True),
    Column("status", String(32), nullable=False),
    Column("reason", String(1024), nullable=False),
)


def stored(engine: Engine, assignment: str) -> dict[str, tuple[str, str]]:
    """Per student, the status kept for ``assignment`` (none: no table)."""
    if not has_table(engine):
        return {}
    with engine.connect() as conn:
        rows = conn.execute(TABLE.select().where(TABLE.c.assignment == assignment))
        return {r.student: (r.status, r.reason) for r in rows}


def forget(engine: Engine, students: Iterable[str]) -> None:
    """Drop what is kept for these students (they left the gradebook)."""
    students = list(students)
    if students and has_table(engine):
        with engine.begin() as conn:
            conn.execute(TABLE.delete().where(TABLE.c.student.in_(students)))


def keeps(status: str, reason: str = "") -> bool:
    """Whether a status is kept here: any but graded and flagged (nbgrader's rows say those),
    and graded with a reason (a note of the run: "graded on a second run", "output past the
    limit left out", ...)."""
    return status not in (GRADED, FLAGGED) or (status == GRADED and bool(reason))


def has_table(bind: Engine | Connection) -> bool:
    """Whether the database has the table (an older gradebook, or nothing kept yet: not)."""
    return inspect(bind).has_table(TABLE.name)


def ensure_table(engine: Engine) -> None:
    """Make the table unless it exists (another shard's grader may make it meanwhile)."""
    try:
        TABLE.create(engine, checkfirst=True)
    except exc.DatabaseError:  # made meanwhile by another shard's grader
        if not has_table(engine):
            raise


def write(conn: Connection, assignment: str, student: str, status: str, reason: str = "") -> None:
    """In ``conn``'s transaction (the table exists): what :func:`keeps` keeps replaces what was
    kept; anything else clears it."""
    mine = (TABLE.c.assignment == assignment) & (TABLE.c.student == student)
    conn.execute(TABLE.delete().where(mine))
    if keeps(status, reason):
        conn.execute(TABLE.insert().values(assignment=assignment, student=student,
                                           status=status, reason=reason[:1024]))


def set_status(db_url: str, assignment: str, student: str, status: str, reason: str = "") -> None:
    """Keep the status of ``student``'s last grading of ``assignment`` as :func:`write` does."""
    engine = create_engine(db_url)
    try:
        if keeps(status, reason):
            ensure_table(engine)
        elif not has_table(engine):
            return
        with engine.begin() as conn:
            write(conn, assignment, student, status, reason)
    finally:
        engine.dispose()
