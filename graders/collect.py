"""Import student submissions into ``submitted/<student>/<a>/<a>.ipynb``.

Sources (a folder or a ``.zip`` file holding any of these layouts):

- **folder layout**: ``<student>/<a>.ipynb`` or ``<student>/<a>/<a>.ipynb`` (what ``nbgrader
  collect`` or a shared drive gives). The student id is the first folder's name.
- **Moodle** "Download all submissions": ``<Full Name>_<number>_assignsubmission_file_/<file>``.
  The student id is the full name (the number is Moodle's per-assignment participant id, so it
  would differ between assignments); two participants with the same name in one export are
  refused, as one student id cannot tell them apart.
- **Canvas** "Download submissions": flat files
  ``<lastfirst>_[LATE_]<user id>_<submission id>_<file>``. The student id is ``<lastfirst>``
  (Canvas's lower-case sortable name); a clash of two user ids on one name is refused as above.

Student ids are sanitised to what nbgrader handles as a folder name and a ``--student`` value:
ASCII (accents dropped), lower case, only ``a-z 0-9 _ . -`` (other runs become ``-``); a purely
numeric id gets an ``s`` prefix (nbgrader reads a numeric ``--student`` as a number).

Which assignment a file belongs to: the folder ``<student>/<a>/`` if it names one; else the file
name, after dropping copy marks (``Copy of``, `` (1)``, ``-Copy1``, ``-1``), equal to or
containing exactly one assignment name; else the notebook's nbgrader cell ids (at least half of
one assignment's grade ids). A notebook matched by its name is **renamed** to ``<a>.ipynb``
(reported). One matched only by folder or content is taken only when it is the student's only
such notebook for that assignment and no notebook named after the assignment is there.

Duplicates (several files named after one assignment for one student): the **newest** file
(modification time in the folder or zip) is taken and the others are refused; when the newest
time is shared by more than one file, all are refused. The newest counts even when it turns out
broken: an older copy is never graded in its place.

Platform identities: for every student taken from a Moodle or Canvas export the outcome keeps
the name and number the platform gave (:class:`Identity`), and :func:`collect_into` records them
in the course's gradebook (nbgrader's student fields; see :mod:`graders.lms`), so that grades can
go back to the platform (``export --format moodle|canvas``).

Refused with a reason, never written: not a ``.ipynb`` file, unreadable or corrupt JSON, not a
valid nbformat notebook, no matching assignment, duplicates as above, files over 100 MB, and
paths the layouts above do not cover. Identical files already in ``submitted/`` are skipped.
Nothing is ever written outside ``submitted/`` (member names of a zip are never used as paths).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
import zipfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import nbformat

from graders import notebooks
from graders.submitted import MAX_FILE_BYTES

if TYPE_CHECKING:
    from graders.course import Course

MAX_BYTES = MAX_FILE_BYTES  # nbgrader's own CourseDirectory.max_file_size
JUNK = {"__MACOSX", ".ipynb_checkpoints", ".DS_Store", "Thumbs.db", "desktop.ini"}
MOODLE_DIR = re.compile(r"^(?P<name>.+)_(?P<pid>\d+)_assignsubmission_(?P<plugin>[a-z]+)_?$")
CANVAS_FILE = re.compile(r"^(?P<name>[a-z0-9]+)_(?:late_)?(?P<uid>\d+)_(?P<sid>\d+)_(?P<file>.+)$",
                         re.IGNORECASE)
COPY_MARKS = (
    re.compile(r"^copy\s+of\s+", re.IGNORECASE),
    re.compile(r"\s*\(\d+\)$"),
    re.compile(r"[-_ ]copy\d*$", re.IGNORECASE),
    re.compile(r"-\d+$"),
)

TAKEN, RENAMED, REFUSED, SKIPPED = "taken", "renamed", "refused", "skipped"


class CollectError(RuntimeError):
    """The source as a whole cannot be read (missing, not a folder or zip)."""


@dataclass
class Outcome:
    """What happened to one file of the source."""

    status: str  # taken, renamed, refused or skipped
    origin: str  # the file's path inside the source
    student: str = ""
    assignment: str = ""
    reason: str = ""
    identity: Identity | None = None  # what the platform says about the student


@dataclass(frozen=True)
class Identity:
    """A student as a learning platform's export names them.

    ``platform`` is ``moodle`` or ``canvas``; ``name`` the name as the export writes it (Moodle:
    the full name; Canvas: the sortable name without punctuation, ``smithjohn``); ``user_id``
    Canvas's user id (the ``ID`` of its gradebook), ``participant`` Moodle's participant number
    (it changes between assignments, so it identifies a submission, not a person)."""

    student: str
    platform: str
    name: str
    user_id: str = ""
    participant: str = ""

    def names(self) -> tuple[str, str]:
        """(first name, last name) for nbgrader's student fields: a Moodle full name split at
        its last space; nothing for Canvas (its file names carry no real name)."""
        if self.platform != "moodle":
            return "", ""
        first, _, last = self.name.strip().rpartition(" ")
        return first, last


@dataclass
class CollectReport:
    """All outcomes of one ``collect`` run, and notes on what else was done."""

    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def identities(self) -> dict[str, Identity]:
        """Per student collected (taken, renamed or skipped as identical) from a platform's
        export, the identity the export gave."""
        return {
            o.student: o.identity
            for o in self.outcomes
            if o.identity is not None and o.status in (TAKEN, RENAMED, SKIPPED)
        }

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def exit_code(self) -> int:
        """0 when nothing was refused, 1 otherwise."""
        return 1 if self.count(REFUSED) else 0

    def table(self) -> str:
        """The outcomes as a text table, refusals last."""
        order = {TAKEN: 0, RENAMED: 1, SKIPPED: 2, REFUSED: 3}
        rows = sorted(self.outcomes, key=lambda o: (order[o.status], o.student, o.origin))
        if not rows:
            return "(no files found)"
        ws = max(len("student"), *(len(o.student) for o in rows))
        wa = max(len("assignment"), *(len(o.assignment) for o in rows))
        lines = [f"{'status':<8}  {'student':<{ws}}  {'assignment':<{wa}}  file / reason"]
        for o in rows:
            what = o.origin + (f": {o.reason}" if o.reason else "")
            lines.append(f"{o.status:<8}  {o.student:<{ws}}  {o.assignment:<{wa}}  {what}")
        summary = ", ".join(f"{self.count(s)} {s}" for s in (TAKEN, RENAMED, SKIPPED, REFUSED))
        return "\n".join([*lines, summary, *self.notes])


# ----------------------------------------------------------------------------- student ids
def sanitise_student_id(raw: str) -> str:
    """``raw`` as an id nbgrader accepts (see the module docstring); "" when nothing is left."""
    text = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"[^a-z0-9_.-]+", "-", text).strip("-._")
    if text.isdigit():
        text = f"s{text}"
    return text


# ----------------------------------------------------------------------------- reading
@dataclass
class Entry:
    """One file of the source: its path parts inside the source, time, size and reader."""

    parts: tuple[str, ...]
    mtime: float
    size: int
    read: Callable[[], bytes]

    @property
    def origin(self) -> str:
        return "/".join(self.parts)


def _is_junk(parts: Sequence[str]) -> bool:
    return any(p in JUNK or p.startswith("._") for p in parts)


def _folder_entries(root: Path) -> tuple[list[Entry], list[Outcome]]:
    entries, refused = [], []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if _is_junk(parts) or path.is_dir():
            continue
        if path.is_symlink() or not path.is_file():
            refused.append(Outcome(REFUSED, "/".join(parts), reason="not a regular file"))
            continue
        st = path.stat()
        entries.append(Entry(parts, st.st_mtime, st.st_size, path.read_bytes))
    return entries, refused


def _zip_entries(zf: zipfile.ZipFile) -> tuple[list[Entry], list[Outcome]]:
    entries, refused = [], []
    for info in zf.infolist():
        if info.is_dir():
            continue
        parts = tuple(p for p in PurePosixPath(info.filename.replace("\\", "/")).parts)
        if _is_junk(parts):
            continue
        if any(p in ("..", "/") for p in parts) or info.filename.startswith("/"):
            refused.append(Outcome(REFUSED, info.filename, reason="unsafe path in the zip"))
            continue
        try:
            mtime = datetime(*info.date_time).timestamp()
        except ValueError:
            mtime = 0.0
        entries.append(Entry(parts, mtime, info.file_size, lambda i=info: zf.read(i)))
    return entries, refused


# ----------------------------------------------------------------------------- layouts
@dataclass
class Candidate:
    """A file placed in a layout: whose it is and which assignment its place names."""

    entry: Entry
    student: str
    filename: str
    folder_assignment: str | None = None
    platform_key: str | None = None  # Moodle participant number / Canvas user id
    raw_name: str = ""  # the student's name as the platform's export writes it
    assignment: str = ""
    by_name: bool = False  # matched by its file name (else by folder or content)
    mtime: float = 0.0


def _place(entry: Entry, assignments: Sequence[str]) -> Candidate | Outcome:
    """Which layout ``entry`` is in, and the student it belongs to (or why none)."""
    parts = entry.parts
    moodle = MOODLE_DIR.match(parts[0]) if len(parts) >= 2 else None
    canvas = CANVAS_FILE.match(parts[0]) if len(parts) == 1 else None
    if moodle:
        raw, key, filename, folder = moodle["name"], f"moodle:{moodle['pid']}", parts[-1], None
    elif canvas:
        raw, key, filename, folder = canvas["name"], f"canvas:{canvas['uid']}", canvas["file"], None
    elif len(parts) in (2, 3):
        raw, key, filename = parts[0], None, parts[-1]
        folder = parts[1] if len(parts) == 3 and parts[1] in assignments else None
    else:
        return Outcome(REFUSED, entry.origin, reason="not in a known layout (see collect --help)")
    student = sanitise_student_id(raw)
    if not student:
        return Outcome(REFUSED, entry.origin, reason=f"no usable student id in {raw!r}")
    return Candidate(entry, student, filename, folder, key, raw, mtime=entry.mtime)


def match_name(filename: str, assignments: Sequence[str]) -> str | None:
    """The assignment a notebook's file name means (copy marks dropped), or None."""
    stem = filename[: -len(".ipynb")] if filename.lower().endswith(".ipynb") else filename
    stems = [re.sub(r"\s+", "_", stem.strip().lower())]
    changed = True
    while changed:  # strip copy marks one by one; an assignment may itself end in one
        changed = False
        for mark in COPY_MARKS:
            new = mark.sub("", stem).strip()
            if new != stem:
                stem, changed = new, True
                stems.append(re.sub(r"\s+", "_", stem.lower()))
    for candidate in stems:
        exact = [a for a in assignments if a.lower() == candidate]
        if exact:
            return exact[0]
    for candidate in stems:
        inside = [a for a in assignments if a.lower() in candidate]
        if len(inside) == 1:
            return inside[0]
        if inside:
            return None
    return None


