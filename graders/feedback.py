"""Per-student feedback HTML that never shows the hidden tests.

nbgrader's ``generate_feedback`` renders the autograded notebook, whose test cells hold the full
source restored from the gradebook, hidden tests included, and whose tracebacks quote hidden
lines. Here the feedback notebook is built from the autograded notebook with:

- every test cell's source replaced by the *release* version of that cell (hidden block already
  removed; the block is stripped from the autograded source if the release lacks the cell);
- every error output of a test cell reduced to one line ``ExceptionType: message`` (no
  traceback), and only text outputs kept in test cells (no HTML, images or widgets);
- in every cell's text outputs, each line of a hidden test block (that students cannot see in
  the release anyway) replaced by ``[hidden test code removed]``: a submission's own code runs
  inside the test cells and could print or raise with the calling source;
- a line under each test cell saying passed/failed and the points, and a score summary with
  each test cell's message at the top of the page.

It is rendered with nbconvert's HTML exporter to ``feedback/<student>/<a>/<a>.html``.
Residual risk: a submission that deliberately re-encodes the hidden source (for example
reversed) before printing it is not caught by line matching.
"""

from __future__ import annotations

import copy
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from nbformat import NotebookNode
from nbformat.v4 import new_markdown_cell

from graders import notebooks
from graders.course import Course, SubmissionGrade

HIDDEN_BEGIN = re.compile(r"^\s*### BEGIN HIDDEN TESTS")
HIDDEN_END = re.compile(r"^\s*### END HIDDEN TESTS")
REDACTED = "[hidden test code removed]"
MIN_LINE = 6  # shorter hidden lines (")", "else:") say nothing and would blot out normal text
TEXT_MIMES = ("text/plain",)


@dataclass
class CellResult:
    """One test cell of one student's feedback."""

    grade_id: str
    score: float
    max_score: float
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.score >= self.max_score


@dataclass
class Feedback:
    """The feedback written for one student and assignment."""

    student: str
    assignment: str
    path: Path
    cells: list[CellResult] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(c.score for c in self.cells)

    @property
    def max_score(self) -> float:
        return sum(c.max_score for c in self.cells)


# ------------------------------------------------------------------------- hidden lines
def hidden_block_lines(source: str) -> list[str]:
    """The lines strictly between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``."""
    lines, inside = [], False
    for line in source.splitlines():
        if HIDDEN_BEGIN.match(line):
            inside = True
        elif HIDDEN_END.match(line):
            inside = False
        elif inside:
            lines.append(line)
    return lines


def secret_lines(full: NotebookNode, release: NotebookNode | None) -> list[str]:
    """Stripped hidden-test lines worth hiding: long enough and not shown in the release.

    Longest first, so that a line containing another is replaced whole.
    """
    visible = set()
    if release is not None:
        visible = {line.strip() for c in release.cells for line in c.source.splitlines()}
    found = {
        line.strip()
        for cell in full.cells
        if cell.cell_type == "code"
        for line in hidden_block_lines(cell.source)
    }
    keep = {s for s in found if len(s) >= MIN_LINE and s not in visible}
    return sorted(keep, key=lambda s: (-len(s), s))


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with every occurrence of a secret line replaced by :data:`REDACTED`."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _html_text(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", "", markup))


# ------------------------------------------------------------------------- outputs
def error_line(output: NotebookNode) -> str:
    """``ExceptionType: message`` of an error output (``ExceptionType`` when no message)."""
    ename, evalue = output.get("ename", "Error"), str(output.get("evalue", "")).strip()
    return f"{ename}: {evalue}" if evalue else ename


def _join(text: str | list[str]) -> str:
    return "".join(text) if isinstance(text, list) else text


def _clean_output(out: NotebookNode, secrets: list[str], test_cell: bool) -> NotebookNode | None:
    """One output made safe (see the module docstring), or None to drop it."""
    out = copy.deepcopy(out)
    kind = out.get("output_type")
    if kind == "error":
        line = redact(error_line(out), secrets)
        out.ename = redact(str(out.get("ename", "Error")), secrets)
        out.evalue = redact(str(out.get("evalue", "")), secrets)
        out.traceback = [line]
        return out
    if kind == "stream":
        out.text = redact(_join(out.text), secrets)
        return out
    if kind in ("display_data", "execute_result"):
        data = {}
        for mime, value in out.get("data", {}).items():
            if test_cell and mime not in TEXT_MIMES:
                continue
            if isinstance(value, (str, list)):
                text = _join(value)
                if mime == "text/html" and any(s in _html_text(text) for s in secrets):
                    continue  # markup can split a line; drop such HTML whole
                value = redact(text, secrets)
            data[mime] = value
        if not data:
            return None
        out.data = data
        out.metadata = {}
        return out
    return None


