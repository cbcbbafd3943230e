"""The nbgrader preprocessor that makes feedback safe by construction: :class:`SafeFeedback`.

``nbgrader generate_feedback`` (and the formgrader's "Generate Feedback" buttons, which run it)
renders ``autograded/<student>/<a>/<a>.ipynb``. In that notebook the test cells hold the full
source restored from the gradebook, hidden tests included, and every other cell holds what the
student's code printed *while it was graded*, when it ran next to the hidden tests and could
print anything it learned about them. The course's ``nbgrader_config.py`` therefore sets::

    c.GenerateFeedback.preprocessors = [GetGrades, SafeFeedback, CSSHTMLHeaderPreprocessor]

and :class:`SafeFeedback` throws that notebook away and builds a new one, cell by cell:

* **test cells** (code cells with ``grade: true`` and ``solution: false``): the source with the
  hidden-test block removed by nbgrader's own ``ClearHiddenTests`` (with its configured
  delimiters; a cell it cannot parse shows no code at all); outputs: only ``stdout`` streams and
  errors cut to ``ExceptionType: message`` (no traceback, no HTML, images or stderr). These
  outputs come from the trusted test runner, which never prints test source; the cut stays
  anyway. A markdown status line follows: passed/failed, points, and the message of a failure.
* **every other cell**: its source as in the autograded notebook (the student's own cells and
  the restored read-only ones); a code cell gets the outputs of the matching cell (same cell
  ``id``, else same nbgrader ``grade_id``) of the notebook the student **submitted**
  (``submitted/<student>/<a>/<a>.ipynb``), never those of the grading run; unmatched cells get
  none. If the submitted notebook cannot be read, no such outputs and a note at the top.
* cell metadata: only ``nbgrader`` (the template shows ids and points) and a raw cell's format;
  notebook metadata: the submitted notebook's (the grading run's metadata, e.g. widget state a
  kernel sent, is dropped).
* a summary on top: total score, each test cell's points and result, failure messages.

Nothing here looks for hidden-test text in outputs: what is shown is either the release version
of a test, something the trusted side produced, or something that existed before grading.

nbgrader copies every file of the autograded folder (where the student's kernel ran and could
write) into the feedback folder before converting. When run by ``GenerateFeedback``,
:class:`SafeFeedback` deletes those copies (keeping the pages this run wrote) and puts back
nbgrader's ``timestamp.txt`` and ``submission_secret.txt`` from the *submitted* folder, so
``nbgrader release_feedback`` publishes nothing the kernel wrote.

This module imports only nbgrader, nbformat and the standard library: nbgrader imports it by
name from the course configuration.
"""

from __future__ import annotations

import copy
import html
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor
from traitlets import List
from traitlets.config import Config

from graders import notebooks

