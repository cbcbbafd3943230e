"""Grades back into the learning platform: Canvas's and Moodle's own grade import files.

**Who is who.** ``collect`` reads students' platform identities from the export it collects
(:class:`graders.collect.Identity`) and :func:`keep` records them in the gradebook, the one
place for student data, in nbgrader's own student fields: Canvas's user id as
``lms_user_id``; a Moodle full name as ``first_name`` / ``last_name`` (split at its last space).
An email or a Moodle ID number, which no submission export carries, can be added with ``nbgrader
db student add <id> --email=... --lms-user-id=<ID number>`` (or ``db student import``).

**What is written** (``python -m graders export --format canvas|moodle``):

- **Canvas** (Grades > Import): the columns of Canvas's own gradebook export, ``Student``,
  ``ID``, ``SIS User ID``, ``SIS Login ID``, ``Section``, then one column of points per
  assignment; the second row is Canvas's ``Points Possible`` row. ``ID`` is the Canvas user id
  collect kept (Canvas matches students by it); ``Student`` is "Last, First" when the gradebook
  has names, else the nbgrader id. A column without Canvas's ``(assignment id)`` suffix makes
  Canvas create the assignment.
- **Moodle** (Grades > Import > CSV file): ``First name``, ``Last name``, ``ID number``, ``Email
  address``, then one grade column per assignment. Moodle maps one column to its users (choose
  "Email address" or "ID number") and aborts the whole import on a row whose user it cannot
  find, so students with neither are left out and listed.
- **With a roster** (``--template FILE``: the platform's own gradebook export, e.g. Canvas's
  "Export Entire Gradebook" or Moodle's "Plain text file" export): the file is copied with
  every row and column kept (delimiter and byte-order mark too), and the assignment's column
  (the header that names the assignment, e.g. ``01_dnn (1234)`` or ``Assignment: 01_dnn
  (Real)``; appended when there is none) is filled in. Rows are matched to students by Canvas
  user id, email, ID number, login, or the name collect derived the student id from. Roster
  rows without a submission and submissions without a roster row are listed.

**Scores** are nbgrader's (manual over automatic, plus extra credit) minus the late-submission
penalty nbgrader stored, never below 0: exactly what ``nbgrader export`` writes as ``score``.
A student without a submission gets an empty cell or 0 (``--missing empty|zero``; an empty cell
leaves the platform's grade as it is).
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from graders import gradebook
from graders.collect import Identity, sanitise_student_id
from graders.similarity.report import spreadsheet_safe

FORMATS = ("canvas", "moodle")
MISSING = ("empty", "zero")
CANVAS_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
CANVAS_POINTS_ROW = "Points Possible"
MOODLE_COLUMNS = ("First name", "Last name", "ID number", "Email address")


class LmsError(ValueError):
    """A roster that is not the platform's format, or an ambiguous assignment column."""


# ------------------------------------------------------------------------------ identities
@dataclass(frozen=True)
class Person:
    """A gradebook student with what the platform knows them by."""

    student: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    lms_user_id: str = ""

    @property
    def sortable(self) -> str:
        """"Last, First" as Canvas writes it, or the nbgrader id without names."""
        if self.last_name or self.first_name:
            return ", ".join(x for x in (self.last_name, self.first_name) if x)
        return self.student


def keep(db_url: str, identities: Iterable[Identity]) -> str:
    """Record platform identities in the gradebook's student rows (created when missing): the
    Canvas user id as ``lms_user_id``, a Moodle full name as first and last name; other fields
    are left as they are. Returns a one-line note (also when there is no gradebook yet)."""
    identities = list(identities)
    try:
        gradebook.require_gradebook(db_url)
    except gradebook.NoGradebook:
        return (f"platform names and ids of {len(identities)} students not kept: no gradebook "
                "yet (release the assignment, then collect again)")
    with Gradebook(db_url) as gb:
        for ident in identities:
            first, last = ident.names()
            fields = {"first_name": first, "last_name": last, "lms_user_id": ident.user_id}
            student = gb.update_or_create_student(ident.student)
            for name, value in fields.items():
                if value:
                    setattr(student, name, value)
        gb.db.commit()
    platforms = ", ".join(sorted({i.platform for i in identities}))
    return f"{platforms} names and ids of {len(identities)} students kept in the gradebook"


