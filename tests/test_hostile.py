"""Hostile students (graders/hostile.py) graded by ``graders autograde`` (the real
``nbgrader autograde`` per notebook, sandboxed, course configuration): hiding errors and patching
helpers change no score, and nothing of the hidden tests reaches any output or feedback
(``nbgrader generate_feedback`` with the course's configuration, as the formgrader runs it), in
any encoding.

Each hiding or patching trick goes into a stub, a wrong and a correct submission of a small
course that uses NumPy and ``dlworkshop.checks`` like the real assignments; each read-back trick
into a correct one. All are graded in one run.
"""

from __future__ import annotations

import base64
import json
import re
import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from graders import hostile, notebooks, parallel
from graders.course import REPO_ROOT, Course

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("hostile")]

A = "guard"
SECRET = "zq7c1e5d-nobody-may-see-xk"
POINTS = {"test_add": 1.0, "test_scale": 2.0, "test_norm": 3.0}
SOLUTIONS = {
    "add": "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION",
    "scale": "def scale(x, k):\n    ### BEGIN SOLUTION\n    return k * x\n    ### END SOLUTION",
    "norm": "def norm(x):\n    ### BEGIN SOLUTION\n    return float(np.sqrt((x * x).sum()))\n"
            "    ### END SOLUTION",
}
WRONG = {"scale": "def scale(x, k):\n    return x + k"}
TESTS = {
    "test_add": "assert add(1, 2) == 3\n### BEGIN HIDDEN TESTS\n"
                f"# {SECRET} one\nassert add(-4, 4) == 0\nassert add(0.5, 0.25) == 0.75\n"
                "### END HIDDEN TESTS",
    "test_scale": 'checks.check_close("scale(ones, 2)", scale(np.ones(3), 2.0), np.full(3, 2.0))\n'
                  f"### BEGIN HIDDEN TESTS\n# {SECRET} two\n"
                  '_x = np.arange(5.0) - 2\nchecks.check_close("scale(x, -1.5)", scale(_x, -1.5), '
                  "-1.5 * _x)\nassert checks.check_rel_error('scale', scale(_x, 3.0), 3 * _x, "
                  "1e-12) <= 1e-12\n### END HIDDEN TESTS",
    "test_norm": 'checks.check_close("norm", norm(np.array([3.0, 4.0])), 5.0)\n'
                 f"### BEGIN HIDDEN TESTS\n# {SECRET} three\n"
                 'checks.check_close("norm of zeros", norm(np.zeros(4)), 0.0)\n'
                 'checks.check_close("norm", norm(np.ones(9)), 3.0)\n### END HIDDEN TESTS',
}
SCRIPT = "document.title='pwned-by-a-student'"
TEST_OF = {"add": "test_add", "scale": "test_scale", "norm": "test_norm"}
KINDS = {"stub": tuple(SOLUTIONS), "wrong": (), "ref": ()}


def _meta(gid: str, solution: bool = False, points: float | None = None) -> dict:
    meta = {"grade_id": gid, "solution": solution, "grade": points is not None,
            "locked": not solution, "schema_version": 3}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def _source() -> nbformat.NotebookNode:
    setup = "import numpy as np\nfrom dlworkshop import checks"
    cells = [new_markdown_cell("# Guard course"), new_code_cell(setup, metadata=_meta("setup"))]
    for name, code in SOLUTIONS.items():
        cells.append(new_code_cell(code, metadata=_meta(name, solution=True)))
        test = TEST_OF[name]
        cells.append(new_code_cell(TESTS[test], metadata=_meta(test, points=POINTS[test])))
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nb


def _submission(course: Course, kind: str) -> nbformat.NotebookNode:
    nb = notebooks.solved(notebooks.read(course.source_path(A)),
                          notebooks.read(course.release_path(A)), unsolved=KINDS[kind])
    if kind == "wrong":
        for cell in nb.cells:
            if notebooks.grade_id(cell) in WRONG:
                cell.source = WRONG[notebooks.grade_id(cell)]
    return nb


def _expected(kind: str) -> dict[str, float]:
    if kind == "stub":
        return {g: 0.0 for g in POINTS}
    if kind == "wrong":
        return {**POINTS, "test_scale": 0.0}
    return dict(POINTS)


