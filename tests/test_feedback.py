"""Feedback pages: built by nbgrader's own ``generate_feedback`` with the course's
:class:`graders.feedback_preprocessor.SafeFeedback`, they show test cells without hidden tests,
the trusted runner's one-line results, and the student's cells with the outputs of the notebook
the student submitted, never what the student's code printed while it was graded.

The leak checks here are independent of the product (which never looks for hidden text): every
hidden line is searched as a whole line, reversed, base64-encoded (at each alignment) and, on
the toy course, with its whitespace and line breaks removed.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from graders import notebooks
from graders.course import REPO_ROOT, Course
from graders.feedback import write_feedback
from graders.feedback_preprocessor import (
    NO_SUBMISSION_NOTE,
    NO_TEST_CODE,
    PREPROCESSORS,
    SafeFeedback,
)
from tests.tinycourse import SECRET

pytestmark = pytest.mark.xdist_group("nbgrader")

A = "fb"
HIDDEN = [
    "_secret_case = 21  # hidden-aa11",
    'assert double(_secret_case) == 42, "double(21) should be 42"',
    f"# {SECRET}",
    "assert double(3) == 6  # hidden-bb22",
]
SOURCE_CELLS = [
    ("double", None,
     "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"),
    ("test_double", 2, "assert double(1) == 2\n### BEGIN HIDDEN TESTS\n"
                       f"{HIDDEN[0]}\n{HIDDEN[1]}\n{HIDDEN[2]}\n### END HIDDEN TESTS"),
    ("later", None, "### BEGIN SOLUTION\nlater = 1\n### END SOLUTION"),
    ("test_passing", 1, f"assert double(2) == 4\n### BEGIN HIDDEN TESTS\n{HIDDEN[3]}\n"
                        "### END HIDDEN TESTS"),
]
HONEST = {"double": "def double(x):\n    return 0 if x == 21 else 2 * x", "later": "later = 1"}
SUBMITTED_MARK = "SUBMITTED-OUTPUT-4242"  # an output only the submitted file holds
GRADING_MARK = "GRADING-RUN-7777"  # printed by the student's code only when it runs again
# A student cell that runs after the test cells (today's grading runs them in the student's
# kernel): it reads their full source back from IPython's input history and shows it in every
# form it can, and drops copies into its folder (which nbgrader copies into feedback/).
LEAKY = {
    "double": "print('GRADING-RUN-' + str(7777))\ndef double(x):\n    return 2 * x",
    "later": (
        "import base64\nfrom IPython.display import HTML, display\n"
        "_src = '\\n'.join(_ih)\n"
        "print(_src)\nprint(_src[::-1])\nprint(base64.b64encode(_src.encode()).decode())\n"
        "print('\\n'.join(_src[i:i + 5] for i in range(0, len(_src), 5)))\n"
        "display(HTML('<pre>' + _src + '</pre>'))\n"
        "open('leak.html', 'w').write(_src)\nopen('leak.txt', 'w').write(_src)\n"
        "import os\nos.makedirs('leakdir', exist_ok=True)\n"
        "open('leakdir/x.txt', 'w').write(_src)\nlater = 1"
    ),
}


# ------------------------------------------------------------------------ independent checks
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


def b64_forms(line: str) -> list[str]:
    """Base64 fragments that any base64 text containing ``line`` holds, one per alignment."""
    data, forms = line.encode(), []
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + data).decode()
        start = 4 if k else 0
        middle = enc[start:len(enc) - 4]  # the last group depends on what follows
        if len(middle) >= 8:
            forms.append(middle)
    return forms


def leaks(markup: str, lines: list[str], whitespace: bool = False) -> list[str]:
    """The hidden ``lines`` found in a page: whole lines of its text, anywhere reversed or as
    base64 in its raw markup, and (``whitespace``) with all whitespace removed."""
    text = page_text(markup)
    shown = {ln.strip() for ln in text.splitlines()}
    squashed = re.sub(r"\s+", "", text) if whitespace else ""
    found = []
    for line in lines:
        forms = [line[::-1], *b64_forms(line)]
        if (line in shown or any(f in markup for f in forms)
                or (whitespace and re.sub(r"\s+", "", line) in squashed)):
            found.append(line)
    return found


def test_the_leak_check_has_teeth():
    line = HIDDEN[1]
    assert leaks(f"<p>{line}</p>", [line]) == [line]
    assert leaks(f"<p>{line[::-1]}</p>", [line]) == [line]
    for prefix in ("", "x", "xy"):
        enc = base64.b64encode(f"{prefix}abc\n{line}\nxyz".encode()).decode()
        assert leaks(f"<pre>{enc}</pre>", [line]) == [line]
    split = "\n".join(line[i:i + 5] for i in range(0, len(line), 5))
    assert leaks(f"<pre>{split}</pre>", [line], whitespace=True) == [line]
    assert leaks("<p>nothing here</p>", [line], whitespace=True) == []


# ------------------------------------------------------------------------ configuration
def test_course_config_routes_nbgrader_feedback_through_safe_feedback():
    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO_ROOT)).load_config()
    assert list(config.GenerateFeedback.preprocessors) == list(PREPROCESSORS)


# ------------------------------------------------------------------------ unit: a hand-made
# autograded notebook, as the trusted runner writes it (plus what a hostile kernel could add)
def _meta(gid: str, *, points: float | None = None, score: float | None = None) -> dict:
    meta = {"grade_id": gid, "solution": points is None, "grade": points is not None,
            "locked": points is not None, "schema_version": 3}
    if points is not None:
        meta.update(points=points, score=score)  # GetGrades puts the score here
    return {"nbgrader": meta}


def _hand_made() -> tuple[nbformat.NotebookNode, dict]:
    """An autograded notebook of student ``s`` (assignment ``a``) and the resources nbgrader
    gives the preprocessor."""
    hidden_src = "\n".join(HIDDEN)
    test = new_code_cell(
        f"assert double(1) == 2\n### BEGIN HIDDEN TESTS\n{hidden_src}\n### END HIDDEN TESTS",
        metadata=_meta("test_double", points=2, score=0),
        outputs=[
            new_output("stream", name="stdout", text="checked double(1)\n"),
            new_output("stream", name="stderr", text=f"{HIDDEN[0]}\n"),
            new_output("display_data", data={"text/html": f"<b>{HIDDEN[1]}</b>",
                                             "image/png": "iVBORw0KGgo="}),
            new_output("error", ename="AssertionError", evalue="double(21) should be 42",
                       traceback=[f"  {HIDDEN[1]}", f"{SECRET}",
                                  "(failed in a hidden check of this test)"]),
        ],
    )
    own = new_code_cell("def double(x):\n    return 0 if x == 21 else 2 * x",
                        metadata=_meta("double"),
                        outputs=[new_output("stream", name="stdout", text=HIDDEN[1][::-1])])
    renamed = new_code_cell("later = 1", metadata=_meta("later"),
                            outputs=[new_output("stream", name="stdout", text=GRADING_MARK)])
    plain = new_code_cell("print('plain')",
                          outputs=[new_output("stream", name="stdout", text=GRADING_MARK)])
    passing = new_code_cell("assert double(2) == 4\n### BEGIN HIDDEN TESTS\n"
                            f"{HIDDEN[3]}\n### END HIDDEN TESTS",
                            metadata=_meta("test_passing", points=1, score=1))
    nb = new_notebook(cells=[new_markdown_cell("# Toy"), own, test, renamed, plain, passing])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"s": HIDDEN[2]}}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    resources = {"nbgrader": {"student": "s", "assignment": "a", "notebook": "a",
                              "score": 1.0, "max_score": 3.0}}
    return nb, resources


def _submit(tmp_path: Path, submitted: nbformat.NotebookNode | bytes) -> None:
    """Write ``submitted/s/a/a.ipynb`` under the course root ``tmp_path``."""
    folder = tmp_path / "submitted" / "s" / "a"
    folder.mkdir(parents=True)
    if isinstance(submitted, bytes):
        (folder / "a.ipynb").write_bytes(submitted)
    else:
        nbformat.write(submitted, str(folder / "a.ipynb"))


def _submitted_for(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """What the student handed in: the same cells with their own (pre-grading) outputs; the
    ``later`` cell lost its id (matched by grade_id), the plain cell has another id."""
    sub = copy.deepcopy(nb)
    del sub.metadata["widgets"]
    for cell in sub.cells:
        if notebooks.is_test(cell):  # the release version, as students have it
            cell.source = cell.source.split("\n### BEGIN HIDDEN TESTS")[0]
            cell.outputs = []
    own, renamed, plain = sub.cells[1], sub.cells[3], sub.cells[4]
    own.outputs = [new_output("stream", name="stdout", text=SUBMITTED_MARK)]
    renamed.id = "another-id"
    renamed.outputs = [new_output("execute_result", data={"text/plain": "'later-output'"},
                                  execution_count=3)]
    renamed.execution_count = 3
    plain.id = "unmatched-id"
    plain.outputs = [new_output("stream", name="stdout", text="never shown")]
    return sub


def _render(nb: nbformat.NotebookNode) -> str:
    from nbconvert import HTMLExporter

    return HTMLExporter().from_notebook_node(nb)[0]


def _run(tmp_path: Path, nb, resources, config: Config | None = None):
    cfg = config or Config()
    cfg.CourseDirectory.root = str(tmp_path)
    return SafeFeedback(config=cfg).preprocess(nb, resources)[0]


def test_hand_made_autograded_notebook_becomes_safe_feedback(tmp_path):
    nb, resources = _hand_made()
    _submit(tmp_path, _submitted_for(nb))
    out = _run(tmp_path, nb, resources)
    raw = nbformat.writes(out)
    assert leaks(_render(out), HIDDEN, whitespace=True) == []
    assert not any(line in raw or line[::-1] in raw for line in HIDDEN)
    assert SECRET not in raw and GRADING_MARK not in raw and "never shown" not in raw

    by_gid = {notebooks.grade_id(c): c for c in out.cells if notebooks.grade_id(c)}
    test = by_gid["test_double"]
    assert test.source == "assert double(1) == 2"
    assert [o.output_type for o in test.outputs] == ["stream", "error"]
    assert test.outputs[0].name == "stdout" and test.outputs[0].text == "checked double(1)\n"
    assert test.outputs[1].traceback == ["AssertionError: double(21) should be 42"]
    assert by_gid["test_passing"].source == "assert double(2) == 4"
    assert by_gid["double"].outputs[0].text == SUBMITTED_MARK  # matched by cell id
    assert by_gid["later"].outputs[0].data["text/plain"] == "'later-output'"  # by grade_id
    assert by_gid["later"].execution_count == 3
    plain = next(c for c in out.cells if c.source == "print('plain')")
    assert plain.outputs == []  # no match: no outputs
    assert "widgets" not in out.metadata

    status = out.cells[out.cells.index(test) + 1]
    assert "test_double</code> failed: 0 / 2 points" in status.source
    assert "AssertionError: double(21) should be 42 (failed in a hidden check of this test)" \
        in status.source
    summary = out.cells[0].source
    assert "**Score: 1 / 3**" in summary and "test_passing" in summary
    assert "AssertionError: double(21) should be 42" in summary


def test_unreadable_submission_shows_no_student_outputs(tmp_path):
    nb, resources = _hand_made()
    _submit(tmp_path, b"{ not json")
    out = _run(tmp_path, nb, resources)
    assert NO_SUBMISSION_NOTE in out.cells[0].source
    codes = [c for c in out.cells if c.cell_type == "code" and not c.metadata.get(
        "nbgrader", {}).get("grade")]
    assert codes and all(c.outputs == [] for c in codes)
    assert GRADING_MARK not in nbformat.writes(out)


def test_configured_delimiters_and_broken_blocks(tmp_path):
    nb, resources = _hand_made()  # no submitted notebook at all
    nb.cells[2].source = "visible()\n# >>> PRIVATE\nprivate_check()\n# <<< PRIVATE\nafter()"
    nb.cells[5].source = "visible()\n# >>> PRIVATE\nnever_closed()"
    config = Config()
    config.ClearHiddenTests.begin_test_delimeter = ">>> PRIVATE"
    config.ClearHiddenTests.end_test_delimeter = "<<< PRIVATE"
    out = _run(tmp_path, nb, resources, config)
    sources = [c.source for c in out.cells if c.cell_type == "code"]
    assert "visible()\nafter()" in sources
    assert NO_TEST_CODE in sources  # an unterminated block: no code at all
    assert NO_SUBMISSION_NOTE in out.cells[0].source
    assert not any("private_check" in s or "never_closed" in s for s in sources)


# ------------------------------------------------------------------------ end to end
def _cell(gid: str, points: float | None, source: str) -> nbformat.NotebookNode:
    meta = {"grade_id": gid, "solution": points is None, "grade": points is not None,
            "locked": points is not None, "schema_version": 3}
    if points is not None:
        meta["points"] = points
    return new_code_cell(source, metadata={"nbgrader": meta})


def _submission(course: Course, answers: dict[str, str], output: str | None = None):
    nb = notebooks.read(course.release_path(A))
    for cell in nb.cells:
        if notebooks.grade_id(cell) in answers:
            cell.source = answers[notebooks.grade_id(cell)]
        if output and notebooks.grade_id(cell) == "double":
            cell.outputs = [new_output("stream", name="stdout", text=output + "\n")]
    return nb


@pytest.fixture(scope="module")
def fb_course(tmp_path_factory) -> Course:
    """A toy course (graders/ beside its config, as in the real one) graded for an honest
    student (one hidden failure) and a leaky one."""
    root = tmp_path_factory.mktemp("fbcourse")
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    (root / "graders").symlink_to(REPO_ROOT / "graders")
    nb = new_notebook(cells=[_cell(*c) for c in SOURCE_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    (root / "source" / A).mkdir(parents=True)
    nbformat.write(nb, str(root / "source" / A / f"{A}.ipynb"))
    course = Course(root)
    course.generate_release(A)
    course.submit("honest", A, _submission(course, HONEST))
    leaky = _submission(course, LEAKY, output=SUBMITTED_MARK)
    leaky.cells.append(new_markdown_cell(MARKUP))
    course.submit("leaky", A, leaky)
    course.autograde(A)
    _plant_grading_leaks(course, "leaky")
    return course


MARKUP = ('<script>document.title="pwned"</script>\n\n<img src=x onerror="document.title=1">'
          '\n\n[click me](javascript:document.title=2)\n\n<form action="https://e.example">'
          '<input name="q"></form>\n\n<iframe src="https://e.example"></iframe>\n\n'
          'A *real* answer with `code` and a [good link](https://pytorch.org).')


class _Active(HTMLParser):
    """What of MARKUP would act in a browser: its script, or an element carrying one of its
    attribute values (an ``onerror``, a ``javascript:`` link, a form or frame to e.example)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._script = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._script = tag == "script"
        for name, value in attrs:
            if any(mark in (value or "") for mark in ("document.title", "e.example")) or (
                tag == "input" and (name, value) == ("name", "q")
            ):
                self.found.append(f"<{tag} {name}={value}>")

    def handle_data(self, data: str) -> None:
        if self._script and "pwned" in data:
            self.found.append(f"<script>{data}")

    def handle_endtag(self, tag: str) -> None:
        self._script = False


