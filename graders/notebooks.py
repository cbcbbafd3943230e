"""Reading and rewriting the course's nbgrader notebooks, and running parts of them.

The source notebook of an assignment (``source/<a>/<a>.ipynb``) holds the reference solutions
between ``### BEGIN SOLUTION`` / ``### END SOLUTION`` and the hidden tests between
``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``. This module derives from it what tests,
calibration and the demo need: a student's submission with some tasks solved (or altered), and
the outcome of running a notebook's cells in one kernel.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

#: nbgrader's delimiters (``ClearSolutions`` / ``ClearHiddenTests`` defaults); a course that
#: configures others passes its own (``Course.settings.solution`` / ``.hidden_tests``).
#: Like nbgrader, a line *containing* a delimiter opens or closes a block.
SOLUTION_DELIMITERS = ("BEGIN SOLUTION", "END SOLUTION")
HIDDEN_TEST_DELIMITERS = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


def read(path: str | Path) -> NotebookNode:
    """A notebook, as nbformat v4."""
    return nbformat.read(str(path), as_version=4)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def without_lone_surrogates(node: object) -> object:
    """``node`` (a notebook, or any value read from JSON) with every lone UTF-16 surrogate
    replaced by U+FFFD, dicts and lists changed in place. An editor that cuts an emoji in two
    leaves one: valid JSON, but no UTF-8 file can hold it, so writing the notebook (nbgrader's
    autograded copy, a feedback page) fails and a correct submission scored 0."""
    if isinstance(node, str):
        return _LONE_SURROGATE.sub("\ufffd", node) if _LONE_SURROGATE.search(node) else node
    if isinstance(node, dict):
        for key in list(node):
            value = without_lone_surrogates(node[key])
            clean = without_lone_surrogates(key)
            if clean != key:
                del node[key]
            node[clean] = value
    elif isinstance(node, list):
        node[:] = [without_lone_surrogates(v) for v in node]
    return node


def nbgrader_metadata(cell: NotebookNode) -> dict:
    """A cell's nbgrader metadata; ``{}`` where it has none or a student made it something
    other than a dict."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def grade_id(cell: NotebookNode) -> str | None:
    """The nbgrader ``grade_id`` of a cell, or None for a cell nbgrader does not track."""
    gid = nbgrader_metadata(cell).get("grade_id")
    return gid if isinstance(gid, str) else None


def is_solution(cell: NotebookNode) -> bool:
    """An nbgrader solution (student-editable) cell."""
    return bool(nbgrader_metadata(cell).get("solution"))


def is_test(cell: NotebookNode) -> bool:
    """An nbgrader auto-graded test cell (``grade: true`` on a code cell)."""
    return cell.cell_type == "code" and bool(nbgrader_metadata(cell).get("grade"))


def points(cell: NotebookNode) -> float:
    """Points of a grade cell (0 for other cells)."""
    try:
        return float(nbgrader_metadata(cell).get("points", 0) or 0)
    except (TypeError, ValueError):
        return 0.0


def cell_index(nb: NotebookNode, gid: str) -> int:
    """Index of the cell whose grade_id is ``gid``; KeyError naming the known ids if absent."""
    for i, cell in enumerate(nb.cells):
        if grade_id(cell) == gid:
            return i
    known = ", ".join(g for g in map(grade_id, nb.cells) if g)
    raise KeyError(f"no cell with grade_id {gid!r}; known: {known}")


def test_cells(nb: NotebookNode) -> list[NotebookNode]:
    """The auto-graded test cells, in notebook order."""
    return [c for c in nb.cells if is_test(c)]


def strip_solution_markers(
    source: str, delimiters: tuple[str, str] = SOLUTION_DELIMITERS
) -> str:
    """A solution cell's source as a student would write it: the marker lines removed."""
    return "".join(
        line for line in source.splitlines(True) if not any(d in line for d in delimiters)
    )


def hidden_test_lines(
    source: str, delimiters: tuple[str, str] = HIDDEN_TEST_DELIMITERS
) -> list[str]:
    """The lines strictly inside the hidden-test blocks of a test cell's source."""
    begin, end = delimiters
    lines, inside = [], False
    for line in source.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            lines.append(line)
    return lines


