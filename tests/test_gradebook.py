"""graders.gradebook, graders.merge and graders.shards: shards, worker gradebooks, submission
copies that give exactly what grading straight into the main gradebook gives (the tiny synthetic
course, real nbgrader), the grade a copy returns, flags kept in the gradebook, and the merge of
a grading run (rows, flags, status) in one transaction."""

from __future__ import annotations

import random
import shutil
import string

import gradebook_rows as rows
import pytest
import tinycourse
from nbgrader.api import Gradebook, GradeCell, SolutionCell, SourceCell, Student
from sqlalchemy import text

from graders import kept_status
from graders.course import Course
from graders.gradebook import GradebookError, SubmissionGrade, read_submission
from graders.merge import copy_submission, make_worker_gradebook, record_submission
from graders.shards import parse_shard, select_shard

A = rows.ASSIGNMENT


# ------------------------------------------------------------------------------- shards
@pytest.mark.parametrize("text_, expected", [("1/2", (1, 2)), (" 3 / 3 ", (3, 3)), ("1/1", (1, 1))])
def test_parse_shard_reads_k_of_n(text_, expected):
    assert parse_shard(text_) == expected


@pytest.mark.parametrize("bad", ["", "2", "0/2", "3/2", "1/0", "a/b", "1/2/3", "-1/2", "1.5/2"])
def test_parse_shard_rejects_with_the_expected_form(bad):
    with pytest.raises(ValueError, match=r"K/N|1 <= K <= N"):
        parse_shard(bad)


def _names(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(string.ascii_lowercase, k=8)) for _ in range(count)]


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_are_disjoint_cover_everyone_and_are_balanced(n):
    students = _names(300, seed=n)
    shards = [select_shard(students, k, n) for k in range(1, n + 1)]
    assert sorted(s for shard in shards for s in shard) == sorted(students)  # cover, disjoint
    assert min(len(shard) for shard in shards) > 300 / n / 2  # no shard starves


def test_a_students_shard_depends_on_the_name_only():
    students = _names(100, seed=1)
    before = {k: select_shard(students, k, 3) for k in (1, 2, 3)}
    grown = list(reversed(students)) + _names(50, seed=2)  # other order, more students
    for k in (1, 2, 3):
        assert set(before[k]) <= set(select_shard(grown, k, 3))
        assert before[k] == [s for s in students if select_shard([s], k, 3) == [s]]
    assert select_shard(["a", "a", "b"], 1, 1) == ["a", "b"]
    with pytest.raises(ValueError):
        select_shard(students, 4, 3)


# --------------------------------------------------------------------- worker gradebooks
pytestmark = pytest.mark.xdist_group("tinycourse")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Course]:
    return rows.courses(tmp_path_factory.mktemp("sync"))


def _definition(url: str) -> dict:
    with Gradebook(url) as gb:
        return {
            "grade": sorted(
                (c.notebook.name, c.name, c.max_score, c.cell_type) for c in gb.db.query(GradeCell)
            ),
            "solution": sorted((c.notebook.name, c.name) for c in gb.db.query(SolutionCell)),
            "source": sorted(
                (c.notebook.name, c.name, c.source, c.checksum, c.locked)
                for c in gb.db.query(SourceCell)
            ),
            "assignments": [(a.name, a.duedate, a.course_id) for a in gb.assignments],
        }


@pytest.mark.slow  # the tiny course graded for real, about 40 s once
def test_worker_gradebook_holds_the_definition_and_nobody(tiny, tmp_path):
    main = tiny["serial"]  # graded: has students and submissions that must not be copied
    url = make_worker_gradebook(main.db_url, tmp_path / "w" / "gradebook.db", A)
    assert _definition(url) == _definition(main.db_url)
    assert any(tinycourse.SECRET in src for _, _, src, _, _ in _definition(url)["source"])
    counts = rows.row_counts(url)
    assert counts["student"] == counts["submitted_assignment"] == counts["grade"] == 0
    with pytest.raises(GradebookError, match="'nope' is not in the gradebook"):
        make_worker_gradebook(main.db_url, tmp_path / "x.db", "nope")


