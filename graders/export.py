"""Things that leave the course: release zips for students, the gradebook for instructors.

- :func:`zip_release` packs ``release/<a>/`` (notebook and data files, nothing else) into
  ``reports/release/<a>.zip`` for upload to a learning platform.
- :func:`read_gradebook` reads the gradebook (:func:`graders.gradebook.read_all`) into one
  :class:`~graders.gradebook.SubmissionGrade` per student x assignment; :func:`write_csv`,
  :func:`cell_failures` and :func:`plot_distribution` turn them into the CSV, the per test
  cell failure shares and the score histograms; :func:`write_reports` does all of it for
  ``python -m graders export``.
- :func:`write_lms` writes the grades as Canvas's or Moodle's grade import file, plain or
  filled into a roster the platform exported (:mod:`graders.lms`; ``export --format``).
"""

from __future__ import annotations

import csv
import fnmatch
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from graders import gradebook, lms
from graders.course import Course
from graders.gradebook import SubmissionGrade

# Never shipped to students even if they lie in release/<a>/ (editor and Python droppings).
RELEASE_ZIP_IGNORE = (".ipynb_checkpoints", "__pycache__", "*.pyc", ".DS_Store", "gradebook.db*")
# A fixed timestamp makes the zip depend on the release files only (reproducible uploads).
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


# ------------------------------------------------------------------------------ release zip
def release_files(course: Course, assignment: str) -> list[Path]:
    """The files of ``release/<a>/`` a student gets, relative to ``release/``, sorted."""
    folder = course.folder("release", ".", assignment)
    base = folder.parent
    if not course.release_path(assignment).is_file():
        raise FileNotFoundError(
            f"{course.release_path(assignment)} does not exist: run `python -m graders release`"
        )
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(base)
        if any(fnmatch.fnmatch(part, pat) for part in rel.parts for pat in RELEASE_ZIP_IGNORE):
            continue
        if path.is_file() and not path.is_symlink():
            files.append(rel)
    return files


def zip_release(course: Course, assignment: str, dest_dir: Path | None = None) -> Path:
    """Write ``reports/release/<a>.zip`` holding the student folder ``<a>/`` of the release.

    The archive holds exactly the files of ``release/<a>/`` (see :func:`release_files`), under
    the folder name ``<a>/``, with fixed timestamps. Returns the zip's path.
    """
    dest_dir = dest_dir or course.reports / "release"
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / f"{assignment}.zip"
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel in release_files(course, assignment):
            info = zipfile.ZipInfo(rel.as_posix(), date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, (course.folder("release") / rel).read_bytes())
    tmp.replace(out)
    return out


# -------------------------------------------------------------------------------- gradebook
def read_gradebook(
    db_url: str, assignments: Sequence[str] | None = None, course: Course | None = None
) -> list[SubmissionGrade]:
    """One grade per student x assignment of the gradebook at ``db_url`` (see
    :func:`graders.gradebook.read_all`): scores are nbgrader's (manual over automatic), status
    ``missing`` for a student without a submission, ``flagged`` with the stored flags.
    ``course`` only orders the cells as in its source notebooks."""
    return gradebook.read_all(db_url, assignments, course.cell_order if course else None)


def write_csv(rows: Sequence[SubmissionGrade], path: Path) -> Path:
    """The rows as CSV: assignment, student, submitted, status, reason, score, max_score, then
    one column per grade cell (``<grade_id>``, empty where the cell is not part of the row's
    assignment or the student did not submit)."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row.cells if c not in columns]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["assignment", "student", "submitted", "status", "reason", "score",
                         "max_score", *columns])
        for row in rows:
            scores = [
                _num(row.cells[c].score) if c in row.cells and row.in_gradebook else ""
                for c in columns
            ]
            writer.writerow([row.assignment, row.student, int(row.in_gradebook), row.status,
                             row.reason, _num(row.score), _num(row.max_score), *scores])
    return path


def _num(x: float) -> str:
    return f"{x:g}"


@dataclass
class CellFailure:
    """How many of the students who submitted an assignment lost points in one test cell."""

    assignment: str
    cell: str
    max_score: float
    submitted: int
    failed: int

    @property
    def share(self) -> float:
        return self.failed / self.submitted if self.submitted else 0.0


def cell_failures(rows: Sequence[SubmissionGrade]) -> list[CellFailure]:
    """Per auto-graded test cell, the share of submitting students below full marks.

    Sorted by failure share (highest first), then assignment and notebook order.
    """
    result = []
    for assignment in dict.fromkeys(r.assignment for r in rows):
        subs = [r for r in rows if r.assignment == assignment and r.in_gradebook]
        first = next(r for r in rows if r.assignment == assignment)
        failed = [set(r.failed()) for r in subs]
        for name, cell in first.cells.items():
            if cell.test:
                lost = sum(name in f for f in failed)
                result.append(CellFailure(assignment, name, cell.max_score, len(subs), lost))
    order = {id(f): i for i, f in enumerate(result)}
    return sorted(result, key=lambda f: (-f.share, order[id(f)]))


def write_failures_csv(failures: Sequence[CellFailure], path: Path) -> Path:
    """The failure shares as CSV (columns: assignment, cell, max_score, submitted, failed,
    failed_share)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["assignment", "cell", "max_score", "submitted", "failed", "failed_share"])
        for f in failures:
            writer.writerow([f.assignment, f.cell, _num(f.max_score), f.submitted, f.failed,
                             f"{f.share:.3f}"])
    return path