def people(db_url: str) -> dict[str, Person]:
    """Every student of the gradebook, with names, email and LMS user id."""
    gradebook.require_gradebook(db_url)
    with Gradebook(db_url) as gb:
        return {
            s.id: Person(s.id, s.first_name or "", s.last_name or "", s.email or "",
                         s.lms_user_id or "")
            for s in gb.students
        }


# ----------------------------------------------------------------------------------- grades
@dataclass(frozen=True)
class Points:
    """One student's grade of one assignment as the platform gets it."""

    submitted: bool
    points: float  # score minus late penalty, at least 0
    penalty: float = 0.0


def late_penalties(db_url: str, assignment: str) -> dict[str, float]:
    """Per submission of ``assignment``, nbgrader's late-submission penalty (0 when none)."""
    with Gradebook(db_url) as gb:
        try:
            definition = gb.find_assignment(assignment)
        except MissingEntry:
            return {}
        return {s.student_id: float(s.late_submission_penalty or 0.0)
                for s in definition.submissions}


def points_of(
    rows: Sequence[gradebook.SubmissionGrade], penalties: dict[str, dict[str, float]]
) -> dict[tuple[str, str], Points]:
    """(assignment, student) -> :class:`Points`, as ``nbgrader export`` scores them."""
    out = {}
    for r in rows:
        penalty = penalties.get(r.assignment, {}).get(r.student, 0.0)
        out[r.assignment, r.student] = Points(
            r.in_gradebook, max(0.0, r.score - penalty) if r.in_gradebook else 0.0, penalty
        )
    return out


def number(x: float) -> str:
    """Points as both platforms read them: at most two decimals, no exponent."""
    return f"{x:.2f}".rstrip("0").rstrip(".") if x != int(x) else str(int(x))


# ---------------------------------------------------------------------------------- writing
@dataclass
class LmsFile:
    """What :func:`write` wrote, and who needs a look."""

    path: Path
    platform: str
    rows: int
    no_submission: dict[str, list[str]] = field(default_factory=dict)  # assignment -> names
    no_roster_row: list[str] = field(default_factory=list)  # students with a submission
    left_out: list[str] = field(default_factory=list)  # students the file cannot identify

    def summary(self, most: int = 12) -> str:
        """Where the file is and the lists above, one line each (``most`` names a list)."""
        def names(items: list[str]) -> str:
            more = f", and {len(items) - most} more" if len(items) > most else ""
            return ", ".join(items[:most]) + more

        lines = [f"{self.platform} grades ({self.rows} rows): {self.path}"]
        for assignment, missing in self.no_submission.items():
            if missing:
                lines.append(f"  {assignment}: no submission from {len(missing)}: "
                             + names(missing))
        if self.no_roster_row:
            lines.append(f"  submissions with no roster row ({len(self.no_roster_row)}): "
                         + names(self.no_roster_row))
        if self.left_out:
            lines.append(f"  left out, no way to identify them in {self.platform} "
                         f"({len(self.left_out)}): {names(self.left_out)} (no email or ID "
                         "number in the gradebook: use --template with the platform's export)")
        return "\n".join(lines)


def _cell(p: Points | None, missing: str) -> str:
    if p is None or not p.submitted:
        return "0" if missing == "zero" else ""
    return number(p.points)


def _report_missing(
    grades: dict[tuple[str, str], Points], assignments: Sequence[str], students: Iterable[str]
) -> dict[str, list[str]]:
    students = list(students)
    return {a: [s for s in students if not (p := grades.get((a, s))) or not p.submitted]
            for a in assignments}