# ----------------------------------------------------------------------- submission copies
@pytest.mark.slow  # the tiny course graded for real, about 40 s once
def test_routed_grading_equals_grading_straight_into_the_main_gradebook(tiny):
    serial, routed = rows.snapshot(tiny["serial"].db_url), rows.snapshot(tiny["routed"].db_url)
    assert routed == serial
    grades = tiny["routed"].grades(A)
    for student, how in rows.STUDENTS.items():
        scores = {gid: cell.score for gid, cell in grades[student].cells.items()}
        assert scores == tinycourse.expected_scores(**how), student
    # the rows compared are the real thing: timestamps, "No response." comments
    assert routed[(A, "alice")][0] is not None
    assert routed[(A, "carol", A, "comment", "add")][0] == "No response."
    assert routed[(A, "alice", A, "comment", "add")][0] is None


def _copy_db(course: Course, dest) -> str:
    shutil.copy2(course.root / "gradebook.db", dest)
    return f"sqlite:///{dest}"


def _worker_url(tiny, student: str) -> str:
    return f"sqlite:///{tiny['routed'].root.parent / 'workers' / student / 'gradebook.db'}"


@pytest.mark.slow  # the tiny course graded for real, about 40 s once
def test_copying_twice_changes_nothing(tiny, tmp_path):
    dst = _copy_db(tiny["routed"], tmp_path / "main.db")
    before, counts = rows.snapshot(dst), rows.row_counts(dst)
    for student in rows.STUDENTS:
        copy_submission(_worker_url(tiny, student), dst, A, student)
        copy_submission(_worker_url(tiny, student), dst, A, student)
    assert rows.snapshot(dst) == before
    assert rows.row_counts(dst) == counts


def _set_manual_score(url: str, student: str, cell: str, score: float) -> None:
    with Gradebook(url) as gb:
        gb.find_grade(cell, A, A, student).manual_score = score
        gb.db.commit()


@pytest.mark.slow  # the tiny course graded for real, about 40 s once
def test_regrading_one_student_keeps_manual_scores_and_leaves_the_others(tiny, tmp_path):
    """A re-run for alice after a manual score: routed == nbgrader's own re-grade."""
    courses = {}
    for name in ("serial", "routed"):
        courses[name] = Course(tmp_path / name)
        shutil.copytree(tiny[name].root, courses[name].root)
        _set_manual_score(courses[name].db_url, "alice", "test_mul", 1.5)
        # alice resubmits with mul wrong
        alice = tinycourse.submission(courses[name], wrong=("mul",))
        courses[name].submit("alice", A, alice)
    before = rows.snapshot(courses["routed"].db_url)
    assert courses["serial"].autograde(A, "alice").returncode == 0
    rows.grade_in_worker(courses["routed"], "alice", tmp_path / "worker")

    serial, routed = (rows.snapshot(c.db_url) for c in courses.values())
    assert routed == serial
    mul = routed[(A, "alice", A, "grade", "test_mul")]
    assert mul[:4] == (0.0, 1.5, None, True)  # auto score updated, manual kept, review asked
    assert {k: v for k, v in routed.items() if "alice" not in k} == {
        k: v for k, v in before.items() if "alice" not in k
    }


@pytest.mark.slow  # the tiny course graded for real, about 40 s once
def test_a_failed_copy_writes_nothing(tiny, tmp_path):
    dst = _copy_db(tiny["released"], tmp_path / "main.db")
    with pytest.raises(GradebookError, match="no submission of 'tiny' by 'zoe'"):
        copy_submission(_worker_url(tiny, "alice"), dst, A, "zoe")
    # a worker gradebook whose cells differ from the main one's (re-released meanwhile)
    src = _copy_db(tiny["serial"], tmp_path / "src.db")
    with Gradebook(src) as gb:
        gb.db.execute(text("UPDATE base_cell SET name = 'renamed' WHERE name = 'test_mul'"))
        gb.db.commit()
    with pytest.raises(GradebookError, match="disagree on the cells"):
        copy_submission(src, dst, A, "alice")
    with Gradebook(dst) as gb:
        assert gb.db.query(Student).count() == 0  # the student row was rolled back too
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    shutil.copy2(tmp_path / "main.db", tmp_path / "empty.db")
    with Gradebook(empty) as gb:
        gb.remove_assignment(A)
    with pytest.raises(GradebookError, match="'tiny' is not in the gradebook"):
        copy_submission(_worker_url(tiny, "alice"), empty, A, "alice")


