"""What a student wrote in a notebook: per task, the text and the runs of lines that are theirs.

A *task* is a code solution cell of the release (its nbgrader ``grade_id``); the student's part
of it is every line of the submitted cell that is not a line of the release's cell (the
starter code: signatures, docstrings, ``# YOUR CODE HERE``), found with :mod:`difflib` on lines
compared without surrounding spaces. Code cells the student added (no nbgrader id of the
release, text not a release cell) form the task :data:`ADDED`, each cell its own run.

Notebooks are read as JSON text and nothing more: a submitted notebook is never validated by
executing anything, and any odd structure (a cell that is not a dict, a source that is not text)
is skipped. Cells are cut at :data:`MAX_CELL_CHARS` so that a planted giant cell cannot make the
report slow.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

from graders.submitted import MAX_FILE_BYTES

#: the task of code cells a student added to the notebook
ADDED = "(added cells)"
#: characters of one cell that are compared at most
MAX_CELL_CHARS = 100_000
#: a notebook file larger than this is not read (collect refuses larger ones anyway)
MAX_NOTEBOOK_BYTES = MAX_FILE_BYTES
#: what separates the student's added cells in the text of :data:`ADDED`
CELL_SEPARATOR = "\n\n"


@dataclass
class TaskText:
    """One task of one notebook: the text shown, and the runs ``(start, end)`` (character
    offsets) the student wrote, each fingerprinted on its own."""

    text: str
    runs: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Release:
    """What the release gives every student: the text of each solution cell (by grade id, in
    notebook order) and the stripped text of every cell (to spot unchanged cells)."""

    solutions: dict[str, str]
    cells: set[str]


class NotNotebook(ValueError):
    """A file that cannot be read as a notebook's JSON; the message says why."""


def _source(cell: object) -> str:
    if not isinstance(cell, dict):
        return ""
    src = cell.get("source", "")
    if isinstance(src, list):
        src = "".join(s for s in src if isinstance(s, str))
    return src[:MAX_CELL_CHARS] if isinstance(src, str) else ""


def _meta(cell: dict) -> dict:
    meta = cell.get("metadata")
    nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
    return nbg if isinstance(nbg, dict) else {}


def _grade_id(cell: object) -> str | None:
    if not isinstance(cell, dict):
        return None
    gid = _meta(cell).get("grade_id")
    return gid if isinstance(gid, str) else None


def _is_code(cell: object) -> bool:
    return isinstance(cell, dict) and cell.get("cell_type") == "code"


def read_cells(path: Path) -> list:
    """The cells of the notebook at ``path`` as plain JSON values; :class:`NotNotebook` when
    the file is too large, not JSON, or has no list of cells."""
    try:
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            raise NotNotebook("larger than 100 MB")
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as err:
        raise NotNotebook(f"not a readable notebook ({type(err).__name__})") from None
    cells = data.get("cells") if isinstance(data, dict) else None
    if not isinstance(cells, list):
        raise NotNotebook("no list of cells")
    return cells


def release_of(cells: list) -> Release:
    """The :class:`Release` of a release notebook's cells."""
    solutions: dict[str, str] = {}
    for cell in cells:
        gid = _grade_id(cell)
        if gid and _is_code(cell) and _meta(cell).get("solution") and gid not in solutions:
            solutions[gid] = _source(cell)
    return Release(solutions, {_source(c).strip() for c in cells})


def _line_starts(text: str) -> list[int]:
    starts, pos = [], 0
    for line in text.splitlines(True):
        starts.append(pos)
        pos += len(line)
    return [*starts, pos]


def student_runs(starter: str, text: str) -> list[tuple[int, int]]:
    """The runs of lines of ``text`` that are not lines of ``starter`` (compared stripped),
    as character offsets; a run is also cut where a line starts at column 0 (a new top-level
    definition), so that reordering definitions moves whole runs."""
    old = [line.strip() for line in starter.splitlines()]
    lines = text.splitlines(True)
    new = [line.strip() for line in lines]
    starts = _line_starts(text)
    mine = [True] * len(lines)
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for block in matcher.get_matching_blocks():
        for j in range(block.b, block.b + block.size):
            mine[j] = False
    runs: list[tuple[int, int]] = []
    for j, line in enumerate(lines):
        if not mine[j] or not new[j]:
            continue
        contiguous = bool(runs) and runs[-1][1] == starts[j]
        if contiguous and (line[:1].isspace() or _continues(lines, j)):
            runs[-1] = (runs[-1][0], starts[j + 1])
        else:
            runs.append((starts[j], starts[j + 1]))
    return _join_blank_gaps(text, runs)


def _continues(lines: list[str], j: int) -> bool:
    """A column-0 line that continues the previous one (a closing bracket, ``else:``)."""
    head = lines[j].lstrip()[:5]
    return head[:1] in ")]}" or head.startswith(("else", "elif", "excep", "final"))


def _join_blank_gaps(text: str, runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Runs separated only by blank lines become one (unless the next one is top level)."""
    out: list[tuple[int, int]] = []
    for start, end in runs:
        if out and not text[out[-1][1]:start].strip() and text[start:start + 1].isspace():
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def student_parts(cells: list, release: Release) -> dict[str, TaskText]:
    """Per task (release order, then :data:`ADDED`), what the student wrote in these cells.
    Tasks whose cell is missing or unchanged are left out."""
    parts: dict[str, TaskText] = {}
    added: list[str] = []
    for cell in cells:
        if not _is_code(cell):
            continue
        gid, text = _grade_id(cell), _source(cell)
        if gid in release.solutions:
            if gid in parts:  # a duplicated solution cell: the first one counts
                continue
            runs = student_runs(release.solutions[gid], text)
            if runs:
                parts[gid] = TaskText(text, runs)
        elif gid is None and text.strip() and text.strip() not in release.cells:
            added.append(text)
    ordered = {t: parts[t] for t in release.solutions if t in parts}
    if added:
        text, runs = "", []
        for chunk in added:
            text += CELL_SEPARATOR if text else ""
            runs += [(len(text) + a, len(text) + b) for a, b in student_runs("", chunk)]
            text += chunk
        ordered[ADDED] = TaskText(text, runs)
    return ordered