def plain_rows(
    platform: str,
    assignments: Sequence[str],
    max_points: dict[str, float],
    folks: dict[str, Person],
    grades: dict[tuple[str, str], Points],
    missing: str,
) -> tuple[list[list[str]], list[str]]:
    """The platform's import file for every gradebook student, and the students left out."""
    if platform == "canvas":
        rows = [[*CANVAS_COLUMNS, *assignments],
                [CANVAS_POINTS_ROW, "", "", "", "", *(number(max_points[a]) for a in assignments)]]
        for s, p in sorted(folks.items(), key=lambda kv: kv[1].sortable.lower()):
            rows.append([spreadsheet_safe(p.sortable), p.lms_user_id, "", "", "",
                         *(_cell(grades.get((a, s)), missing) for a in assignments)])
        return rows, []
    rows, left_out = [[*MOODLE_COLUMNS, *assignments]], []
    for s, p in sorted(folks.items(), key=lambda kv: (kv[1].last_name.lower(), kv[0])):
        if not (p.email or p.lms_user_id):
            left_out.append(s)
            continue
        rows.append([spreadsheet_safe(p.first_name or s), spreadsheet_safe(p.last_name),
                     p.lms_user_id, p.email,
                     *(_cell(grades.get((a, s)), missing) for a in assignments)])
    return rows, left_out


