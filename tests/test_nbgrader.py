"""End to end through the real nbgrader commands: each sample submission gets the grade it
deserves (reference full marks, stub zero, tampering restored, a corrupt file refused without
affecting anyone else)."""

from __future__ import annotations

import re

import pytest
from nbgrader.preprocessors import OverwriteCells

from graders import notebooks
from graders.course import Course

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("nbgrader")]
MISSING_NOTE = "# " + OverwriteCells.missing_cell_notification.default_value
ASSIGNMENTS = Course().assignments()


def _source_points(course: Course, assignment: str) -> dict[str, float]:
    nb = notebooks.read(course.source_path(assignment))
    return {notebooks.grade_id(c): notebooks.points(c) for c in notebooks.test_cells(nb)}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_each_sample_gets_the_grade_it_deserves(graded, assignment):
    g = graded[assignment]
    points = _source_points(g.course, assignment)
    problems = []
    for sample in g.samples:
        if not sample.processed:
            continue
        sub = g.grades.get(sample.student)
        if sub is None:
            problems.append(f"{sample.student}: not in the gradebook")
            continue
        # the gradebook's maxima come from the source, whatever the submission's metadata says
        maxima = {gid: c.max_score for gid, c in sub.cells.items()}
        if maxima != points:
            problems.append(f"{sample.student}: max scores {maxima} != source points {points}")
        failed = set(sub.failed())
        if not sample.must_fail <= failed:
            problems.append(f"{sample.student}: kept points on {sample.must_fail - failed}")
        unexpected = failed - sample.must_fail - sample.may_fail
        if unexpected:
            problems.append(f"{sample.student}: lost points on {unexpected}")
        partial = {gid: c.score for gid, c in sub.cells.items() if 0 < c.score < c.max_score}
        if partial:
            problems.append(f"{sample.student}: partial credit {partial}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_reference_full_marks_and_stub_zero(graded, assignment):
    g = graded[assignment]
    total = sum(_source_points(g.course, assignment).values())
    assert g.grades["ref"].score == g.grades["ref"].max_score == total
    assert g.grades["stub"].score == 0
    assert g.grades["stub"].max_score == total


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_stub_fails_only_through_not_implemented(graded, assignment):
    """The untouched release runs without errors other than the stubs' NotImplementedError
    (and, in test cells, names a stubbed cell never got to define)."""
    g = graded[assignment]
    nb = notebooks.read(g.course.autograded_path("stub", assignment))
    bad, stubbed = [], False
    for cell in nb.cells:
        # a cell's error, and in a test cell with partial credit each failed part's error type,
        # which the breakdown prints ("[1 point] what: FAILED: Type: message")
        errors = [(out.ename, out.evalue) for out in cell.get("outputs", [])
                  if out.output_type == "error"]
        if notebooks.is_test(cell):
            text = "".join(o.get("text", "") for o in cell.get("outputs", [])
                           if o.output_type == "stream" and o.get("name") == "stdout")
            errors += re.findall(r"^\[[^\]]*\] .*?: FAILED: (\w+): ?(.*)$", text, re.MULTILINE)
        for ename, evalue in errors:
            # after a stub raised, later cells may miss the names it would have defined
            allowed = {"NotImplementedError", "NameError"} if stubbed else {"NotImplementedError"}
            if ename not in allowed:
                bad.append(f"{notebooks.grade_id(cell)}: {ename}: {evalue}")
            stubbed |= ename == "NotImplementedError"
    assert stubbed, "no stub raised NotImplementedError"
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_corrupt_submission_is_reported_and_harms_nobody(graded, assignment):
    g = graded[assignment]
    corrupt = [s.student for s in g.samples if not s.processed]
    assert corrupt, "the samples should include a corrupt submission"
    assert g.autograde.returncode != 0, "nbgrader should report the failed submission"
    log = g.autograde.stdout + g.autograde.stderr
    for student in corrupt:
        assert student in log
        assert not g.course.autograded_path(student, assignment).exists()
    graded_students = {s.student for s in g.samples if s.processed}
    assert graded_students <= set(g.grades)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_tampered_test_cells_are_restored(graded, assignment):
    g = graded[assignment]
    source = notebooks.read(g.course.source_path(assignment))
    expected = {notebooks.grade_id(c): c.source for c in notebooks.test_cells(source)}
    for student in ("tamper-edit", "tamper-delete"):
        nb = notebooks.read(g.course.autograded_path(student, assignment))
        found = {notebooks.grade_id(c): c.source for c in notebooks.test_cells(nb)}
        assert set(found) == set(expected), f"{student}: test cells {set(expected) - set(found)}"
        for gid, src in expected.items():
            # nbgrader prefixes a re-inserted cell with a comment saying so
            restored = found[gid].removeprefix(MISSING_NOTE.format(cell_id=gid))
            assert restored == src, f"{student}: test cell {gid} was not restored"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_grading_files_never_reach_the_student_side(graded, assignment):
    """``source/<a>/grading/`` (mutants, calibration) is in ``CourseDirectory.ignore``: nbgrader
    copies every other file of ``source/<a>/`` into ``release/<a>/`` and into each autograded
    folder (where the student's kernel runs)."""
    g = graded[assignment]
    assert (g.course.grading_folder(assignment) / "mutations.toml").is_file()  # it is there
    assert not (g.course.folder("release", ".", assignment) / "grading").exists()
    folders = [g.course.folder("autograded", s.student, assignment) for s in g.samples]
    folders = [f for f in folders if f.is_dir()]
    assert folders, "the check needs autograded folders"
    assert [f.parent.name for f in folders if (f / "grading").exists()] == []