def _student(trick: str, kind: str) -> str:
    return f"{trick}--{kind}"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile") / "course"
    root.mkdir()
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    path = root / "source" / A / f"{A}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(_source(), str(path))
    course = Course(root)
    course.generate_release(A)
    for kind in KINDS:
        course.submit(_student("plain", kind), A, _submission(course, kind))
        for trick in hostile.TRICKS:
            if trick.kind != "readback" or kind == "ref":
                course.submit(_student(trick.name, kind), A,
                              hostile.with_trick(_submission(course, kind), trick))
    scripted = _submission(course, "ref")  # outputs saved in the submitted file: shown back
    scripted.cells.append(new_code_cell("print('hi')", outputs=[
        nbformat.v4.new_output("display_data", data={
            "text/html": f"<b>hi</b><script>{SCRIPT}</script>", "text/plain": "hi"}),
        nbformat.v4.new_output("display_data", data={"application/javascript": SCRIPT}),
    ]))
    course.submit("script-output--ref", A, scripted)
    settings = parallel.Settings(workers=2, progress=False, cell_timeout=30)
    results = parallel.autograde(course, parallel.select_jobs(course, [A]), settings)
    grades = {s: {g: c.score for g, c in sub.cells.items()}
              for s, sub in course.grades(A).items()}
    feedback = course.nbgrader("generate_feedback", A, "--force", check=False)
    return course, grades, results, feedback


def _outputs(course: Course, student: str) -> str:
    nb = nbformat.read(str(course.autograded_path(student, A)), as_version=4)
    return "\n".join(json.dumps(c.get("outputs", [])) for c in nb.cells)


def _encodings(text: str) -> list[str]:
    """``text`` as a snooping student might print it."""
    chunks = [text[i:i + 9] for i in range(0, len(text), 9)]  # split over lines
    return [text, text[::-1], base64.b64encode(text.encode()).decode()[:24], *chunks]


def test_plain_submissions_get_what_they_deserve(graded):
    _, grades, results, _ = graded
    for kind in KINDS:
        assert grades[_student("plain", kind)] == _expected(kind), kind
    assert {r.status for r in results} <= {"graded", "flagged"}, [
        (r.student, r.status, r.reason) for r in results if r.status not in ("graded", "flagged")]


@pytest.mark.parametrize("trick", [t for t in hostile.TRICKS if t.kind in ("hide", "patch")],
                         ids=lambda t: t.name)
def test_hiding_errors_or_patching_helpers_changes_no_score(graded, trick):
    course, grades, _, _ = graded
    for kind in KINDS:
        student = _student(trick.name, kind)
        assert grades.get(student) == _expected(kind), f"{student}: {grades.get(student)}"
        assert f"trick {trick.name} ran" in _outputs(course, student)


@pytest.mark.parametrize("trick", [t for t in hostile.TRICKS if t.kind == "readback"],
                         ids=lambda t: t.name)
def test_reading_back_finds_no_hidden_test(graded, trick):
    course, grades, _, _ = graded
    for kind in ("ref",):
        student = _student(trick.name, kind)
        assert grades.get(student) == _expected(kind), f"{student}: {grades.get(student)}"
        out = _outputs(course, student)
        assert f"trick {trick.name} ran" in out
        for secret in _encodings(SECRET) + ["BEGIN HIDDEN", "add(-4, 4)", "norm of zeros"]:
            assert secret not in out, f"{student} printed {secret!r}"


def test_feedback_runs_no_script_of_the_student(graded):
    course, grades, _, _ = graded
    page = course.root / "feedback" / "script-output--ref" / A / f"{A}.html"
    html = page.read_text()
    assert "<b>hi</b>" in html  # the student's own output is shown ...
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", html, re.S | re.I)
    assert not [s for s in scripts if "pwned-by-a-student" in s]  # ... without its script


def test_no_hidden_test_in_any_autograded_output_or_feedback(graded):
    course, grades, _, feedback = graded
    assert feedback.returncode == 0, feedback.stdout + feedback.stderr
    hidden = [line.strip() for t in TESTS.values() for line in notebooks.hidden_test_lines(t)]
    needles = [n for line in hidden if len(line) > 6 for n in (line, line[::-1])]
    needles += _encodings(SECRET)
    pages = sorted((course.root / "feedback").rglob("*.html"))
    assert len(pages) == len(grades)
    for page in pages:
        html = page.read_text()
        leaked = [n for n in needles if n in html]
        assert not leaked, f"{page}: {leaked[:3]}"
    for student in grades:
        nb = nbformat.read(str(course.autograded_path(student, A)), as_version=4)
        for cell in notebooks.test_cells(nb):
            text = json.dumps(cell.get("outputs", []))
            leaked = [n for n in needles if n in text]
            assert not leaked, f"{student} {notebooks.grade_id(cell)}: {leaked[:3]}"