# ----------------------------------------------------------------------------------- roster
@dataclass
class Roster:
    """A platform's gradebook export read as a table."""

    rows: list[list[str]]
    delimiter: str = ","
    bom: bool = False

    @classmethod
    def read(cls, path: Path) -> Roster:
        raw = path.read_bytes()
        bom = raw.startswith(b"\xef\xbb\xbf")
        text = raw.decode("utf-8-sig")
        first = text.splitlines()[0] if text.strip() else ""
        delimiter = max(",;\t", key=first.count) if first else ","
        rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter)]
        if not rows:
            raise LmsError(f"{path} is empty")
        width = max(len(r) for r in rows)
        return cls([r + [""] * (width - len(r)) for r in rows], delimiter, bom)

    def column(self, name: str) -> int | None:
        """The index of the column whose header is ``name`` (case and spaces ignored)."""
        want = name.strip().lower()
        return next((i for i, h in enumerate(self.rows[0]) if h.strip().lower() == want), None)

    def assignment_column(self, assignment: str, platform: str) -> int:
        """The column of ``assignment``: its header is the name, or holds it as a word (Canvas
        ``01_dnn (1234)``, Moodle ``Assignment: 01_dnn (Real)``); appended when none does."""
        exact = self.column(assignment)
        if exact is not None:
            return exact
        word = re.compile(rf"(?<![\w-]){re.escape(assignment.lower())}(?![\w-])")
        hits = [i for i, h in enumerate(self.rows[0]) if word.search(h.lower())]
        if len(hits) > 1:
            names = ", ".join(repr(self.rows[0][i]) for i in hits)
            raise LmsError(f"several roster columns name {assignment}: {names}")
        if hits:
            return hits[0]
        for i, row in enumerate(self.rows):
            row.append(assignment if i == 0 else "")
        return len(self.rows[0]) - 1

    def write(self, path: Path) -> Path:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=self.delimiter, lineterminator="\r\n").writerows(self.rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(("\ufeff" if self.bom else "") + buffer.getvalue(), encoding="utf-8")
        return path


def _squash(name: str) -> str:
    """A name as Canvas's submission file names write it: lower case, letters and digits."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]", "", text)


def _keys_of_row(platform: str, roster: Roster, row: list[str]) -> list[tuple[str, str]]:
    """(kind, value) pairs a roster row can be matched by, most reliable first."""
    def get(name: str) -> str:
        i = roster.column(name)
        return row[i].strip() if i is not None else ""

    keys = []
    if platform == "canvas":
        name = get("Student")
        keys += [("lms", get("ID")), ("id", get("SIS Login ID")), ("id", get("SIS User ID")),
                 ("id", sanitise_student_id(name))]
        if "," in name:
            last, _, first = name.partition(",")
            keys += [("id", _squash(last + first)), ("id", sanitise_student_id(f"{first} {last}"))]
        keys.append(("id", _squash(name)))
    else:
        keys += [("email", get("Email address").lower()), ("lms", get("ID number")),
                 ("id", get("Username")),
                 ("id", sanitise_student_id(f"{get('First name')} {get('Last name')}"))]
    return [(k, v) for k, v in keys if v]


def _label(platform: str, roster: Roster, row: list[str]) -> str:
    """How the roster names a row's student, for the lists of :class:`LmsFile`."""
    names = ("Student",) if platform == "canvas" else ("First name", "Last name")
    cols = [roster.column(n) for n in names]
    return " ".join(row[i].strip() for i in cols if i is not None and row[i].strip())


def _index(folks: dict[str, Person]) -> dict[tuple[str, str], str]:
    index: dict[tuple[str, str], str] = {}
    for s, p in folks.items():
        index[("id", s)] = s
        if p.lms_user_id:
            index.setdefault(("lms", p.lms_user_id), s)
        if p.email:
            index.setdefault(("email", p.email.lower()), s)
    return index


def fill_roster(
    roster: Roster,
    platform: str,
    assignments: Sequence[str],
    max_points: dict[str, float],
    folks: dict[str, Person],
    grades: dict[tuple[str, str], Points],
    missing: str,
) -> tuple[dict[str, list[str]], list[str]]:
    """Fill each assignment's column of ``roster`` in place; returns (per assignment, the
    roster rows without a submission; the submitting students with no roster row)."""
    required = ("Student", "ID") if platform == "canvas" else ()
    absent = [c for c in required if roster.column(c) is None]
    identifying = ("Email address", "ID number", "Username", "First name")
    if absent or (platform == "moodle" and all(roster.column(c) is None for c in identifying)):
        what = ", ".join(absent) or "Email address / ID number / First name"
        raise LmsError(f"not a {platform} gradebook export: no column {what}")
    columns = {a: roster.assignment_column(a, platform) for a in assignments}
    index = _index(folks)
    matched: set[str] = set()
    no_submission: dict[str, list[str]] = {a: [] for a in assignments}
    for row in roster.rows[1:]:
        if platform == "canvas" and row[0].strip() == CANVAS_POINTS_ROW:
            for a, i in columns.items():
                row[i] = row[i] or number(max_points[a])
            continue
        keys = _keys_of_row(platform, roster, row)
        if not keys:
            continue  # a blank or note row
        student = next((index[k] for k in keys if k in index), None)
        label = _label(platform, roster, row) or student or "?"
        if student:
            matched.add(student)
        for a, i in columns.items():
            p = grades.get((a, student)) if student else None
            row[i] = _cell(p, missing)
            if p is None or not p.submitted:
                no_submission[a].append(label)
    submitters = {s for (a, s), p in grades.items() if p.submitted and a in assignments}
    return no_submission, sorted(submitters - matched)


def write(
    db_url: str,
    platform: str,
    rows: Sequence[gradebook.SubmissionGrade],
    out: Path,
    template: Path | None = None,
    missing: str = "empty",
) -> LmsFile:
    """Write ``platform``'s grade import file for the assignments of ``rows`` (the gradebook's
    grades, every student x assignment, as :func:`graders.gradebook.read_all` gives them) to
    ``out``: the plain file, or ``template`` filled in (see the module docstring)."""
    if platform not in FORMATS:
        raise LmsError(f"unknown platform {platform!r}; known: {', '.join(FORMATS)}")
    if missing not in MISSING:
        raise LmsError(f"--missing must be one of {', '.join(MISSING)}")
    assignments = list(dict.fromkeys(r.assignment for r in rows))
    max_points = {a: next(r.max_score for r in rows if r.assignment == a) for a in assignments}
    penalties = {a: late_penalties(db_url, a) for a in assignments}
    grades = points_of(rows, penalties)
    folks = people(db_url)
    if template is None:
        table, left_out = plain_rows(platform, assignments, max_points, folks, grades, missing)
        Roster(table).write(out)
        no_sub = _report_missing(grades, assignments, sorted(folks))
        return LmsFile(out, platform, len(table) - 1, no_sub, [], left_out)
    roster = Roster.read(template)
    no_sub, unmatched = fill_roster(roster, platform, assignments, max_points, folks, grades,
                                    missing)
    roster.write(out)
    return LmsFile(out, platform, len(roster.rows) - 1, no_sub, unmatched)
