"""Shared fixtures: a scratch course graded end to end through the real nbgrader commands."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import pytest

from graders import samples as samples_mod
from graders.course import Course, SubmissionGrade


@dataclass
class GradedAssignment:
    course: Course
    assignment: str
    samples: list[samples_mod.Sample]
    grades: dict[str, SubmissionGrade]
    autograde: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def graded(tmp_path_factory) -> dict[str, GradedAssignment]:
    """Every assignment released in a scratch copy of the course, and all samples autograded.

    Tests that use it should carry ``@pytest.mark.xdist_group("nbgrader")`` so that one
    worker builds it once.
    """
    course = Course.scratch(tmp_path_factory.mktemp("course"))
    result = {}
    for assignment in course.assignments():
        course.generate_release(assignment)
        built = samples_mod.build(course, assignment, mutants=False)
        for sample in built:
            course.submit(sample.student, assignment, sample.notebook)
        proc = course.autograde(assignment)
        result[assignment] = GradedAssignment(
            course, assignment, built, course.grades(assignment), proc
        )
    return result