def _grade_ids(nb: nbformat.NotebookNode) -> set[str]:
    return {gid for gid in map(notebooks.grade_id, nb.cells) if gid}


def match_content(nb: nbformat.NotebookNode, known_ids: dict[str, set[str]]) -> str | None:
    """The one assignment whose grade ids the notebook carries at least half of, or None."""
    ids = _grade_ids(nb)
    shares = {a: len(ids & ref) / len(ref) for a, ref in known_ids.items() if ref}
    hits = [a for a, share in shares.items() if share >= 0.5]
    if len(hits) != 1:
        return None
    return hits[0]


def parse_notebook(data: bytes) -> tuple[nbformat.NotebookNode | None, str]:
    """The notebook in ``data`` and "" , or None and why it is not a valid notebook."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8 text: not a notebook"
    try:
        json.loads(text)
    except (ValueError, RecursionError) as err:  # nested past the parser's limit
        return None, f"corrupt JSON ({err})"
    try:  # nbformat raises ValidationError, or TypeError/KeyError on odd structures
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as err:
        first = (str(getattr(err, "message", "")) or str(err)).splitlines()[0][:80]
        return None, f"not a valid notebook ({type(err).__name__}: {first})"
    return nb, ""


# ----------------------------------------------------------------------------- the plan
def _assign(
    cands: list[Candidate], assignments: Sequence[str], known_ids: dict[str, set[str]]
) -> tuple[list[Candidate], list[Outcome]]:
    """Give each notebook its assignment; refuse what is no notebook or matches none."""
    placed, refused = [], []
    for c in cands:
        origin = c.entry.origin
        if not c.filename.lower().endswith(".ipynb"):
            refused.append(Outcome(REFUSED, origin, c.student, reason="not a notebook (.ipynb)"))
            continue
        named = match_name(c.filename, assignments)
        if named and c.folder_assignment and named != c.folder_assignment:
            refused.append(Outcome(REFUSED, origin, c.student, c.folder_assignment,
                                   f"named like {named} but in folder {c.folder_assignment}"))
            continue
        if named:
            c.assignment, c.by_name = named, True
        elif c.folder_assignment:
            c.assignment = c.folder_assignment
        else:
            nb = parse_notebook(_read(c.entry))[0] if c.entry.size <= MAX_BYTES else None
            c.assignment = match_content(nb, known_ids) if nb is not None else None
            if not c.assignment:
                refused.append(Outcome(REFUSED, origin, c.student,
                                       reason="cannot match the file to an assignment "
                                       f"(known: {', '.join(assignments)})"))
                continue
        placed.append(c)
    return placed, refused


def _read(entry: Entry) -> bytes:
    try:
        return entry.read()
    except Exception:  # a damaged zip member reads as no notebook
        return b""


def _name_clashes(cands: list[Candidate]) -> tuple[list[Candidate], list[Outcome]]:
    """Refuse every file of a student id that two platform users map to."""
    keys: dict[str, set[str]] = defaultdict(set)
    for c in cands:
        if c.platform_key:
            keys[c.student].add(c.platform_key)
    clash = {s for s, k in keys.items() if len(k) > 1}
    kept = [c for c in cands if c.student not in clash]
    refused = [
        Outcome(REFUSED, c.entry.origin, c.student, c.assignment,
                f"{len(keys[c.student])} participants share the student id {c.student!r}")
        for c in cands if c.student in clash
    ]
    return kept, refused


def _pick(group: list[Candidate]) -> tuple[Candidate | None, list[Outcome]]:
    """The one file of a (student, assignment) group to take, and refusals for the others."""
    named = [c for c in group if c.by_name]
    pool = named or group
    refused = [
        Outcome(REFUSED, c.entry.origin, c.student, c.assignment,
                f"not named {c.assignment}.ipynb while {named[0].entry.origin} is")
        for c in group if named and not c.by_name
    ]
    if len(pool) == 1:
        return pool[0], refused
    if not named:
        return None, refused + [
            Outcome(REFUSED, c.entry.origin, c.student, c.assignment,
                    f"{len(pool)} notebooks, none named {c.assignment}.ipynb")
            for c in pool
        ]
    newest = max(c.mtime for c in pool)
    top = [c for c in pool if c.mtime == newest]
    if len(top) > 1:
        return None, refused + [
            Outcome(REFUSED, c.entry.origin, c.student, c.assignment,
                    f"duplicate: {len(top)} files with the same time, cannot tell the newest")
            for c in pool
        ]
    winner = top[0]
    return winner, refused + [
        Outcome(REFUSED, c.entry.origin, c.student, c.assignment,
                f"duplicate: older than {winner.entry.origin}")
        for c in pool if c is not winner
    ]


def _identity(c: Candidate) -> Identity | None:
    """What the platform's export says about the student of ``c`` (None: not an export)."""
    if not c.platform_key:
        return None
    platform, _, number = c.platform_key.partition(":")
    if platform == "canvas":
        return Identity(c.student, platform, c.raw_name, user_id=number)
    return Identity(c.student, platform, c.raw_name, participant=number)