# ------------------------------------------------------------------ the merge of a grading run
def _kept(url: str) -> dict[str, tuple[str, str]]:
    with Gradebook(url) as gb:
        return kept_status.stored(gb.engine, A)


@pytest.mark.slow  # the tiny course graded for real, about 40 s once
def test_recording_a_run_writes_the_copy_the_flags_and_the_status_at_once(tiny, tmp_path):
    """record_submission (what autograde's parent does per submission) = copy_submission +
    set_flags + kept_status.set_status, with one read of each gradebook."""
    dst = _copy_db(tiny["released"], tmp_path / "main.db")
    flag = "flagged: reads IPython input history (In) at cell square line 1"
    kept_status.set_status(dst, A, "bob", "crashed", "from an earlier run")  # stale: goes
    scanned = []
    for student in rows.STUDENTS:
        grade = SubmissionGrade(A, student)
        flags = [flag] if student == "bob" else []
        record_submission(_worker_url(tiny, student), dst, grade,
                          lambda flags=flags: scanned.append(1) or flags)
        stored = read_submission(dst, A, student)
        assert grade.cells == stored.cells  # the cells returned are the gradebook's
        assert grade.score == sum(tinycourse.expected_scores(**rows.STUDENTS[student]).values())
        assert (grade.status, grade.flags) == (stored.status, stored.flags)
        assert grade.status == ("flagged" if flags else "graded")
    assert len(scanned) == 3
    assert _kept(dst) == {}
    # the rows are exactly the routed copy's, but for the flag and the comment it names
    routed, recorded = rows.snapshot(tiny["routed"].db_url), rows.snapshot(dst)
    assert recorded[(A, "bob", A)][1] is True
    assert recorded[(A, "bob", A, "comment", "square")][0] == flag
    for key in [(A, "bob", A), (A, "bob", A, "comment", "square")]:
        del routed[key], recorded[key]
    assert recorded == routed


@pytest.mark.slow  # the tiny course graded for real, about 40 s once
def test_recording_keeps_a_status_and_writes_nothing_when_it_fails(tiny, tmp_path, monkeypatch):
    dst = _copy_db(tiny["released"], tmp_path / "main.db")
    # a run that stopped before nbgrader wrote anything: the status alone, no scan
    empty = make_worker_gradebook(dst, tmp_path / "w" / "gradebook.db", A)
    stopped = SubmissionGrade(A, "alice", "timed out", "ran past the 60 s notebook limit",
                              in_gradebook=False)  # as autograde's job makes it
    record_submission(empty, dst, stopped, lambda: pytest.fail("nothing to scan"))
    assert not stopped.in_gradebook and stopped.cells == {}
    assert _kept(dst) == {"alice": ("timed out", "ran past the 60 s notebook limit")}
    assert read_submission(dst, A, "alice") is None
    # graded later: the kept status goes with the rows
    record_submission(_worker_url(tiny, "alice"), dst, SubmissionGrade(A, "alice"), list)
    assert _kept(dst) == {} and read_submission(dst, A, "alice").score == 6
    # a worker gradebook that disagrees with the main one: nothing of the run is written
    src = _copy_db(tiny["serial"], tmp_path / "src.db")
    with Gradebook(src) as gb:
        gb.db.execute(text("UPDATE base_cell SET name = 'renamed' WHERE name = 'test_mul'"))
        gb.db.commit()
    before = rows.snapshot(dst)
    partial = SubmissionGrade(A, "bob", "timed out (partial)", "cell 3")
    with pytest.raises(GradebookError, match="disagree on the cells"):
        record_submission(src, dst, partial, lambda: ["flagged: x"])
    assert rows.snapshot(dst) == before and _kept(dst) == {}
    assert partial == SubmissionGrade(A, "bob", "timed out (partial)", "cell 3")  # untouched
    # a failure after the rows and flags were written in the transaction: all rolled back
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(kept_status, "write", broken)
    bob = SubmissionGrade(A, "bob")
    with pytest.raises(RuntimeError, match="disk full"):
        record_submission(_worker_url(tiny, "bob"), dst, bob, lambda: ["flagged: x"])
    assert rows.snapshot(dst) == before and bob == SubmissionGrade(A, "bob")
