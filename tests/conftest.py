"""Shared fixtures: a scratch course released and graded through the real nbgrader commands.

Each is built once per test run even with several pytest-xdist workers (a file lock and a
folder shared by the workers); tests using them also carry ``xdist_group("nbgrader")`` so that
they tend to run on one worker while the other runs the rest.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

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


def _shared_dir(tmp_path_factory) -> Path:
    """A folder shared by all pytest-xdist workers of this run (the xdist-documented way)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def released(tmp_path_factory) -> Course:
    """A scratch copy of the course (config and sources only) with every assignment released.

    Built once per test run, whichever workers ask for it (a file lock guards it).
    """
    shared = _shared_dir(tmp_path_factory)
    with FileLock(str(shared / "released.lock")):
        root = shared / "course"
        if not (root / ".released").exists():
            course = Course.scratch(root)
            for assignment in course.assignments():
                course.generate_release(assignment)
            (root / ".released").touch()
    return Course(root)


@pytest.fixture(scope="session")
def graded(released, tmp_path_factory) -> dict[str, GradedAssignment]:
    """All sample submissions (but the mutants) of every assignment, autograded once per run."""
    shared = _shared_dir(tmp_path_factory)
    result = {}
    with FileLock(str(shared / "graded.lock")):
        for assignment in released.assignments():
            built = samples_mod.build(released, assignment, mutants=False)
            log = shared / f"autograde-{assignment}.json"
            if not log.exists():
                for sample in built:
                    released.submit(sample.student, assignment, sample.notebook)
                proc = released.autograde(assignment)
                log.write_text(json.dumps([proc.returncode, proc.stdout, proc.stderr]))
            code, out, err = json.loads(log.read_text())
            proc = subprocess.CompletedProcess([], code, out, err)
            result[assignment] = GradedAssignment(
                released, assignment, built, released.grades(assignment), proc
            )
    return result
