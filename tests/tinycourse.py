"""A tiny synthetic nbgrader course for tests that exercise grading itself, not an assignment.

Its one assignment (``tiny``) has three solution cells and three test cells (1 + 2 + 3 points),
needs no torch, and runs in about a second. A hidden test carries :data:`SECRET`, so a test can
check that it never reaches a student-visible output. The course reuses the repository's
``nbgrader_config.py``, so it is graded under the same rules as the real assignments.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from filelock import FileLock
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from graders import notebooks
from graders.course import REPO_ROOT, Course

ASSIGNMENT = "tiny"
SECRET = "SECRET-hidden-7f3a91"
POINTS = {"test_add": 1.0, "test_mul": 2.0, "test_square": 3.0}
# which test cell a wrong answer to each solution cell fails (tests are independent)
TEST_OF = {"add": "test_add", "mul": "test_mul", "square": "test_square"}

_SOLUTIONS = {
    "add": "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION",
    "mul": "def mul(a, b):\n    ### BEGIN SOLUTION\n    return a * b\n    ### END SOLUTION",
    "square": "def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION",
}
_WRONG = {
    "add": "def add(a, b):\n    return a - b",
    "mul": "def mul(a, b):\n    return a + b",
    "square": "def square(x):\n    return 2 * x",
}
_TESTS = {
    "test_add": (
        '"""add() adds."""\nassert add(1, 2) == 3\n'
        f"### BEGIN HIDDEN TESTS\n# {SECRET}\nassert add(-4, 4) == 0\n### END HIDDEN TESTS"
    ),
    "test_mul": '"""mul() multiplies."""\nassert mul(3, 4) == 12\nassert mul(0, 5) == 0',
    "test_square": '"""square() squares."""\nassert square(3) == 9\nassert square(-2) == 4',
}


def _meta(gid: str, *, solution: bool = False, points: float | None = None) -> dict:
    meta = {
        "grade_id": gid,
        "solution": solution,
        "grade": points is not None,
        "locked": not solution,
        "schema_version": 3,
    }
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def source_notebook() -> NotebookNode:
    """The instructor's notebook of the tiny assignment (solutions and hidden tests in)."""
    cells = [new_markdown_cell("# Tiny assignment\nThree one-line functions.")]
    for name, code in _SOLUTIONS.items():
        cells.append(new_code_cell(code, metadata=_meta(name, solution=True)))
        test = TEST_OF[name]
        cells.append(new_code_cell(_TESTS[test], metadata=_meta(test, points=POINTS[test])))
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def make_course(root: Path) -> Course:
    """A released course at ``root`` whose only assignment is :data:`ASSIGNMENT`."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    path = root / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(source_notebook(), str(path))
    course = Course(root)
    course.generate_release(ASSIGNMENT)
    return course


def copy_course(src: Course, dest: Path) -> Course:
    """A copy of a released course (config, source, release, gradebook) without submissions."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("nbgrader_config.py", "gradebook.db"):
        shutil.copy2(src.root / name, dest / name)
    for name in ("source", "release"):
        shutil.copytree(src.root / name, dest / name)
    return Course(dest)


def submission(course: Course, wrong: tuple[str, ...] = (), unsolved: tuple[str, ...] = ()):
    """The reference with the cells in ``wrong`` answered wrongly and ``unsolved`` left as stubs."""
    nb = notebooks.solved(
        notebooks.read(course.source_path(ASSIGNMENT)),
        notebooks.read(course.release_path(ASSIGNMENT)),
        unsolved=unsolved,
    )
    for cell in nb.cells:
        if notebooks.grade_id(cell) in wrong:
            cell.source = _WRONG[notebooks.grade_id(cell)]
    return nb


def expected_scores(wrong: tuple[str, ...] = (), unsolved: tuple[str, ...] = ()) -> dict:
    """Per test cell, the score a submission made by :func:`submission` deserves."""
    lost = {TEST_OF[c] for c in (*wrong, *unsolved)}
    return {gid: 0.0 if gid in lost else pts for gid, pts in POINTS.items()}


@pytest.fixture(scope="session")
def tiny_released(tmp_path_factory) -> Course:
    """The tiny course, released once per test run (whichever xdist workers ask for it).
    Tests copy it (:func:`copy_course`) before submitting anything."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "tinycourse"
    with FileLock(str(shared / "tinycourse.lock")):
        if not (root / ".released").exists():
            shutil.rmtree(root, ignore_errors=True)
            make_course(root)
            (root / ".released").touch()
    return Course(root)
