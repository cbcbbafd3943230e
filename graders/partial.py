"""What a grading run that stopped early keeps, and the status that says so.

The course's executor (:mod:`graders.verdict.execute`) writes a progress file while it grades
(:class:`~graders.verdict.execute.ProgressLog`): which cell is running, each test cell's points,
cells that ran past the per-cell limit, and where it stopped when the kernel died or stopped
answering. A run can end early in two ways:

* the executor stopped it (the kernel died, or ignored the interrupt after a cell ran past its
  limit): nbgrader still saved the grades, the test cells before that point keep theirs, and the
  status becomes ``crashed (partial)`` or ``timed out (partial)`` with the cell in the reason;
* the watchdog killed it (wall clock, memory, processes, disk): when nbgrader had no time to save
  anything, the points of the test cells that completed are written into the gradebook from the
  progress file (:func:`graders.gradebook.set_auto_scores`), the later ones score 0.

Neither nbgrader nor otter keeps anything in these cases (otter issues #469, #813).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from graders.status import CRASHED, CRASHED_PARTIAL, GRADED, TIMED_OUT, TIMED_OUT_PARTIAL
from graders.verdict.execute import ProgressLog
from graders.verdict.outputs import MAX_MESSAGE_BYTES, MIB


@dataclass
class Progress:
    """What a progress file says (see the module docstring)."""

    points: dict[str, float] = field(default_factory=dict)  # test cell -> points earned
    running: str | None = None  # the last cell that started
    stopped: str | None = None  # why the executor stopped (None: it did not)
    stopped_by_time: bool = False  # ... because the kernel ignored an interrupt at a time limit
    timeouts: list[tuple[str, float]] = field(default_factory=list)  # (cell, seconds)
    begun: bool = False  # the kernel and its grading agent answer: the run is past its start
    output_cut: list[tuple[str, int]] = field(default_factory=list)  # (cell, bytes left out)
    output_lost: str | None = None  # the cell whose output closed the output channel

    @classmethod
    def read(cls, path: Path) -> Progress:
        progress = cls()
        for event in ProgressLog.read(path):
            if event.get("phase") == "agent":
                progress.begun = True
            if isinstance(event.get("running"), str):
                progress.running = event["running"]
            if isinstance(event.get("test"), str) and isinstance(event.get("points"),
                                                                   (int, float)):
                progress.points[event["test"]] = float(event["points"])
            if isinstance(event.get("timeout"), str):
                progress.timeouts.append((event["timeout"], float(event.get("seconds") or 0)))
            if isinstance(event.get("done"), str) and isinstance(event.get("output_cut"), int):
                progress.output_cut.append((event["done"], event["output_cut"]))
            if isinstance(event.get("done"), str) and event.get("output_lost") is True:
                progress.output_lost = event["done"]
            if isinstance(event.get("stopped"), str):
                progress.stopped = event["stopped"]
                progress.stopped_by_time = event.get("kind") == "timeout"
        return progress


def _kept(progress: Progress) -> str:
    n = len(progress.points)
    return f"{n} test cell{'s' if n != 1 else ''} before it kept"


def _output_note(progress: Progress) -> str:
    """What the graded notebook left out of the cells' output (graders.verdict.outputs)."""
    cut = ", ".join(f"{cell} ({n / MIB:.1f} MiB)" for cell, n in progress.output_cut if n)
    notes = [f"output past the limit left out: {cut}" if cut else "",
             f"output channel closed by an output over {MAX_MESSAGE_BYTES // MIB} MiB at "
             f"{progress.output_lost}" if progress.output_lost else ""]
    return "; ".join(filter(None, notes))


def outcome(status: str, reason: str, progress: Progress, killed: bool) -> tuple[str, str]:
    """The final ``(status, reason)`` of a run that ended with ``(status, reason)`` (from
    :func:`graders.runner.classify`; ``killed``: a limit of the watchdog ended it), given its
    progress."""
    timeouts = ", ".join(f"{cell} ({seconds:g} s)" for cell, seconds in progress.timeouts)
    if status == GRADED and progress.stopped:
        if not progress.points:  # stopped before any test cell completed: nothing to keep
            return (TIMED_OUT if progress.stopped_by_time else CRASHED), progress.stopped
        partial = TIMED_OUT_PARTIAL if progress.stopped_by_time else CRASHED_PARTIAL
        return partial, f"{progress.stopped}; later test cells score 0"
    if status == GRADED and (timeouts or progress.output_cut or progress.output_lost):
        return GRADED, "; ".join(filter(None, [
            timeouts and f"interrupted at the cell limit: {timeouts}", _output_note(progress)]))
    if killed and status in (TIMED_OUT, CRASHED) and progress.points:
        partial = TIMED_OUT_PARTIAL if status == TIMED_OUT else CRASHED_PARTIAL
        where = f" at cell {progress.running}" if progress.running else ""
        return partial, f"{reason}{where}; {_kept(progress)}"
    return status, reason


def is_partial(status: str) -> bool:
    """Whether ``status`` keeps the points of the test cells that completed."""
    return status in (TIMED_OUT_PARTIAL, CRASHED_PARTIAL)


def worth_again(status: str, killed: bool, progress: Progress) -> bool:
    """Whether a run deserves a second one: it crashed on its own (not killed by a limit: on a
    busy machine a kernel can fail to start or answer in time) before any test cell completed,
    or a cell ran past its limit while the machine was busy and stopped when interrupted (an
    honest cell made slow by the load; a kernel that ignores the interrupt is the submission's
    doing). Load must not change a grade.

    A kernel that died after a test cell completed is final (``crashed (partial)``: the points
    earned so far are kept): a second run would let a submission whose answers vary from run to
    run crash on purpose when its own checks see a bad draw, and take the better of two. (A
    second run also never raises the points of a test cell the first completed:
    :func:`no_better_than`.)"""
    if status in (CRASHED, CRASHED_PARTIAL) and not killed and not progress.stopped_by_time:
        return not (progress.stopped and progress.points)
    slow = bool(progress.timeouts) and not progress.stopped_by_time
    return slow and status in (GRADED, TIMED_OUT, TIMED_OUT_PARTIAL) and machine_busy()


def no_better_than(first: dict[str, float], second: dict[str, float]) -> dict[str, float]:
    """The points of a second run (``second``, per test cell), none above what the first run
    earned in the test cells it completed (``first``)."""
    return {gid: min(points, first.get(gid, points)) for gid, points in second.items()}


def machine_busy() -> bool:
    """More runnable work than cores over the last minute."""
    try:
        return os.getloadavg()[0] > (os.cpu_count() or 1)
    except OSError:
        return False