def _write(submitted: Path, c: Candidate) -> Outcome:
    """Validate the chosen file and put it in place (or say why not), with the student's
    platform identity when the file came from a platform's export."""
    outcome = _put(submitted, c)
    outcome.identity = _identity(c)
    return outcome


def _put(submitted: Path, c: Candidate) -> Outcome:
    origin, exact = c.entry.origin, c.filename == f"{c.assignment}.ipynb"
    if c.entry.size > MAX_BYTES:
        return Outcome(REFUSED, origin, c.student, c.assignment,
                       "larger than 100 MB: clear its outputs, save it and submit it again")
    data = _read(c.entry)
    nb, why = parse_notebook(data)
    if nb is None:
        return Outcome(REFUSED, origin, c.student, c.assignment, why)
    target = submitted / c.student / c.assignment / f"{c.assignment}.ipynb"
    if not target.resolve().is_relative_to(submitted.resolve()):
        return Outcome(REFUSED, origin, c.student, c.assignment, "would be written outside")
    if target.is_file() and target.read_bytes() == data:
        return Outcome(SKIPPED, origin, c.student, c.assignment, "already collected, identical")
    replaced = target.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".tmp") as fh:
        fh.write(data)
    os.replace(fh.name, target)
    notes = [] if exact else [f"renamed to {c.assignment}.ipynb"]
    if replaced:
        notes.append("replaced an earlier, different copy")
    return Outcome(TAKEN if exact else RENAMED, origin, c.student, c.assignment, "; ".join(notes))


