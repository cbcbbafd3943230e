"""Every test cell can fail, and fails for the right reason.

For each assignment, the mutants and alternatives of ``source/<a>/grading/mutations.toml`` are
applied to the reference solution and the notebook (hidden tests included) runs in a fresh
kernel up to the last test cell concerned: a mutant must get exactly its stated score in each
cell it names (``scores``; 0 where none is stated) and full marks in every other cell that ran,
an alternative full marks in them all. Variants marked ``extended`` (further cases of claims
other variants prove) run only with ``DLWORKSHOP_ALL_VARIANTS=1`` (``make test-variants``).
"""

from __future__ import annotations

import os

import pytest

from graders import mutations, notebooks
from graders.course import Course

COURSE = Course()
ASSIGNMENTS = COURSE.assignments()
#: `extended` variants run only with DLWORKSHOP_ALL_VARIANTS=1 (`make test-variants`)
ALL_VARIANTS = os.environ.get("DLWORKSHOP_ALL_VARIANTS") == "1"
VARIANTS = [(a, v) for a in ASSIGNMENTS for v in mutations.load(a)
            if ALL_VARIANTS or not v.extended]


def _source(assignment: str):
    return notebooks.read(COURSE.source_path(assignment))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_test_cell_has_a_mutant_and_an_alternative(assignment):
    tests = {notebooks.grade_id(c) for c in notebooks.test_cells(_source(assignment))}
    variants = mutations.load(assignment)
    caught = {t for v in variants if v.kind == "mutant" for t in v.targets}
    covered = {t for v in variants if v.kind == "alternative" for t in v.targets}
    assert tests - caught == set(), f"test cells no mutant is meant to fail: {tests - caught}"
    assert tests - covered == set(), f"test cells no alternative covers: {tests - covered}"
    assert caught | covered <= tests, f"unknown test cells named: {(caught | covered) - tests}"
    points = {notebooks.grade_id(c): notebooks.points(c) for c in notebooks.test_cells(_source(
        assignment))}
    keeps_all = {f"{v.name}: {g}" for v in variants for g, s in v.scores.items()
                 if not 0 <= s < points[g]}
    assert not keeps_all, f"a mutant's stated score must lose points: {keeps_all}"


@pytest.mark.parametrize(
    ("assignment", "variant"), VARIANTS, ids=[f"{a}:{v.kind}:{v.name}" for a, v in VARIANTS]
)
def test_variant(assignment, variant):
    source = _source(assignment)
    nb = notebooks.solved(source, mutations=[variant.mutation])
    # Test cells before the changed cell cannot see the change (and the reference passes them,
    # see test_nbgrader.py): skip them, it saves seconds per variant.
    first = notebooks.cell_index(nb, variant.mutation.cell)
    nb.cells = [c for i, c in enumerate(nb.cells) if i > first or not notebooks.is_test(c)]
    nb, outcomes = notebooks.run(
        nb,
        until=variant.last_target,
        cwd=COURSE.source_path(assignment).parent,
        env={"DLWORKSHOP_PROGRESS": "0"},
    )
    missing = set(variant.targets) - set(outcomes)
    assert not missing, f"cells {missing} did not run"
    wrong = {
        gid: f"scored {o.score:g} of {o.points:g}, expected "
             f"{variant.expected_score(gid, o.points):g} ({o.error or _breakdown(nb, gid)})"
        for gid, o in outcomes.items()
        if abs(o.score - variant.expected_score(gid, o.points)) > 1e-9
    }
    assert not wrong, f"{variant.kind} {variant.name!r} ({variant.why}): unexpected {wrong}"


def _breakdown(nb, gid: str) -> str:
    """What a test cell printed (its partial-credit breakdown), for a failure message."""
    try:
        cell = nb.cells[notebooks.cell_index(nb, gid)]
    except KeyError:
        return "no output"
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout")
    return text.strip()[-1500:] or "no output"