#: what ``c.GenerateFeedback.preprocessors`` must be (also passed by ``graders feedback``)
PREPROCESSORS = (
    "nbgrader.preprocessors.GetGrades",
    "graders.feedback_preprocessor.SafeFeedback",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
)
#: shown instead of a test cell's code when nbgrader cannot strip its hidden block
NO_TEST_CODE = "# (the code of this test is not shown)"
#: nbgrader's own files in a feedback folder (``release_feedback`` reads them)
NBGRADER_FILES = ("timestamp.txt", "submission_secret.txt")
#: the marker of cells this preprocessor adds
MARK = "graders_feedback"
NO_SUBMISSION_NOTE = (
    "**Note:** your submitted notebook could not be read, so the outputs of your own cells are "
    "not shown here."
)
# The trusted runner's last traceback line says where a test failed, in fixed words; only an
# exact match is kept (it carries no test source).
_WHERE = re.compile(
    r"\((?:failed|raised by your code, called) "
    r"(?:at line \d{1,5} of the test cell|in a hidden check of this test|by the test)\)"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class CellStatus:
    """One test cell's result as the feedback shows it."""

    grade_id: str
    score: float
    points: float
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.score >= self.points


# ------------------------------------------------------------------------------- cells
def is_test_cell(cell: NotebookNode) -> bool:
    """An auto-graded test cell: a code cell nbgrader grades that is not a student's answer."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def _text(value: object) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def error_line(output: NotebookNode) -> str:
    """``ExceptionType: message`` of an error output (``ExceptionType`` when no message)."""
    ename = _text(output.get("ename", "Error")) or "Error"
    evalue = _text(output.get("evalue", "")).strip()
    return f"{ename}: {evalue}" if evalue else ename


def where_hint(output: NotebookNode) -> str:
    """Where the trusted runner says a test failed (its fixed wording), or ``""``."""
    traceback = output.get("traceback") or []
    if not isinstance(traceback, list) or not traceback:
        return ""
    last = _ANSI.sub("", _text(traceback[-1])).strip()
    return last if _WHERE.fullmatch(last) else ""


def trusted_outputs(outputs: list[NotebookNode]) -> list[NotebookNode]:
    """A test cell's outputs reduced to ``stdout`` text and one-line errors; all else dropped."""
    kept = []
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream" and out.get("name") == "stdout":
            kept.append(new_output("stream", name="stdout", text=_text(out.get("text", ""))))
        elif kind == "error":
            ename = _text(out.get("ename", "Error")) or "Error"
            evalue = _text(out.get("evalue", ""))
            kept.append(new_output("error", ename=ename, evalue=evalue,
                                   traceback=[error_line(out)]))
    return kept


def visible_test_source(cell: NotebookNode, hidden: ClearHiddenTests) -> str:
    """A test cell's source with its hidden block removed by nbgrader's ``ClearHiddenTests``."""
    probe = new_code_cell(_text(cell.get("source", "")),
                          metadata=copy.deepcopy(cell.get("metadata", {})))
    try:
        probe, _ = hidden.preprocess_cell(probe, {}, 0)
    except RuntimeError:  # nested or unterminated hidden block: show no code at all
        return NO_TEST_CODE
    return probe.source


def _kept_metadata(cell: NotebookNode) -> dict:
    meta = cell.get("metadata", {})
    keep = {k: copy.deepcopy(meta[k]) for k in ("nbgrader",) if k in meta}
    if cell.get("cell_type") == "raw":
        keep.update({k: meta[k] for k in ("format", "raw_mimetype")
                     if isinstance(meta.get(k), str)})
    return keep


class SubmittedOutputs:
    """The outputs of the notebook a student submitted, found by cell ``id`` or ``grade_id``."""

    def __init__(self, submitted: NotebookNode | None) -> None:
        self.by_id: dict[str, NotebookNode] = {}
        self.by_grade_id: dict[str, NotebookNode] = {}
        for cell in submitted.cells if submitted is not None else []:
            if cell.get("cell_type") != "code":
                continue
            if isinstance(cell.get("id"), str):
                self.by_id.setdefault(cell.id, cell)
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if isinstance(gid, str):
                self.by_grade_id.setdefault(gid, cell)

    def match(self, cell: NotebookNode) -> NotebookNode | None:
        """The submitted code cell that ``cell`` (of the autograded notebook) came from."""
        found = self.by_id.get(cell.get("id")) if isinstance(cell.get("id"), str) else None
        if found is None:
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            found = self.by_grade_id.get(gid) if isinstance(gid, str) else None
        return found


def read_submitted(path: Path) -> NotebookNode | None:
    """The submitted notebook at ``path``, or None when it is missing or unreadable."""
    try:
        return notebooks.without_lone_surrogates(nbformat.read(str(path), as_version=4))
    except Exception:  # noqa: BLE001  (any failure means: show no student outputs)
        return None


# ------------------------------------------------------------------------------- status
def _score(meta: dict, key: str) -> float:
    try:
        return float(meta.get(key) or 0)
    except (TypeError, ValueError):
        return 0.0


def cell_status(cell: NotebookNode, outputs: list[NotebookNode]) -> CellStatus:
    """A test cell's result: points from the gradebook (``GetGrades`` put them in the cell's
    metadata), message from its first error output (already reduced)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    status = CellStatus(str(meta.get("grade_id", "")), _score(meta, "score"),
                        _score(meta, "points"))
    if not status.passed:
        errors = [o for o in outputs if o.output_type == "error"]
        status.message = (errors[0].traceback[0] if errors else
                          "no exception, but points lost (output on stderr or a time-out)")
    return status


def status_cell(status: CellStatus, where: str = "") -> NotebookNode:
    """The markdown line under a test cell: passed/failed, points, and what failed."""
    esc = html.escape
    verdict, mark = ("passed", "&#10004;") if status.passed else ("failed", "&#10008;")
    text = (f"{mark} **Test <code>{esc(status.grade_id)}</code> {verdict}: "
            f"{status.score:g} / {status.points:g} points**")
    if status.message:
        detail = f"{status.message} {where}".strip()
        text += f"\n\n<pre>{esc(detail)}</pre>"
    return new_markdown_cell(text, metadata={MARK: "status"})


def summary_cell(student: str, assignment: str, score: float, max_score: float,
                 statuses: list[CellStatus], note: str = "") -> NotebookNode:
    """The markdown summary on top of the page (every value HTML-escaped)."""
    esc = html.escape
    rows = "".join(
        f"<tr><td><code>{esc(s.grade_id)}</code></td><td>{s.score:g} / {s.points:g}</td>"
        f"<td>{'passed' if s.passed else 'failed'}</td>"
        f"<td><pre style='margin:0;white-space:pre-wrap'>{esc(s.message)}</pre></td></tr>"
        for s in statuses
    )
    parts = [
        f"# Feedback: {esc(assignment)} ({esc(student)})",
        f"**Score: {score:g} / {max_score:g}**",
        "<table><tr><th>test cell</th><th>points</th><th>result</th><th>message</th></tr>"
        f"{rows}</table>",
        "Hidden tests are not shown; a failed test shows its error message. The outputs of "
        "your own cells are those of the notebook you submitted.",
    ]
    if note:
        parts.insert(1, note)
    return new_markdown_cell("\n\n".join(parts), metadata={MARK: "summary"})


# ------------------------------------------------------------------------------- notebook
def build(autograded: NotebookNode, submitted: NotebookNode | None, hidden: ClearHiddenTests,
          student: str, assignment: str, score: float | None = None,
          max_score: float | None = None) -> tuple[NotebookNode, list[CellStatus]]:
    """The safe feedback notebook (see the module docstring) and each test cell's status.

    ``score``/``max_score``: the notebook's total from the gradebook (default: the test cells'
    sum).
    """
    outputs_of = SubmittedOutputs(submitted)
    cells, statuses = [], []
    for cell in autograded.cells:
        kind = cell.get("cell_type")
        meta = _kept_metadata(cell)
        if is_test_cell(cell):
            outputs = trusted_outputs(cell.get("outputs", []))
            cells.append(new_code_cell(visible_test_source(cell, hidden), metadata=meta,
                                       outputs=outputs))
            status = cell_status(cell, outputs)
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            statuses.append(status)
            cells.append(status_cell(status, where_hint(errors[0]) if errors else ""))
            continue
        source = _text(cell.get("source", ""))
        if kind == "code":
            match = outputs_of.match(cell)
            new = new_code_cell(source, metadata=meta)
            if match is not None:
                new.outputs = copy.deepcopy(match.get("outputs", []))
                count = match.get("execution_count")
                new.execution_count = count if isinstance(count, int) else None
        elif kind == "markdown":
            new = new_markdown_cell(source, metadata=meta)
            if isinstance(cell.get("attachments"), dict):
                new.attachments = copy.deepcopy(cell.attachments)
        else:
            new = new_raw_cell(source, metadata=meta)
        if isinstance(cell.get("id"), str):
            new.id = cell.id
        cells.append(new)
    if score is None or max_score is None:
        score, max_score = sum(s.score for s in statuses), sum(s.points for s in statuses)
    note = NO_SUBMISSION_NOTE if submitted is None else ""
    cells.insert(0, summary_cell(student, assignment, score, max_score, statuses, note))
    if submitted is not None:
        metadata = copy.deepcopy(submitted.metadata)
    else:
        kernelspec = autograded.get("metadata", {}).get("kernelspec", {})
        kernelspec = {k: v for k, v in kernelspec.items() if isinstance(v, str)}
        metadata = {"kernelspec": kernelspec,
                    "language_info": {"name": kernelspec.get("language", "python")}}
    return new_notebook(cells=cells, metadata=metadata), statuses


def prune_feedback_folder(folder: Path, keep: set[str], submitted_folder: Path) -> None:
    """Delete everything in ``folder`` but the files named in ``keep``, then copy nbgrader's
    own files (:data:`NBGRADER_FILES`) from ``submitted_folder`` when present."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for name in NBGRADER_FILES:
        src = submitted_folder / name
        if src.is_file() and not src.is_symlink():
            shutil.copyfile(src, folder / name)


