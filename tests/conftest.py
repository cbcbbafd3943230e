"""Shared fixtures: a scratch course released and graded through the real nbgrader commands.

Tests using them carry ``@pytest.mark.xdist_group("nbgrader")`` so that one pytest worker
builds each fixture once.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import pytest

from graders import samples as samples_mod
from graders.course import Course, SubmissionGrade

# One share of the cores per pytest-xdist worker, for the worker and every kernel it starts
# (kernels inherit the environment). Oversubscribed torch threads made a 20 s notebook take
# two minutes while another worker was busy.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = str(max(1, (os.cpu_count() or 1) // _WORKERS))
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "DLWORKSHOP_THREADS"):
    os.environ[_var] = _THREADS
os.environ["DLWORKSHOP_PROGRESS"] = "0"


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