def active_markup(page: str) -> list[str]:
    parser = _Active()
    parser.feed(page)
    return parser.found


def test_a_students_markup_never_acts_in_feedback_or_the_formgrader(fb_course):
    """nbgrader's feedback and formgrade templates render markdown cells unsanitized: a
    student's script ran in the feedback page and in the formgrader (the instructor's Jupyter
    server). The course's SafeMarkdown cleans them for every page nbgrader renders."""
    from nbconvert import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers

    course = fb_course
    proc = _plain_nbgrader_feedback(course)
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = course.feedback_path("leaky", A).read_text()
    assert active_markup(page) == []
    assert "&lt;script&gt;document.title" in page  # shown as text: the instructor sees it
    assert '<a href="https://pytorch.org">good link</a>' in page and "<em>real</em>" in page
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course.root)).load_config()
    config.HTMLExporter.template_name = "formgrade"  # as the formgrader's view renders it
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    view = {"assignment_id": A, "notebook_id": A, "submission_id": "s", "index": 0, "total": 1,
            "base_url": "/", "student": "leaky", "last_name": "", "first_name": "",
            "notebook_path": "/x", "mathjax_url": ""}  # what nbgrader's handler passes
    formgrade, _ = HTMLExporter(config=config).from_filename(
        str(course.autograded_path("leaky", A)), resources=dict(view))
    assert active_markup(formgrade) == [] and "good link" in formgrade
    bare = HTMLExporter(config=Config(HTMLExporter={"template_name": "formgrade",
                                                    "extra_template_basedirs": [
                                                        handlers.template_path]}))
    unsafe, _ = bare.from_filename(str(course.autograded_path("leaky", A)), resources=dict(view))
    assert active_markup(unsafe)  # the check has teeth: nbgrader's own view lets it act


