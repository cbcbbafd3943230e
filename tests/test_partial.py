"""Points kept when a notebook fails late (graders.partial): the test cells that completed before
a kernel died, stopped answering or was killed at a limit keep their points; the status says
where it stopped. Also: deleted read-only cells are put back (graders.restore)."""

from __future__ import annotations

import json

import pytest
from tinycourse import ASSIGNMENT, POINTS, copy_course, submission, tiny_released

from graders import notebooks, parallel, partial
from graders.status import (
    CRASHED,
    CRASHED_PARTIAL,
    FLAGGED,
    GRADED,
    TIMED_OUT,
    TIMED_OUT_PARTIAL,
)

__all__ = ["tiny_released"]  # a fixture

SANDBOX = parallel.plan_sandbox(True)
CELL_TIMEOUT = 4
LATE = {  # what the last solution cell ("square") does, after test_add and test_mul passed
    "endless": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
    "dies": "import os\nos._exit(3)",
    "membomb": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n_hog = []\n"
               "while True:\n    _hog.append(bytearray(64 << 20))",
    "slow-but-honest": "import time\ntime.sleep(1)\ndef square(x):\n    return x * x",
    # a function that a test calls loops: interrupted, it fails that test only
    "loops-when-tested": "def square(x):\n    while True:\n        pass",
    # ... and ignores the interrupt: the kernel is given up after that test
    "stubborn-when-tested": "def square(x):\n    import signal\n"
                            "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                            "    while True:\n        pass",
}


# ------------------------------------------------------------------------------ pure logic
def _events(tmp_path, *events):
    path = tmp_path / "progress.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n{torn")
    return partial.Progress.read(path)


def test_progress_reads_points_running_cell_timeouts_and_stop(tmp_path):
    p = _events(tmp_path, {"running": "a"}, {"test": "t1", "points": 1.0, "max": 1},
                {"running": "b"}, {"timeout": "b", "seconds": 4.2},
                {"stopped": "cell b ran past the 4 s cell limit", "at": "b"})
    assert p.points == {"t1": 1.0} and p.running == "b"
    assert p.timeouts == [("b", 4.2)] and p.stopped.startswith("cell b")
    assert partial.Progress.read(tmp_path / "none.jsonl") == partial.Progress()


@pytest.mark.parametrize(
    ("status", "killed", "events", "expected"),
    [
        (GRADED, False, [{"test": "t", "points": 1}, {"stopped": "cell x ran past ...",
                                                      "kind": "timeout"}], TIMED_OUT_PARTIAL),
        (GRADED, False, [{"test": "t", "points": 0}, {"stopped": "the kernel died ...",
                                                      "kind": "crash"}], CRASHED_PARTIAL),
        (GRADED, False, [{"stopped": "cell x ran past ...", "kind": "timeout"}], TIMED_OUT),
        (GRADED, False, [{"stopped": "the kernel died ...", "kind": "crash"}], CRASHED),
        (GRADED, False, [{"timeout": "x", "seconds": 4}], GRADED),
        (TIMED_OUT, True, [{"test": "t", "points": 1}, {"running": "x"}], TIMED_OUT_PARTIAL),
        (CRASHED, True, [{"test": "t", "points": 0}], CRASHED_PARTIAL),
        (TIMED_OUT, True, [{"running": "x"}], TIMED_OUT),  # nothing completed: nothing kept
        (CRASHED, False, [{"test": "t", "points": 1}], CRASHED),  # nbgrader itself failed
    ],
)
def test_outcome(tmp_path, status, killed, events, expected):
    got, reason = partial.outcome(status, "why", _events(tmp_path, *events), killed)
    assert got == expected, reason
    if expected == TIMED_OUT_PARTIAL and killed:
        assert reason == "why at cell x; 1 test cell before it kept"


def test_a_graded_run_says_what_output_it_left_out(tmp_path):
    p = _events(tmp_path, {"done": "a", "seconds": 1, "output_cut": 3 * 2**20},
                {"done": "b", "seconds": 1}, {"done": "c", "seconds": 1, "output_lost": True},
                {"timeout": "d", "seconds": 4})
    assert p.output_cut == [("a", 3 * 2**20)] and p.output_lost == "c"
    status, reason = partial.outcome(GRADED, "", p, False)
    assert status == GRADED
    assert reason == ("interrupted at the cell limit: d (4 s); output past the limit left out: "
                      "a (3.0 MiB); output channel closed by an output over 16 MiB at c")


# ------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def late(tiny_released, tmp_path_factory):
    course = copy_course(tiny_released, tmp_path_factory.mktemp("partial") / "course")
    for student, code in LATE.items():
        nb = submission(course)
        nb.cells[notebooks.cell_index(nb, "square")].source = code
        course.submit(student, ASSIGNMENT, nb)
    ref = submission(course)  # a read-only-free course: delete a test cell and keep the rest
    ref.cells = [c for c in ref.cells if notebooks.grade_id(c) != "test_mul"]
    course.submit("deleted-test", ASSIGNMENT, ref)
    settings = parallel.Settings(workers=2, progress=False, cell_timeout=CELL_TIMEOUT,
                                 notebook_timeout=60, memory_mb=1500, sandbox=SANDBOX.active)
    results = parallel.autograde(course, parallel.select_jobs(course, [ASSIGNMENT]), settings)
    return course, {r.student: r for r in results}