def strip_hidden_tests(source: str, delimiters: tuple[str, str] = HIDDEN_TEST_DELIMITERS) -> str:
    """A test cell's source as students see it: the hidden blocks (delimiter lines included)
    removed, as nbgrader's ``ClearHiddenTests`` removes them."""
    begin, end = delimiters
    kept, inside = [], False
    for line in source.splitlines(True):
        if begin in line:
            inside = True
        elif end in line and inside:
            inside = False
        elif not inside:
            kept.append(line)
    return "".join(kept)


@dataclass(frozen=True)
class Mutation:
    """A change to one cell's source: literal ``(old, new)`` replacements, or a whole new source.

    A replacement whose ``old`` text is not found raises, so that a mutation can never silently
    stop applying after the notebook changes.
    """

    cell: str
    replace: tuple[tuple[str, str], ...] = ()
    source: str | None = None

    def apply(self, text: str) -> str:
        """The mutated text."""
        if self.source is not None:
            return self.source
        for old, new in self.replace:
            if old not in text:
                raise ValueError(f"mutation of cell {self.cell!r}: text not found: {old!r}")
            text = text.replace(old, new)
        return text


def solved(
    source_nb: NotebookNode,
    release_nb: NotebookNode | None = None,
    unsolved: Iterable[str] = (),
    mutations: Iterable[Mutation] = (),
) -> NotebookNode:
    """A notebook as a student would submit it: every solution cell filled in from the source.

    Starting from the release notebook (so that test cells are the visible ones, as students
    have them), each solution cell gets the reference code without markers, except the cells in
    ``unsolved`` (left as stubs) and those changed by ``mutations`` (applied to the reference).
    Without a release notebook, the source is used as is (hidden tests included), which is what
    running cells directly needs.
    """
    base = copy.deepcopy(release_nb if release_nb is not None else source_nb)
    reference = {grade_id(c): c.source for c in source_nb.cells if is_solution(c)}
    unsolved = set(unsolved)
    by_cell: dict[str, list[Mutation]] = {}
    for m in mutations:
        by_cell.setdefault(m.cell, []).append(m)
    unknown = (unsolved | set(by_cell)) - set(reference) - {grade_id(c) for c in base.cells}
    if unknown:
        raise KeyError(f"no such cells in the notebook: {sorted(unknown)}")
    for cell in base.cells:
        gid = grade_id(cell)
        if gid in by_cell:
            text = reference.get(gid, cell.source)
            for m in by_cell[gid]:
                text = m.apply(text)
            cell.source = strip_solution_markers(text) if gid in reference else text
        elif is_solution(cell) and gid not in unsolved:
            cell.source = strip_solution_markers(reference[gid])
    return base


@dataclass(frozen=True)
class CellOutcome:
    """What running one test cell gave: passed, or the error's name and message."""

    grade_id: str
    points: float
    passed: bool
    error: str = ""
    score: float = 0.0  # what nbgrader gives the cell (partial credit included)


def cell_error(cell: NotebookNode) -> str:
    """``"Name: message"`` of the error a cell raised when run, or ``""``."""
    for out in cell.get("outputs", []):
        if out.output_type == "error":
            return f"{out.ename}: {out.evalue}"
    return ""


def run(
    nb: NotebookNode,
    until: str | None = None,
    cwd: str | Path = ".",
    timeout: int = 300,
    env: Mapping[str, str] | None = None,
) -> tuple[NotebookNode, dict[str, CellOutcome]]:
    """Execute ``nb`` as grading does (up to and including cell ``until``), errors allowed:
    every cell but the tests in one fresh kernel, the test cells (with their full code, hidden
    tests included) on the trusted side (:func:`graders.verdict.execute.execute`).

    Returns the executed notebook and, for each test cell that ran, its score as nbgrader
    gives it (nothing when it raised; partial credit when its last value is a number) and
    whether that is full marks.
    """
    from graders.verdict.execute import execute

    nb = copy.deepcopy(nb)
    if until is not None:
        nb.cells = nb.cells[: cell_index(nb, until) + 1]
    nb, results = execute(nb, cwd=cwd, timeout=timeout, env=env)
    outcomes = {}
    for cell in test_cells(nb):
        gid = grade_id(cell)
        if gid in results:
            r, most = results[gid], points(cell)
            score = 0.0 if not r.passed else most if r.points is None else min(most, r.points)
            outcomes[gid] = CellOutcome(gid, most, score >= most, r.error, score)
    return nb, outcomes
