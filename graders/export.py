"""Things that leave the course: release zips for students, the gradebook for instructors.

- :func:`zip_release` packs ``release/<a>/`` (notebook and data files, nothing else) into
  ``reports/release/<a>.zip`` for upload to a learning platform.
- :func:`read_gradebook` reads nbgrader's gradebook (SQLite or PostgreSQL URL) through its own
  API into one :class:`GradeRow` per student x assignment; :func:`write_csv`,
  :func:`cell_failures` and :func:`plot_distribution` turn the rows into the CSV, the per test
  cell failure shares and the score histograms of ``python -m graders export``.
"""

from __future__ import annotations

import csv
import fnmatch
import math
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from graders import notebooks
from graders.course import Course

# Never shipped to students even if they lie in release/<a>/ (editor and Python droppings).
RELEASE_ZIP_IGNORE = (".ipynb_checkpoints", "__pycache__", "*.pyc", ".DS_Store", "gradebook.db*")
# A fixed timestamp makes the zip depend on the release files only (reproducible uploads).
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


# ------------------------------------------------------------------------------ release zip
def release_files(course: Course, assignment: str) -> list[Path]:
    """The files of ``release/<a>/`` a student gets, relative to ``release/``, sorted."""
    base = course.root / "release"
    folder = base / assignment
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
    dest_dir = dest_dir or course.root / "reports" / "release"
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / f"{assignment}.zip"
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel in release_files(course, assignment):
            info = zipfile.ZipInfo(rel.as_posix(), date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, (course.root / "release" / rel).read_bytes())
    tmp.replace(out)
    return out


# -------------------------------------------------------------------------------- gradebook
@dataclass
class GradeRow:
    """One student's grade for one assignment (zero and no cells when not submitted)."""

    assignment: str
    student: str
    submitted: bool
    score: float
    max_score: float
    cells: dict[str, float] = field(default_factory=dict)  # grade_id -> score (submitted only)
    cell_max: dict[str, float] = field(default_factory=dict)  # grade_id -> max score
    test_cells: list[str] = field(default_factory=list)  # auto-graded code cells, in order


def _cell_order(course: Course | None, assignment: str, names: Iterable[str]) -> list[str]:
    """Grade cells in notebook order when the source notebook is at hand, else by name."""
    names = list(names)
    if course is not None and course.source_path(assignment).is_file():
        source = notebooks.read(course.source_path(assignment))
        order = [notebooks.grade_id(c) for c in source.cells]
        pos = {gid: i for i, gid in enumerate(order) if gid}
        return sorted(names, key=lambda n: (pos.get(n, len(pos)), n))
    return sorted(names)


def read_gradebook(
    db_url: str, assignments: Sequence[str] | None = None, course: Course | None = None
) -> list[GradeRow]:
    """One row per student x assignment of the gradebook at ``db_url`` (nbgrader's API).

    ``assignments`` limits the rows (default: all in the gradebook); ``course`` only orders the
    cells as in the source notebook. Scores are nbgrader's (manual score over auto score).
    """
    from nbgrader.api import Gradebook, MissingEntry

    sqlite_file = db_url.removeprefix("sqlite:///")
    if sqlite_file != db_url and not Path(sqlite_file).is_file():
        raise FileNotFoundError(f"no gradebook at {sqlite_file}")  # nbgrader would create one
    rows = []
    with Gradebook(db_url) as gb:
        known = [a.name for a in gb.assignments]
        chosen = known if assignments is None else [a for a in assignments if a in known]
        students = sorted(s.id for s in gb.students)
        for assignment in chosen:
            definition = gb.find_assignment(assignment)
            cell_max, code_cells = {}, set()
            for nb in definition.notebooks:
                for cell in nb.grade_cells:
                    cell_max[cell.name] = float(cell.max_score)
                    if cell.cell_type == "code":
                        code_cells.add(cell.name)
            order = _cell_order(course, assignment, cell_max)
            cell_max = {name: cell_max[name] for name in order}
            tests = [name for name in order if name in code_cells]
            total_max = sum(cell_max.values())
            for student in students:
                try:
                    sub = gb.find_submission(assignment, student)
                except MissingEntry:
                    rows.append(GradeRow(assignment, student, False, 0.0, total_max,
                                         {}, cell_max, tests))
                    continue
                cells = {g.name: float(g.score or 0) for nb in sub.notebooks for g in nb.grades}
                cells = {name: cells.get(name, 0.0) for name in order}
                rows.append(GradeRow(assignment, student, True, sum(cells.values()), total_max,
                                     cells, cell_max, tests))
    return rows


def write_csv(rows: Sequence[GradeRow], path: Path) -> Path:
    """The rows as CSV: assignment, student, submitted, score, max_score, then one column per
    grade cell (``<grade_id>``, empty where the cell is not part of the row's assignment or the
    student did not submit)."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row.cell_max if c not in columns]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["assignment", "student", "submitted", "score", "max_score", *columns])
        for row in rows:
            scores = [_num(row.cells[c]) if c in row.cells else "" for c in columns]
            writer.writerow([row.assignment, row.student, int(row.submitted), _num(row.score),
                             _num(row.max_score), *scores])
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


def cell_failures(rows: Sequence[GradeRow]) -> list[CellFailure]:
    """Per auto-graded test cell, the share of submitting students below full marks.

    Sorted by failure share (highest first), then assignment and notebook order.
    """
    result = []
    for assignment in dict.fromkeys(r.assignment for r in rows):
        subs = [r for r in rows if r.assignment == assignment and r.submitted]
        first = next(r for r in rows if r.assignment == assignment)
        for cell in first.test_cells:
            failed = sum(1 for r in subs if r.cells.get(cell, 0.0) < first.cell_max[cell])
            result.append(CellFailure(assignment, cell, first.cell_max[cell], len(subs), failed))
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


def score_histogram(rows: Sequence[GradeRow], assignment: str) -> tuple[list[int], list[float]]:
    """Counts and bin edges of the submitted total scores of ``assignment``: one bin per whole
    point (centred on it) up to 20 points, else 20 equal bins from 0 to the maximum."""
    import numpy as np

    rows = [r for r in rows if r.assignment == assignment]
    top = max((r.max_score for r in rows), default=0.0)
    if top <= 20:
        edges = np.arange(-0.5, math.floor(top) + 1.0, 1.0)
    else:
        edges = np.linspace(0.0, top, 21)
    counts, edges = np.histogram([r.score for r in rows if r.submitted], bins=edges)
    return [int(c) for c in counts], [float(e) for e in edges]


def plot_distribution(rows: Sequence[GradeRow], path: Path) -> Path:
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
        scores = [r.score for r in rows if r.assignment == assignment and r.submitted]
        mean = sum(scores) / n if n else 0.0
        ax.set_title(f"{assignment} (n={n}, mean {mean:.1f})")
        ax.set_xlabel("total score")
        ax.set_ylabel("students")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