@pytest.mark.slow
@pytest.mark.xdist_group("tinycourse")
@pytest.mark.parametrize(
    ("student", "status", "where"),
    [
        ("endless", TIMED_OUT_PARTIAL, "cell square ran past the 4 s per-cell limit"),
        ("dies", CRASHED_PARTIAL, "the kernel died while running cell square"),
        ("membomb", CRASHED_PARTIAL, "MiB limit"),
        ("stubborn-when-tested", TIMED_OUT_PARTIAL, "did not stop when interrupted"),
    ],
)
def test_points_before_the_failure_are_kept(late, student, status, where):
    course, results = late
    result = results[student]
    assert result.status == status, (result.status, result.reason)
    assert where in result.reason
    kept = course.grades(ASSIGNMENT)[student]  # what the export and `graders grades` say later
    assert (kept.status, kept.reason) == (result.status, result.reason)
    cells = {g: c.score for g, c in kept.cells.items()}
    assert cells == {"test_add": POINTS["test_add"], "test_mul": POINTS["test_mul"],
                     "test_square": 0.0}
    assert result.seconds < 60


@pytest.mark.slow
@pytest.mark.xdist_group("tinycourse")
def test_a_test_that_calls_an_endless_function_fails_alone(late):
    course, results = late
    assert results["loops-when-tested"].status == GRADED, results["loops-when-tested"]
    cells = {g: c.score for g, c in course.grades(ASSIGNMENT)["loops-when-tested"].cells.items()}
    assert cells == {**POINTS, "test_square": 0.0}


@pytest.mark.slow
@pytest.mark.xdist_group("tinycourse")
def test_a_slow_honest_cell_and_a_deleted_test_cell_lose_nothing(late):
    course, results = late
    for student in ("slow-but-honest", "deleted-test"):
        # the deleted test cell is put back and run; the instructor is told which it was
        want = GRADED if student == "slow-but-honest" else FLAGGED
        assert results[student].status == want, results[student]
        assert course.grades(ASSIGNMENT)[student].score == sum(POINTS.values())
    assert results["deleted-test"].reason.startswith("flagged: the test cells test_mul are "
                                                     "missing from the submission")


@pytest.mark.slow
@pytest.mark.xdist_group("tinycourse")
def test_a_notebook_killed_at_its_wall_clock_limit_keeps_the_points_earned(
    tiny_released, tmp_path
):
    """The whole tree is killed at the notebook limit, so nbgrader never saves its grades (the
    sanitized notebook it wrote before running is all there is): the grader scores the test
    cells that completed."""
    course = copy_course(tiny_released, tmp_path / "course")
    nb = submission(course)
    nb.cells[notebooks.cell_index(nb, "square")].source = "import time\ntime.sleep(600)"
    course.submit("sleeper", ASSIGNMENT, nb)
    settings = parallel.Settings(workers=1, progress=False, cell_timeout=300,
                                 notebook_timeout=20, sandbox=SANDBOX.active)
    [result] = parallel.autograde(course, parallel.select_jobs(course, [ASSIGNMENT]), settings)
    assert result.status == TIMED_OUT_PARTIAL, (result.status, result.reason)
    assert "20 s notebook limit" in result.reason and "cell square" in result.reason
    grade = course.grades(ASSIGNMENT)["sleeper"]
    cells = {g: (c.score, c.needs_manual_grade) for g, c in grade.cells.items()}
    assert cells == {"test_add": (POINTS["test_add"], False),
                     "test_mul": (POINTS["test_mul"], False), "test_square": (0.0, False)}


def test_plain_nbgrader_grading_again_clears_the_status_the_tool_kept(tiny_released, tmp_path):
    """The formgrader's autograde button runs plain nbgrader: a `timed out (partial)` the tool
    kept from an earlier grading would otherwise stay in the export next to nbgrader's new
    full marks. Only the student graded again loses it."""
    from sqlalchemy import create_engine

    from graders import gradebook, kept_status

    course = copy_course(tiny_released, tmp_path / "c")
    course.submit("again", ASSIGNMENT, submission(course))
    kept_status.set_status(course.db_url, ASSIGNMENT, "again", TIMED_OUT_PARTIAL, "cell 3")
    kept_status.set_status(course.db_url, ASSIGNMENT, "other", CRASHED, "kernel died")
    course.autograde(ASSIGNMENT)
    grade = gradebook.read_grades(course.db_url, ASSIGNMENT)["again"]
    assert grade.status == GRADED and grade.score == sum(POINTS.values())
    engine = create_engine(course.db_url)
    try:
        assert set(kept_status.stored(engine, ASSIGNMENT)) == {"other"}
    finally:
        engine.dispose()


def test_a_second_run_never_betters_a_test_cell_the_first_completed():
    first = {"t1": 1.0, "t2": 0.0}  # t3 never completed in the first run
    second = {"t1": 1.0, "t2": 2.0, "t3": 3.0}
    assert partial.no_better_than(first, second) == {"t1": 1.0, "t2": 0.0, "t3": 3.0}
    assert partial.no_better_than({}, second) == second
