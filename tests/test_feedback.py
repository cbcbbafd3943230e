"""``feedback``: per-student HTML with pass/fail, points and messages, never hidden tests."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from graders import cli, notebooks
from graders.course import REPO_ROOT, Course
from graders.feedback import REDACTED, build_feedback_notebook, render_html, summary_html

pytestmark = pytest.mark.xdist_group("nbgrader")

A = "fb"
HIDDEN = [
    "_secret_case = 21  # hidden-aa11",
    'assert double(_secret_case) == 42, "double(21) should be 42"',
    "assert double(3) == 6  # hidden-bb22",
]
SOURCE_CELLS = [
    ("double", None,
     "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"),
    ("test_double", 2, "assert double(1) == 2\n### BEGIN HIDDEN TESTS\n"
                       f"{HIDDEN[0]}\n{HIDDEN[1]}\n### END HIDDEN TESTS"),
    ("later", None, "### BEGIN SOLUTION\nlater = 1\n### END SOLUTION"),
    ("test_passing", 1, f"assert double(2) == 4\n### BEGIN HIDDEN TESTS\n{HIDDEN[2]}\n"
                        "### END HIDDEN TESTS"),
]
HONEST = {"double": "def double(x):\n    return 0 if x == 21 else 2 * x", "later": "later = 1"}
# Runs inside the hidden tests and tries every channel to show their source in its feedback.
SNEAKY = {
    "double": (
        "import inspect, traceback, warnings\n_LEAK = []\n"
        "def double(x):\n"
        "    _LEAK.append(''.join(traceback.format_stack()))\n"
        "    print(''.join(traceback.format_stack()))\n"
        "    warnings.warn('look', stacklevel=2)\n"
        "    if x == 21:\n"
        "        raise ValueError(inspect.stack()[1].code_context[0])\n"
        "    return 2 * x"
    ),
    "later": "print(''.join(_LEAK))\nfrom IPython.display import HTML, display\n"
             "display(HTML('<pre>' + ''.join(_LEAK) + '</pre>'))",
}


def _cell(gid: str, points: float | None, source: str) -> nbformat.NotebookNode:
    meta = {"grade_id": gid, "solution": points is None, "grade": points is not None,
            "locked": points is not None, "schema_version": 3}
    if points is not None:
        meta["points"] = points
    return new_code_cell(source, metadata={"nbgrader": meta})


def _submission(course: Course, answers: dict[str, str]) -> nbformat.NotebookNode:
    nb = notebooks.read(course.release_path(A))
    for cell in nb.cells:
        if notebooks.grade_id(cell) in answers:
            cell.source = answers[notebooks.grade_id(cell)]
    return nb


@pytest.fixture(scope="module")
def fb_course(tmp_path_factory) -> Course:
    """A toy course graded for an honest (one hidden failure) and a sneaky student."""
    root = tmp_path_factory.mktemp("fbcourse")
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    nb = new_notebook(cells=[_cell(*c) for c in SOURCE_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    (root / "source" / A).mkdir(parents=True)
    nbformat.write(nb, str(root / "source" / A / f"{A}.ipynb"))
    course = Course(root)
    course.generate_release(A)
    course.submit("honest", A, _submission(course, HONEST))
    course.submit("sneaky", A, _submission(course, SNEAKY))
    course.autograde(A)
    return course


class _Text(HTMLParser):
    """The text a browser shows (script and style left out)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style") and self._skip > 0

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def page_text(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    return "".join(parser.parts)


def leaked(text: str, lines: list[str]) -> list[str]:
    return [line for line in lines if line in text]


def test_hidden_tests_reach_nbgrader_feedback_but_not_ours(fb_course, capsys):
    course = fb_course
    grades = course.grades(A)
    assert grades["honest"].cells["test_double"].score == 0  # failed in the hidden part
    assert grades["honest"].cells["test_passing"].score == 1
    # the check has teeth: nbgrader's own feedback and the raw autograded notebook leak
    course.nbgrader("generate_feedback", A, "--student=honest", "--force")
    ours = course.root / "feedback" / "honest" / A / f"{A}.html"
    assert leaked(page_text(ours.read_text()), HIDDEN)
    raw = notebooks.read(course.autograded_path("sneaky", A))
    from nbconvert import HTMLExporter

    assert len(leaked(page_text(HTMLExporter().from_notebook_node(raw)[0]), HIDDEN)) == 3

    assert cli.main(["--root", str(course.root), "feedback", A]) == 0
    assert "honest" in capsys.readouterr().out
    honest = page_text(ours.read_text())
    sneaky = page_text((course.root / "feedback" / "sneaky" / A / f"{A}.html").read_text())
    assert leaked(honest, HIDDEN) == [] and leaked(sneaky, HIDDEN) == []

    assert "AssertionError: double(21) should be 42" in honest  # the message stays
    assert "Score: 1 / 3" in honest
    assert re.search(r"test_double\s*failed: 0 / 2 points", honest)
    assert re.search(r"test_passing\s*passed: 1 / 1 points", honest)
    assert "Traceback" not in honest and "Traceback" not in sneaky
    assert "ValueError: " + REDACTED in sneaky  # its exception quoted the hidden line
    assert sneaky.count(REDACTED) >= 3  # printed stacks, warnings, stored stacks
    assert "assert double(1) == 2" in honest  # the visible test is shown


def test_feedback_for_one_student_only(fb_course, capsys):
    out = fb_course.root / "feedback"
    shutil.rmtree(out, ignore_errors=True)
    assert cli.main(["--root", str(fb_course.root), "feedback", A, "--student", "honest"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html")) == [
        f"honest/{A}/{A}.html"]
    assert cli.main(["--root", str(fb_course.root), "feedback", A, "--student", "nobody"]) == 1


def _secret_lines(source: nbformat.NotebookNode, release: nbformat.NotebookNode) -> list[str]:
    """Lines of hidden blocks students cannot see in the release (6 characters or more)."""
    visible = {ln.strip() for c in release.cells for ln in c.source.splitlines()}
    found = []
    for cell in notebooks.test_cells(source):
        for block in re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS",
                                cell.source, re.S):
            found += [ln.strip() for ln in block.splitlines()]
    return [ln for ln in found if len(ln) >= 6 and ln not in visible]


@pytest.mark.slow
def test_feedback_of_real_graded_samples_hides_every_hidden_line(graded):
    for assignment, g in graded.items():
        course = g.course
        source = notebooks.read(course.source_path(assignment))
        release = notebooks.read(course.release_path(assignment))
        secrets = _secret_lines(source, release)
        raw = notebooks.read(course.autograded_path("ref", assignment))
        raw_lines = {ln.strip() for ln in page_text(render_html(raw, "")).splitlines()}
        assert set(secrets) <= raw_lines, "the check must see hidden lines in the raw notebook"
        checked = set()
        for student, grade in g.grades.items():
            if not course.autograded_path(student, assignment).is_file():
                continue  # refused by nbgrader (the corrupt sample): nothing to give feedback on
            autograded = notebooks.read(course.autograded_path(student, assignment))
            nb, results = build_feedback_notebook(autograded, release, grade)
            text = page_text(render_html(nb, summary_html(student, assignment, results)))
            # whole lines: a hidden line may be a prefix of a visible one ("f(a," / "f(a, b)")
            own = {ln.strip() for c in autograded.cells if not notebooks.is_test(c)
                   for ln in c.source.splitlines()}
            shown = {ln.strip() for ln in text.splitlines()} - own
            assert shown.isdisjoint(secrets), (assignment, student, shown & set(secrets))
            assert {r.grade_id: r.score for r in results} == {
                k: c.score for k, c in grade.cells.items()}
            for r in results:
                assert r.passed == (r.score == r.max_score)
                assert bool(r.message) != r.passed, (student, r)  # failed cells say why
            if student == "ref":
                assert all(r.passed for r in results)
            if student == "stub":
                assert not any(r.passed for r in results)
            checked.add(student)
        assert {"ref", "stub", "partial"} <= checked
