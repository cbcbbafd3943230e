"""release/ is exactly what nbgrader generates from source/ now, and leaks nothing."""

from __future__ import annotations

import json

import pytest

from graders import notebooks
from graders.course import Course

COURSE = Course()
ASSIGNMENTS = COURSE.assignments()
pytestmark = pytest.mark.xdist_group("nbgrader")


def _inside_markers(source: str, begin: str, end: str) -> list[str]:
    lines, inside = [], False
    for line in source.splitlines():
        if line.strip().startswith(begin):
            inside = True
        elif line.strip().startswith(end):
            inside = False
        elif inside:
            lines.append(line.strip())
    return lines


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_is_in_sync_with_source(released, assignment):
    generated = released.release_path(assignment)
    committed = COURSE.release_path(assignment)
    assert committed.exists(), f"{committed} is missing: run `make release` and commit it"
    assert json.loads(committed.read_text()) == json.loads(generated.read_text()), (
        f"{committed} differs from what `nbgrader generate_assignment` makes from source/ now: "
        "run `make release` and commit the result"
    )
    shipped = sorted(p.name for p in committed.parent.iterdir())
    assert shipped == sorted(p.name for p in generated.parent.iterdir())


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_contains_no_solution_and_no_hidden_test(assignment):
    source = notebooks.read(COURSE.source_path(assignment))
    release = notebooks.read(COURSE.release_path(assignment))
    text = COURSE.release_path(assignment).read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS"):
        assert marker not in text, f"release notebook contains {marker!r}"
    by_id = {notebooks.grade_id(c): c for c in release.cells}
    for cell in source.cells:
        gid = notebooks.grade_id(cell)
        if notebooks.is_solution(cell):
            secret = _inside_markers(cell.source, "### BEGIN SOLUTION", "### END SOLUTION")
        elif notebooks.is_test(cell):
            secret = _inside_markers(cell.source, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
        else:
            continue
        visible = notebooks.strip_hidden_tests(cell.source) if notebooks.is_test(cell) else ""
        released = {ln.strip() for ln in by_id[gid].source.splitlines()}
        shown = {ln.strip() for ln in visible.splitlines()}
        leaked = [ln for ln in secret if len(ln) > 12 and ln in released and ln not in shown]
        assert not leaked, f"{gid}: release shows {leaked[:3]}"
        assert secret, f"{gid}: has no solution/hidden block (is it marked up correctly?)"
