"""How grading one submission can end: the status words, in one table.

Every status is one line of :data:`TABLE`: the word (what the autograde table, the export CSV
and the demo show), whether the gradebook's score is nbgrader's verdict on the submission
(``scored``), and what it means. Adding a status is adding a line.
"""

from __future__ import annotations

from typing import NamedTuple


class Status(NamedTuple):
    word: str
    scored: bool  # the gradebook holds nbgrader's verdict (the autograded notebook is kept)
    meaning: str


TABLE: tuple[Status, ...] = (
    Status("graded", True, "nbgrader graded it (tests may still have failed: see the score)"),
    Status("flagged", True, "graded, but the scan found code reaching into the grading: review"),
    Status("timed out (partial)", True, "stopped by a time limit at some cell: the test cells "
           "that completed before keep their points, the later ones score 0 (the reason names "
           "the cell)"),
    Status("crashed (partial)", True, "the kernel died or was killed at a memory, process or "
           "disk limit at some cell: the test cells that completed before keep their points"),
    Status("timed out", False, "a cell ignored the per-cell interrupt, or the notebook ran past "
           "the wall-clock limit (the grading process and the kernel were killed)"),
    Status("crashed", False, "the kernel died (e.g. killed at a memory, process or disk limit) "
           "or nbgrader failed"),
    Status("missing", False, "no notebook for the assignment in the student's folder"),
    Status("refused", False, "the file is not a notebook (corrupt JSON, ...)"),
)

#: every status word, in table order
STATUSES: tuple[str, ...] = tuple(s.word for s in TABLE)
MEANING: dict[str, str] = {s.word: s.meaning for s in TABLE}
SCORED: frozenset[str] = frozenset(s.word for s in TABLE if s.scored)

GRADED, FLAGGED, TIMED_OUT, CRASHED, MISSING, REFUSED = (
    "graded", "flagged", "timed out", "crashed", "missing", "refused"
)
TIMED_OUT_PARTIAL, CRASHED_PARTIAL = "timed out (partial)", "crashed (partial)"
assert {GRADED, FLAGGED, TIMED_OUT, CRASHED, MISSING, REFUSED, TIMED_OUT_PARTIAL,
        CRASHED_PARTIAL} <= set(STATUSES)


def is_scored(word: str) -> bool:
    """Whether a submission with this status keeps its autograded notebook and score."""
    return word in SCORED


def counts_line(words: list[str]) -> str:
    """``"3 graded, 1 timed out"``: how many of each status, in table order (none left out)."""
    return ", ".join(f"{words.count(w)} {w}" for w in STATUSES if words.count(w))