def test_safe_markdown_cleans_grading_comments_too():
    """A scan flag quotes the student's line in the cell's comment, which the feedback page
    renders as markdown: ``!<img src=x onerror=...>`` became a live element."""
    from graders.safe_markdown import SafeMarkdown

    cell = new_markdown_cell("**bold** and $x^2$", metadata={"nbgrader": {
        "comment": 'shell escape: `!ls` <img src=x onerror="document.title=1">'}})
    cell, _ = SafeMarkdown().preprocess_cell(cell, {}, 0)
    assert active_markup(cell.metadata.nbgrader.comment) == []
    assert "<code>!ls</code>" in cell.metadata.nbgrader.comment
    assert "<strong>bold</strong> and $x^2$" in cell.source


def test_markdown_with_too_much_markup_is_shown_as_text_not_cleaned():
    """Cleaning takes time quadratic in nested elements: 156 KiB of ``<div>`` in one markdown
    cell held the feedback (and a formgrader view) for 113 s. Beyond MAX_TAGS tags the cell
    is shown as escaped text, which takes linear time and lets nothing act."""
    from graders.safe_markdown import MAX_CHARS, MAX_TAGS, safe_html

    nested = "<div>" * 30_000 + '<img src=x onerror="document.title=1">'
    html = safe_html(nested)
    assert active_markup(html) == [] and "<div><div>" not in html
    assert "&lt;div&gt;&lt;div&gt;" in html and "too much markup" in html
    assert "<strong>" in safe_html("**bold** " + "a &lt; b " * (MAX_TAGS // 2))
    assert len(safe_html("x" * (3 * MAX_CHARS))) < 2 * MAX_CHARS


def _plant_grading_leaks(course: Course, student: str) -> None:
    """Put into a student's autograded notebook and folder what a kernel that saw the hidden
    tests while graded would have left there (LEAKY does it for real when test cells run in
    the student's kernel; the trusted verdict never lets them in, so it is planted too)."""
    text = "\n".join(HIDDEN)
    path = course.autograded_path(student, A)
    nb = notebooks.read(path)
    cell = nb.cells[notebooks.cell_index(nb, "later")]
    cell.outputs += [
        new_output("stream", name="stdout", text=f"{text}\n{text[::-1]}\n"
                   f"{base64.b64encode(text.encode()).decode()}\n"
                   + "\n".join(text[i:i + 5] for i in range(0, len(text), 5))),
        new_output("display_data", data={"text/html": f"<pre>{text}</pre>"}),
        new_output("error", ename="ValueError", evalue=HIDDEN[1], traceback=[text]),
    ]
    nbformat.write(nb, str(path))
    for name in ("leak.html", "leak.txt", "leakdir/x.txt"):
        (path.parent / name).parent.mkdir(exist_ok=True)
        (path.parent / name).write_text(text)


def _plain_nbgrader_feedback(course: Course) -> subprocess.CompletedProcess:
    """``nbgrader generate_feedback`` as the formgrader runs it: the console script (the course
    folder not on ``sys.path``), no options beyond the config, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    script = Path(sys.executable).parent / "nbgrader"
    return subprocess.run([str(script), "generate_feedback", A, "--force"], cwd=course.root,
                          env=env, capture_output=True, text=True, timeout=300)


def test_nbgrader_generate_feedback_with_course_config_is_safe(fb_course):
    course = fb_course
    grades = course.grades(A)
    assert grades["honest"].cells["test_double"].score == 0  # failed in the hidden part
    assert grades["leaky"].score == 3
    # the checks have teeth: the grading run's outputs and folder hold the hidden tests
    graded = nbformat.writes(notebooks.read(course.autograded_path("leaky", A)))
    assert GRADING_MARK in graded and HIDDEN[1][::-1].replace('"', '\\"') in graded
    assert SECRET in (course.autograded_path("leaky", A).parent / "leak.html").read_text()

    proc = _plain_nbgrader_feedback(course)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pages = {s: course.feedback_path(s, A).read_text() for s in ("honest", "leaky")}
    for student, page in pages.items():
        assert leaks(page, HIDDEN, whitespace=True) == [], student
        assert SECRET not in page
        assert GRADING_MARK not in page
        folder = course.feedback_path(student, A).parent
        assert sorted(p.name for p in folder.iterdir()) == [f"{A}.html"]  # no kernel files
    honest, leaky = page_text(pages["honest"]), page_text(pages["leaky"])
    assert "AssertionError: double(21) should be 42" in honest  # the message stays
    assert "Score: 1 / 3" in honest and "Score: 3 / 3" in leaky
    assert re.search(r"test_double\s*failed: 0 / 2 points", honest)
    assert re.search(r"test_passing\s*passed: 1 / 1 points", honest)
    assert "Traceback" not in honest
    assert "assert double(1) == 2" in honest  # the visible test is shown
    assert SUBMITTED_MARK in leaky  # the submitted notebook's own output
    assert "_src[::-1]" in leaky  # the student's own code is shown


def test_graders_feedback_writes_the_same_pages(fb_course, capsys):
    from graders import cli

    course = fb_course
    assert _plain_nbgrader_feedback(course).returncode == 0
    plain = {s: course.feedback_path(s, A).read_text() for s in ("honest", "leaky")}
    shutil.rmtree(course.root / "feedback")
    assert cli.main(["--root", str(course.root), "feedback", A]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"{A}\s+honest\s+1\.0 / 3\.0\s+feedback/honest/{A}/{A}\.html", out)
    assert re.search(rf"{A}\s+leaky\s+3\.0 / 3\.0\s+feedback/leaky/{A}/{A}\.html", out)
    for student, page in plain.items():
        ours = course.feedback_path(student, A).read_text()
        assert page_text(ours) == page_text(page), student


def test_feedback_for_one_student_only(fb_course, capsys):
    from graders import cli

    out = fb_course.root / "feedback"
    shutil.rmtree(out, ignore_errors=True)
    assert cli.main(["--root", str(fb_course.root), "feedback", A, "--student", "honest"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html")) == [
        f"honest/{A}/{A}.html"]
    assert cli.main(["--root", str(fb_course.root), "feedback", A, "--student", "nobody"]) == 1


def test_student_missing_from_gradebook_gets_no_page(fb_course, tmp_path):
    course = fb_course
    folder = course.autograded_path("ghost", A).parent
    shutil.copytree(course.autograded_path("honest", A).parent, folder)
    try:
        written, failed = write_feedback(course, A)
        assert set(written) == {"honest", "leaky"}
        assert failed == {"ghost": "not in the gradebook, no feedback"}
        assert not course.feedback_path("ghost", A).exists()
    finally:
        shutil.rmtree(folder)


# ------------------------------------------------------------------------ real samples
def _hidden_lines(source: nbformat.NotebookNode, release: nbformat.NotebookNode) -> list[str]:
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
        secrets = _hidden_lines(source, release)
        raw = notebooks.read(course.autograded_path("ref", assignment))
        raw_lines = {ln.strip() for ln in page_text(_render(raw)).splitlines()}
        assert set(secrets) <= raw_lines, "the check must see hidden lines in the raw notebook"
        written, failed = write_feedback(course, assignment)
        assert not failed, failed
        for student, grade in g.grades.items():
            if not course.autograded_path(student, assignment).is_file():
                continue  # refused by nbgrader (the corrupt sample): nothing to give feedback on
            page = written[student].path.read_text()
            # whole lines: a hidden line may be a prefix of a visible one ("f(a," / "f(a, b)")
            own = {ln.strip() for c in notebooks.read(course.autograded_path(student, assignment))
                   .cells if not notebooks.is_test(c) for ln in c.source.splitlines()}
            found = [ln for ln in leaks(page, secrets) if ln not in own]
            assert found == [], (assignment, student, found)
            text = page_text(page)
            assert f"Score: {grade.score:g} / {grade.max_score:g}" in text
            for gid, cell in grade.cells.items():
                verdict = "passed" if cell.score >= cell.max_score else "failed"
                assert re.search(rf"Test {re.escape(gid)}\s*{verdict}: {cell.score:g} / "
                                 rf"{cell.max_score:g} points", text), (student, gid)
            if student == "stub":
                assert "NotImplementedError" in text  # failed cells say why
        assert {"ref", "stub", "partial"} <= set(written)