def format_failures(failures: Sequence[CellFailure]) -> str:
    """The failure shares as a text table for the terminal."""
    if not failures:
        return "(no test cells)"
    wa = max(len("assignment"), *(len(f.assignment) for f in failures))
    wc = max(len("test cell"), *(len(f.cell) for f in failures))
    lines = [f"{'assignment':<{wa}}  {'test cell':<{wc}}  points  failed"]
    for f in failures:
        lines.append(
            f"{f.assignment:<{wa}}  {f.cell:<{wc}}  {_num(f.max_score):>6}  "
            f"{f.failed:>3} / {f.submitted:<3} ({f.share:4.0%})"
        )
    return "\n".join(lines)


def score_histogram(
    rows: Sequence[SubmissionGrade], assignment: str
) -> tuple[list[int], list[float]]:
    """Counts and bin edges of the submitted total scores of ``assignment``: one bin per whole
    point (centred on it) up to 20 points, else 20 equal bins from 0 to the maximum."""
    import numpy as np

    rows = [r for r in rows if r.assignment == assignment]
    top = max((r.max_score for r in rows), default=0.0)
    if top <= 20:
        edges = np.arange(-0.5, math.floor(top) + 1.0, 1.0)
    else:
        edges = np.linspace(0.0, top, 21)
    counts, edges = np.histogram([r.score for r in rows if r.in_gradebook], bins=edges)
    return [int(c) for c in counts], [float(e) for e in edges]


def plot_distribution(rows: Sequence[SubmissionGrade], path: Path) -> Path:
    """A PNG with one histogram of total scores per assignment (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assignments = list(dict.fromkeys(r.assignment for r in rows))
    fig, axes = plt.subplots(1, max(1, len(assignments)), squeeze=False,
                             figsize=(4.5 * max(1, len(assignments)), 3.5))
    for ax, assignment in zip(axes[0], assignments, strict=False):
        counts, edges = score_histogram(rows, assignment)
        ax.stairs(counts, edges, fill=True)
        n = sum(counts)
        scores = [r.score for r in rows if r.assignment == assignment and r.in_gradebook]
        mean = sum(scores) / n if n else 0.0
        ax.set_title(f"{assignment} (n={n}, mean {mean:.1f})")
        ax.set_xlabel("total score")
        ax.set_ylabel("students")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------- reports
@dataclass
class Reports:
    """What :func:`write_reports` wrote, and the failure shares it found."""

    gradebook_csv: Path
    failures_csv: Path
    plot: Path
    failures: list[CellFailure]

    def summary(self) -> str:
        """The failure shares as a table, then where each file went."""
        lines = [format_failures(self.failures)]
        for what, path in (("gradebook", self.gradebook_csv), ("failure shares", self.failures_csv),
                           ("plot", self.plot)):
            lines.append(f"{what}: {path}")
        return "\n".join(lines)


def write_reports(
    course: Course, assignments: Sequence[str] | None = None, csv_path: Path | None = None
) -> Reports:
    """``reports/gradebook.csv`` (or ``csv_path``), ``reports/cell_failures.csv`` and
    ``reports/score_distribution.png`` from the course's gradebook. Raises
    :class:`~graders.gradebook.NoGradebook` for a missing SQLite file, SystemExit naming an
    assignment the gradebook does not know."""
    rows = read_gradebook(course.db_url, assignments, course=course)
    missing = sorted(set(assignments or ()) - {r.assignment for r in rows})
    if missing:
        raise SystemExit(f"error: assignment {missing[0]!r} is not in the gradebook")
    csv_path = csv_path or course.reports / "gradebook.csv"
    write_csv(rows, csv_path)
    failures = cell_failures(rows)
    fail_path = write_failures_csv(failures, course.reports / "cell_failures.csv")
    png = plot_distribution(rows, course.reports / "score_distribution.png")
    return Reports(csv_path, fail_path, png, failures)


# ------------------------------------------------------------------------ learning platforms
def write_lms(
    course: Course,
    platform: str,
    assignments: Sequence[str] | None = None,
    template: Path | None = None,
    missing: str = "empty",
    out: Path | None = None,
) -> lms.LmsFile:
    """``reports/<platform>-grades.csv`` (or ``out``): the gradebook's grades of
    ``assignments`` (default all) as the platform's grade import file, or ``template`` (the
    platform's own gradebook export) with the assignments' columns filled in; see
    :mod:`graders.lms`. Raises :class:`~graders.lms.LmsError` for a roster that does not fit,
    SystemExit for an assignment the gradebook does not know."""
    rows = read_gradebook(course.db_url, assignments, course=course)
    unknown = sorted(set(assignments or ()) - {r.assignment for r in rows})
    if unknown:
        raise SystemExit(f"error: assignment {unknown[0]!r} is not in the gradebook")
    out = out or course.reports / f"{platform}-grades.csv"
    return lms.write(course.db_url, platform, rows, out, template, missing)
