"""Shared fixtures: a scratch course released and graded through the real nbgrader commands.

Tests using them carry ``@pytest.mark.xdist_group("nbgrader")`` so that one pytest worker
builds each fixture once.
"""

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
def released(tmp_path_factory) -> Course:
    """A scratch copy of the course (config and sources only) with every assignment released."""
    course = Course.scratch(tmp_path_factory.mktemp("course"))
    for assignment in course.assignments():
        course.generate_release(assignment)
    return course


@pytest.fixture(scope="session")
def graded(released) -> dict[str, GradedAssignment]:
    """All sample submissions (but the mutants) of every assignment, autograded."""
    result = {}
    for assignment in released.assignments():
        built = samples_mod.build(released, assignment, mutants=False)
        for sample in built:
            released.submit(sample.student, assignment, sample.notebook)
        proc = released.autograde(assignment)
        result[assignment] = GradedAssignment(
            released, assignment, built, released.grades(assignment), proc
        )
    return result
