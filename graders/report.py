"""What ``python -m graders autograde`` prints: the batch's table (one line per submission,
its status, score, lost test cells and reason) and the loud warning when kernels ran
unsandboxed."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from graders.course import Course
from graders.gradebook import SubmissionGrade
from graders.parallel import Job, Settings, autograde, plan_sandbox
from graders.status import counts_line


def _lost(grade: SubmissionGrade, gid: str) -> str:
    """A test cell that lost points: its name, and what it earned when that was partial."""
    cell = grade.cells[gid]
    return f"{gid} ({cell.score:g}/{cell.max_score:g})" if cell.score > 0 else gid


def format_table(results: Sequence[SubmissionGrade], note: str) -> str:
    """One line per submission (student, assignment, status, score, failed test cells with
    their partial credit, reason) under a header that says whether kernels were sandboxed."""
    rows = [("student", "assignment", "status", "score", "failed test cells", "reason")]
    for r in sorted(results, key=lambda r: (r.assignment, r.student)):
        score = f"{r.score:g} / {r.max_score:g}" if r.in_gradebook else "-"
        failed = [_lost(r, gid) for gid in r.failed()]
        failed_text = ", ".join(failed) if len(failed) <= 4 else f"{len(failed)} cells"
        rows.append((r.student, r.assignment, r.status, score, failed_text or "-", r.reason or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [f"# {note}"]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:5], widths, strict=True)]
        lines.append("  ".join([*cells, row[5]]))
    lines.append("# " + counts_line([r.status for r in results]))
    return "\n".join(lines)


def warn_unsandboxed(note: str, stream=None) -> None:
    """Print the no-sandbox warning on stderr, in red on a terminal."""
    stream = stream or sys.stderr
    text = f"WARNING: {note}"
    if stream.isatty():
        text = f"\033[1;31m{text}\033[0m"
    print(text, file=stream)


def grade_and_report(
    course: Course, jobs: Sequence[Job], settings: Settings, stream=None
) -> list[SubmissionGrade]:
    """Grade ``jobs`` with a progress bar, warn loudly when unsandboxed, print the table."""
    stream = stream or sys.stdout
    plan = plan_sandbox(settings.sandbox)
    if not plan.active:
        warn_unsandboxed(plan.note)
    results = autograde(course, jobs, settings, plan)
    print(format_table(results, plan.note), file=stream)
    if not plan.active:
        warn_unsandboxed(plan.note)
    return results
