"""The grading tool's own logic that does not need the whole class autograded."""

from __future__ import annotations

import nbformat
import pytest

from graders import notebooks, samples
from graders.course import Course, NbgraderError

pytestmark = pytest.mark.xdist_group("nbgrader")


def test_student_names_match_the_built_samples(released):
    for assignment in released.assignments():
        built = [s.student for s in samples.build(released, assignment)]
        assert sorted(built) == sorted(samples.student_names(assignment))
        assert len(set(built)) == len(built)
        without = [s.student for s in samples.build(released, assignment, mutants=False)]
        assert sorted(without) == sorted(samples.student_names(assignment, mutants=False))


def test_removing_demo_students_lets_a_changed_notebook_be_released_again(tmp_path):
    course = Course.scratch(tmp_path / "course")
    assignment = course.assignments()[0]
    course.generate_release(assignment)
    stub = next(s for s in samples.build(course, assignment, mutants=False) if s.student == "stub")
    course.submit("stub", assignment, stub.notebook)
    course.autograde(assignment, student="stub")
    assert "stub" in course.grades(assignment)

    # the instructor removes a tracked (locked) cell: nbgrader refuses while submissions exist
    path = course.source_path(assignment)
    nb = notebooks.read(path)
    nb.cells = [c for c in nb.cells if notebooks.grade_id(c) != "intro"]
    nbformat.write(nb, str(path))
    with pytest.raises(NbgraderError, match="there are submissions"):
        course.generate_release(assignment)

    course.remove_students(["stub", "never-existed"])
    assert course.grades(assignment) == {}
    course.generate_release(assignment)
    assert "intro" not in {
        notebooks.grade_id(c) for c in notebooks.read(course.release_path(assignment)).cells
    }


def test_sigterm_stops_a_command_like_ctrl_c():
    """`kill` or a job engine's time limit: the batch's KeyboardInterrupt path cleans up."""
    import os
    import signal
    import time

    import pytest

    from graders import cli

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), cli.sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises here at the latest
    assert signal.getsignal(signal.SIGTERM) is before