def collect(
    source: Path,
    submitted: Path,
    assignments: Sequence[str],
    known_ids: dict[str, set[str]] | None = None,
    only: str | None = None,
) -> CollectReport:
    """Import the submissions in ``source`` (folder or zip) into ``submitted``.

    ``assignments`` are the course's assignment names; ``known_ids`` their grade ids (for
    matching notebooks by content; optional); ``only`` keeps one assignment's files and ignores
    the others silently. Raises :class:`CollectError` when the source cannot be read at all.
    """
    source = Path(source)
    if source.is_dir():
        entries, early = _folder_entries(source)
        return _run(entries, early, submitted, assignments, known_ids or {}, only)
    if source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            entries, early = _zip_entries(zf)
            return _run(entries, early, submitted, assignments, known_ids or {}, only)
    if source.exists():
        raise CollectError(f"{source} is neither a folder nor a zip file")
    raise CollectError(f"{source} does not exist")


def _run(
    entries: list[Entry],
    early: list[Outcome],
    submitted: Path,
    assignments: Sequence[str],
    known_ids: dict[str, set[str]],
    only: str | None,
) -> CollectReport:
    report = CollectReport(list(early))
    cands = []
    for entry in entries:
        placed = _place(entry, assignments)
        if isinstance(placed, Outcome):
            report.outcomes.append(placed)
        else:
            cands.append(placed)
    cands, refused = _assign(cands, assignments, known_ids)
    report.outcomes += refused
    if only:
        cands = [c for c in cands if c.assignment == only]
    cands, refused = _name_clashes(cands)
    report.outcomes += refused
    groups: dict[tuple[str, str], list[Candidate]] = defaultdict(list)
    for c in cands:
        groups[c.student, c.assignment].append(c)
    for key in sorted(groups):
        winner, refused = _pick(groups[key])
        report.outcomes += refused
        if winner is not None:
            report.outcomes.append(_write(submitted, winner))
    return report


def course_grade_ids(source_notebooks: dict[str, Path]) -> dict[str, set[str]]:
    """Per assignment, the nbgrader grade ids of its source notebook (for content matching)."""
    return {a: _grade_ids(notebooks.read(p)) for a, p in source_notebooks.items()}


def collect_into(course: Course, source: Path, only: str | None = None) -> CollectReport:
    """:func:`collect` into ``course``'s ``submitted/``, for its assignments (matched by name,
    folder or the grade ids of their source notebooks); the platform identities of the
    students collected are recorded in the course's gradebook (:func:`graders.lms.keep`; a
    note says how many, or why not)."""
    from graders import lms

    known = course.assignments()
    ids = course_grade_ids({a: course.source_path(a) for a in known})
    report = collect(Path(source), course.folder("submitted"), known, ids, only=only)
    identities = report.identities()
    if identities:
        report.notes.append(lms.keep(course.db_url, identities.values()))
    return report