def _release_sources(release: NotebookNode | None) -> dict[str, str]:
    if release is None:
        return {}
    return {notebooks.grade_id(c): c.source for c in release.cells if notebooks.grade_id(c)}


def _status_cell(result: CellResult) -> NotebookNode:
    verdict = "passed" if result.passed else "failed"
    mark = "&#10004;" if result.passed else "&#10008;"
    text = (
        f"{mark} **Test `{html.escape(result.grade_id)}` {verdict}**: "
        f"{result.score:g} / {result.max_score:g} points"
    )
    return new_markdown_cell(text, metadata={"feedback": True})


def build_feedback_notebook(
    autograded: NotebookNode, release: NotebookNode | None, grade: SubmissionGrade
) -> tuple[NotebookNode, list[CellResult]]:
    """The safe feedback notebook of one autograded notebook, and its per test cell results.

    ``release`` is the release notebook (students' version); ``grade`` the gradebook's scores.
    """
    secrets = secret_lines(autograded, release)
    released = _release_sources(release)
    nb = copy.deepcopy(autograded)
    cells, results = [], []
    for cell in nb.cells:
        gid = notebooks.grade_id(cell)
        test = notebooks.is_test(cell)
        if test:
            source = released.get(gid)
            if source is None:
                source = notebooks.strip_hidden_tests(cell.source)
                if "HIDDEN TESTS" in source:
                    source = "# (test code not shown)"
            cell.source = source
        if cell.cell_type == "code":
            cell.outputs = [o for o in (_clean_output(o, secrets, test) for o in cell.outputs) if o]
        cells.append(cell)
        if test and gid in grade.cells:
            g = grade.cells[gid]
            errors = [o for o in cell.outputs if o.get("output_type") == "error"]
            message = errors[0].traceback[0] if errors else ""
            if not message and g.score < g.max_score:
                message = "no exception, but points lost (output on stderr or a time-out)"
            result = CellResult(gid, g.score, g.max_score, message if g.score < g.max_score else "")
            results.append(result)
            cells.append(_status_cell(result))
    nb.cells = cells
    return nb, results


# ------------------------------------------------------------------------- HTML
def summary_html(student: str, assignment: str, results: list[CellResult]) -> str:
    """The score summary shown at the top of the page (all text escaped)."""
    esc = html.escape
    score = sum(r.score for r in results)
    total = sum(r.max_score for r in results)
    rows = "".join(
        f"<tr><td><code>{esc(r.grade_id)}</code></td>"
        f"<td>{r.score:g} / {r.max_score:g}</td>"
        f"<td>{'passed' if r.passed else 'failed'}</td>"
        f"<td><pre style='margin:0;white-space:pre-wrap'>{esc(r.message)}</pre></td></tr>"
        for r in results
    )
    return (
        "<div id='feedback-summary' style='margin:1em 2em;font-family:sans-serif'>"
        f"<h1>Feedback: {esc(assignment)} ({esc(student)})</h1>"
        f"<p><b>Score: {score:g} / {total:g}</b></p>"
        "<table border='1' cellpadding='4' style='border-collapse:collapse'>"
        "<tr><th>test cell</th><th>points</th><th>result</th><th>message</th></tr>"
        f"{rows}</table>"
        "<p>Hidden tests are not shown; a failed test shows its error message only.</p></div>"
    )


def render_html(nb: NotebookNode, summary: str) -> str:
    """The notebook as a standalone HTML page (nbconvert, lab template) with ``summary`` on
    top."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    match = re.search(r"<body[^>]*>", body)
    if match is None:
        return summary + body
    return body[: match.end()] + summary + body[match.end():]


def write_feedback(
    course: Course, assignment: str, student: str, grade: SubmissionGrade
) -> Feedback:
    """Build and write ``feedback/<student>/<a>/<a>.html`` for one graded student."""
    autograded = notebooks.read(course.autograded_path(student, assignment))
    release_path = course.release_path(assignment)
    release = notebooks.read(release_path) if release_path.is_file() else None
    nb, results = build_feedback_notebook(autograded, release, grade)
    page = render_html(nb, summary_html(student, assignment, results))
    out = course.root / "feedback" / student / assignment / f"{assignment}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return Feedback(student, assignment, out, results)


def graded_students(course: Course, assignment: str) -> list[str]:
    """Students with an autograded notebook of ``assignment``."""
    base = course.root / "autograded"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if course.autograded_path(p.name, assignment)
                  .is_file())
