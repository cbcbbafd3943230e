"""Adversarial submissions (graders.samples.adversarial) graded by graders.parallel in one run,
beside ordinary students: each ends with the status and score it deserves, the limits stop the
endless loop, the memory bomb and (sandboxed) the disk filler in bounded time, and (sandboxed)
nothing leaks or escapes."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from tinycourse import ASSIGNMENT, SECRET, copy_course, expected_scores, submission, tiny_released

from graders import parallel, samples
from graders.course import REPO_ROOT

__all__ = ["tiny_released"]  # a fixture
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("adversarial")]

SANDBOX = parallel.plan_sandbox(True)
needs_sandbox = pytest.mark.skipif(not SANDBOX.active, reason=f"no sandbox: {SANDBOX.note}")
CELL_TIMEOUT = 3  # s: endless ignores the interrupt; nbgrader gives up after about twice this
NOTEBOOK_TIMEOUT = 30.0
MEMORY_MB = 1200  # the whole tree: nbgrader and its trusted test process count too
DISK_MB = 64
ORDINARY = {"ref": {}, "wrong-mul": {"wrong": ("mul",)}, "stub": {"unsolved": ("add", "mul")}}


class Listener:
    """A TCP server on 127.0.0.1 that records every connection it accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[tuple] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(addr)
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def run(tiny_released, tmp_path_factory):
    """One parallel run: every adversarial sample and three ordinary students."""
    course = copy_course(tiny_released, tmp_path_factory.mktemp("adversarial") / "course")
    token = f"t{time.time_ns()}"
    listener = Listener()
    built = samples.adversarial(
        course, ASSIGNMENT, port=listener.port, token=token, escape=SANDBOX.active,
        disk=SANDBOX.active,
    )
    for sample in built:
        course.submit(sample.student, ASSIGNMENT, sample.notebook)
    for student, kind in ORDINARY.items():
        course.submit(student, ASSIGNMENT, submission(course, **kind))
    settings = parallel.Settings(
        workers=2,
        cell_timeout=CELL_TIMEOUT,
        notebook_timeout=NOTEBOOK_TIMEOUT,
        memory_mb=MEMORY_MB,
        disk_mb=DISK_MB,
        progress=False,
    )
    try:
        results = parallel.autograde(course, parallel.select_jobs(course, [ASSIGNMENT]), settings)
    finally:
        listener.close()
    by_student = {r.student: r for r in results}
    yield course, built, by_student, listener, token


def _outputs(course, student: str) -> str:
    """Everything the student's autograded notebook shows as output."""
    nb = nbformat.read(str(course.autograded_path(student, ASSIGNMENT)), as_version=4)
    return "\n".join(json.dumps(c.get("outputs", [])) for c in nb.cells)


def test_every_adversarial_sample_gets_its_status_and_score(run):
    course, built, results, _, _ = run
    full = sum(expected_scores().values())
    for sample in built:
        result = results[sample.student]
        assert result.status == sample.status, (sample.student, result)
        if sample.status in ("graded", "flagged"):  # flagged: graded as usual, for review
            assert (result.score, result.max_score, result.failed()) == (full, full, [])
        elif sample.status.endswith("(partial)"):  # the tests before the failure keep points
            kept = full - sum(expected_scores()[g] for g in sample.must_fail)
            assert (result.score, result.max_score) == (kept, full), sample.student
            assert sorted(result.failed()) == sorted(sample.must_fail)
        else:  # nbgrader's row stays, with nothing earned
            assert (result.score, result.max_score) == (0, full)
            assert not course.autograded_path(sample.student, ASSIGNMENT).exists()
    assert results["network"].reason.startswith("flagged: ")
    assert "socket" in results["network"].reason
    # the per-cell limit gives it up; on a busy machine its wall-clock limit may come first
    assert ("per-cell limit" in results["endless"].reason
            or "notebook limit" in results["endless"].reason), results["endless"].reason
    assert "cell square ran past" in results["stuck-late"].reason
    assert f"over the {MEMORY_MB} MiB limit" in results["membomb"].reason
    if SANDBOX.active:
        assert results["diskfill"].reason == f"wrote more than {DISK_MB} MiB (disk limit)"


def test_a_flood_of_output_is_left_out_and_graded_in_full(run):
    """256 MiB printed: the grading process keeps a few MiB of it (before, it kept everything
    and the memory limit killed the grading), and the reason says what was left out."""
    course, _, results, _, _ = run
    assert "output" in results["flood"].reason and "left out" in results["flood"].reason \
        or "output channel closed" in results["flood"].reason, results["flood"].reason
    assert course.autograded_path("flood", ASSIGNMENT).stat().st_size < 20 * 2**20
    outputs = _outputs(course, "flood")
    assert "graders: " in outputs and "flood! flood!" in outputs or "output channel" in outputs


def test_limits_stop_endless_and_membomb_in_bounded_time(run):
    _, _, results, _, _ = run
    # the cell is interrupted at CELL_TIMEOUT, the kernel given up a few seconds later; on a
    # busy machine the wall-clock limit may stop it first, and it is graded once more
    assert results["endless"].seconds < 2 * NOTEBOOK_TIMEOUT
    # a memory or disk limit kills the kernel at once; nbgrader then saves what it can
    assert results["membomb"].seconds < NOTEBOOK_TIMEOUT
    if SANDBOX.active:
        assert results["diskfill"].seconds < NOTEBOOK_TIMEOUT
    kids = psutil.Process().children(recursive=True)
    # a kernel (or its sandbox) runs the kernel spec's `-m ipykernel_launcher`; the forkserver
    # only names ipykernel's modules among its preloads
    leftovers = [p for p in kids if "ipykernel_launcher" in p.cmdline()]
    assert not leftovers  # no kernel survives its grading


def test_ordinary_students_of_the_same_run_are_graded_correctly(run):
    course, _, results, _, _ = run
    grades = course.grades(ASSIGNMENT)
    for student, kind in ORDINARY.items():
        assert results[student].status == "graded"
        cells = {g: c.score for g, c in grades[student].cells.items()}
        assert cells == expected_scores(**kind)


def test_attacks_really_ran(run):
    """The samples did what they claim (so the checks below are not vacuous)."""
    course, _, _, _, _ = run
    assert "snoop: found" in _outputs(course, "snoop")
    assert "network:" in _outputs(course, "network")


@needs_sandbox
def test_snoop_finds_no_gradebook_and_no_hidden_test(run):
    course, _, _, _, _ = run
    out = _outputs(course, "snoop")
    assert SECRET not in out
    assert "snoop: read" not in out and "snoop: found 0 files" in out
    for student in ("ref", "wrong-mul", "network"):
        assert SECRET not in _outputs(course, student)


@needs_sandbox
def test_network_reaches_neither_localhost_nor_outside(run):
    course, _, _, listener, _ = run
    assert listener.accepted == []
    out = _outputs(course, "network")
    assert "connected to" not in out
    assert "no connection to 127.0.0.1" in out and "no connection to 1.1.1.1" in out


@needs_sandbox
def test_escape_writes_nothing_outside_its_folder(run):
    course, _, _, _, token = run
    name = samples.escape_file_name(token)
    assert list(course.root.rglob(name)) == []
    places = [REPO_ROOT, Path.home(), Path("/tmp"), Path(tempfile.gettempdir())]
    assert [p for p in places if (p / name).exists()] == []
    # inside the sandbox some writes succeed, into tmpfs layers that vanish with the kernel
    assert "escape: " in _outputs(course, "escape")
