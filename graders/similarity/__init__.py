"""``python -m graders similarity <a>``: how alike the students' solutions of an assignment are.

Modules, one job each: :mod:`~graders.similarity.extract` (what a student wrote in a notebook,
per task), :mod:`~graders.similarity.fingerprint` (normalised tokens, k-grams, winnowing),
:mod:`~graders.similarity.compare` (exclusions, pair scores, clusters),
:mod:`~graders.similarity.report` (terminal table, CSV, HTML), and
:mod:`~graders.similarity.synthetic` (disguised copies and generated classes, for the tests,
the benchmark and the demo). :func:`run` ties them together for a course.

**Why our own implementation.** The two maintained Python tools were checked. ``copydetect``
(winnowing over Pygments tokens, MOSS's method) compares whole files from directories: it
would need every notebook written out as files, it cannot tell the student's lines of a
solution cell from the release's starter code inside the same cell (only whole boilerplate
files), it renames identifiers but keeps nothing that tells independent solutions apart
(library calls), and its HTML report is built for its own layout. ``pycode_similar`` compares
ASTs of functions pairwise; it needs code that parses (a half-finished notebook cell often
does not) and it scales with the square of the class times the functions. What a notebook
class needs is small: per solution cell the lines the student wrote, tokens that survive
renaming and reformatting, k-grams, winnowing, an inverted index over the class, and a page
that shows the matches. That is a few hundred lines here, with no dependency, and it never
parses or runs student code (a regular-expression tokenizer, see
:mod:`~graders.similarity.fingerprint`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from graders.similarity.compare import Comparison, Settings, compare
from graders.similarity.extract import (
    ADDED,
    NotNotebook,
    TaskText,
    read_cells,
    release_of,
    student_parts,
    student_runs,
)
from graders.similarity.fingerprint import Vocabulary, all_hashes
from graders.similarity.report import table, write_csv, write_html

if TYPE_CHECKING:
    from graders.course import Course

__all__ = ["Comparison", "Report", "Settings", "compare_class", "compare_course", "run"]


@dataclass
class Report:
    """A comparison and the files written for it."""

    comparison: Comparison
    csv: Path
    html: Path

    def summary(self) -> str:
        """The terminal table, then where the files went."""
        return f"{table(self.comparison)}\nCSV: {self.csv}\nHTML report: {self.html}"


def compare_class(
    assignment: str,
    release_cells: list,
    notebooks: dict[str, list],
    reference_cells: list | None = None,
    settings: Settings | None = None,
    skipped: dict[str, str] | None = None,
) -> Comparison:
    """Compare the notebooks (student -> cells as JSON values) of one assignment, given the
    cells of its release notebook and of the reference solution (``None``: no reference)."""
    settings = settings or Settings()
    release = release_of(release_cells)
    vocabulary = Vocabulary()
    base: set[int] = set()
    for cell in release_cells:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            part = TaskText(cell_text(cell), [])
            part.runs = student_runs("", part.text)
            base |= all_hashes(part.text, part.runs, vocabulary, settings.k)
    reference = student_parts(reference_cells, release) if reference_cells else None
    parts = {name: student_parts(cells, release) for name, cells in notebooks.items()}
    tasks = [*release.solutions, ADDED]
    return compare(assignment, parts, tasks, base, reference, vocabulary, settings, skipped)


def cell_text(cell: dict) -> str:
    """A cell's source as one string (nbformat keeps it as a string or a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def compare_course(
    course: Course,
    assignment: str,
    settings: Settings | None = None,
    students: list[str] | None = None,
) -> Comparison:
    """Compare every submission of ``assignment`` in the course's ``submitted/`` (or only
    ``students``) against each other. Students without the notebook are left out; a file that
    is no notebook is listed as skipped. FileNotFoundError when the assignment has no release."""
    settings = settings or Settings()
    release_path = course.release_path(assignment)
    if not release_path.is_file():
        raise FileNotFoundError(f"{release_path} does not exist: run `python -m graders release`")
    release_cells = read_cells(release_path)
    reference = course.reference_submission(assignment).cells
    found: dict[str, list] = {}
    skipped: dict[str, str] = {}
    for student in students if students is not None else course.submitted_students():
        path = course.submission_path(student, assignment)
        if not path.is_file():
            continue
        try:
            found[student] = read_cells(path)
        except NotNotebook as err:
            skipped[student] = str(err)
    return compare_class(assignment, release_cells, found, reference, settings, skipped)


def run(
    course: Course, assignment: str, settings: Settings | None = None, out: Path | None = None
) -> Report:
    """Compare the class and write ``pairs.csv`` and ``report.html`` into ``out`` (default
    ``reports/similarity/<a>/``)."""
    comparison = compare_course(course, assignment, settings)
    out = out or course.reports / "similarity" / assignment
    return Report(comparison, write_csv(comparison, out / "pairs.csv"),
                  write_html(comparison, out / "report.html"))