class SafeFeedback(NbGraderPreprocessor):
    """Rebuilds the autograded notebook into feedback that cannot show hidden tests (see the
    module docstring). Runs after ``GetGrades`` in ``GenerateFeedback.preprocessors``."""

    # nbconvert's HTML exporter configures this for every NbConvertBase; declared (unused) so
    # that traitlets does not warn about it on every notebook, as nbgrader's GetGrades does
    display_data_priority = List(["text/html", "application/pdf", "text/latex", "image/svg+xml",
                                  "image/png", "image/jpeg", "text/plain"]).tag(config=True)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._written: dict[tuple[str, str], set[str]] = {}

    def _converter(self) -> object | None:
        """The ``GenerateFeedback`` converter running this preprocessor, if any."""
        from nbgrader.converters import GenerateFeedback

        node = self.parent
        while node is not None:
            if isinstance(node, GenerateFeedback):
                return node
            node = getattr(node, "parent", None)
        return None

    def _coursedir(self, converter: object | None) -> CourseDirectory:
        coursedir = getattr(converter, "coursedir", None)
        if isinstance(coursedir, CourseDirectory):
            return coursedir
        return CourseDirectory(config=self.config)

    def hidden_tests(self) -> ClearHiddenTests:
        """nbgrader's ``ClearHiddenTests`` configured as this preprocessor's configuration says
        (its delimiters), without the HTML exporter's settings it has no trait for."""
        names = {cls.__name__ for cls in ClearHiddenTests.mro()}
        config = Config({
            name: {k: v for k, v in self.config[name].items() if k != "display_data_priority"}
            for name in names if name in self.config
        })
        return ClearHiddenTests(config=config)

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        ids = resources["nbgrader"]
        student, assignment, notebook = ids["student"], ids["assignment"], ids["notebook"]
        converter = self._converter()
        coursedir = self._coursedir(converter)
        submitted_folder = Path(
            coursedir.format_path(coursedir.submitted_directory, student, assignment)
        )
        submitted = read_submitted(submitted_folder / f"{notebook}.ipynb")
        hidden = self.hidden_tests()
        feedback, _ = build(nb, submitted, hidden, student, assignment,
                            ids.get("score"), ids.get("max_score"))
        if converter is not None:  # only nbgrader's feedback folder is cleaned, never others
            written = self._written.setdefault((student, assignment), set())
            folder = Path(coursedir.format_path(coursedir.feedback_directory, student, assignment))
            prune_feedback_folder(folder, {f"{name}.html" for name in written}, submitted_folder)
            written.add(notebook)
        return feedback, resources
