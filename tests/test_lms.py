"""Grades back into Canvas and Moodle: collect a platform's zip (identities kept in the
gradebook), grade (a hand-built gradebook, as nbgrader's autograde leaves it, late penalty
included), export the platform's import file, plain or filled into the platform's roster."""

from __future__ import annotations

import csv
import io
import os
import shutil
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from graders import cli, collect, lms
from graders.course import REPO_ROOT, Course

A = "a1"
CELLS = {"t1": 2.0, "t2": 3.0}  # grade cells of a1: 5 points


@pytest.fixture(scope="module")
def blank_gradebook(tmp_path_factory) -> Path:
    """A gradebook holding assignment ``a1`` and no students (built once: nbgrader runs
    ``alembic``, which takes seconds)."""
    from nbgrader.api import Gradebook

    path = tmp_path_factory.mktemp("blank") / "gradebook.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        with Gradebook(f"sqlite:///{path}") as gb:
            gb.add_assignment(A)
            gb.add_notebook(A, A)
            for name, pts in CELLS.items():
                gb.add_grade_cell(name, A, A, max_score=pts, cell_type="code")
            gb.db.commit()
    return path


def make_course(root: Path, gradebook: Path) -> Course:
    """A course with one assignment ``a1`` (source notebook, gradebook entry), no students."""
    root.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    cells = [new_code_cell("pass", metadata={"nbgrader": {
        "grade_id": gid, "grade": True, "solution": False, "locked": True, "points": pts,
        "schema_version": 3}}) for gid, pts in CELLS.items()]
    (root / "source" / A).mkdir(parents=True)
    nbformat.write(new_notebook(cells=cells), str(root / "source" / A / f"{A}.ipynb"))
    shutil.copy2(gradebook, root / "gradebook.db")
    return Course(root)


def grade(course: Course, scores: dict[str, tuple[float, float]], late: dict[str, float]) -> None:
    """What autograde leaves in the gradebook: a submission per student, cell scores, and
    nbgrader's late penalty."""
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        for student, (t1, t2) in scores.items():
            sub = gb.add_submission(A, student)
            for name, score in zip(CELLS, (t1, t2), strict=True):
                g = gb.find_grade(name, A, A, student)
                g.auto_score, g.needs_manual_grade = score, False
            sub.notebooks[0].late_submission_penalty = late.get(student)
        gb.db.commit()


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 5, 1, 12, 0, 0)), data)
    return path


def notebook() -> bytes:
    return nbformat.writes(new_notebook(cells=[new_code_cell("x = 1")])).encode()


def read_csv(path: Path, delimiter: str = ",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig")),
                           delimiter=delimiter))


def write_roster(path: Path, rows: list[list[str]], delimiter: str = ",", bom: bool = False):
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    path.write_text(("\ufeff" if bom else "") + buffer.getvalue(), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ Canvas
CANVAS_ROSTER = [
    ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "a1 (5501)",
     "Essay (5502)", "Current Points", "Final Points"],
    ["    Points Possible", "", "", "", "", "5", "10", "(read only)", "(read only)"],
    ["Smith, John", "12345", "S001", "jsmith", "Section A", "", "7", "", ""],
    ["Doe, Jane", "111", "S002", "jdoe", "Section A", "", "8", "", ""],
    ["Roe, Rick", "222", "S003", "rroe", "Section B", "", "9", "", ""],
    ["Student, Test", "999", "", "", "Section A", "", "", "", ""],
]


@pytest.fixture(scope="module")
def canvas_course(tmp_path_factory, blank_gradebook) -> Course:
    """Collected from a Canvas zip (John, Jane late, Gus not on the roster) and graded."""
    tmp_path = tmp_path_factory.mktemp("canvas")
    course = make_course(tmp_path / "course", blank_gradebook)
    export = zip_of(tmp_path / "canvas.zip", {
        "smithjohn_12345_67890_a1.ipynb": notebook(),
        "doejane_LATE_111_222_a1.ipynb": notebook(),
        "ghostgus_777_1_Copy of a1.ipynb": notebook(),
    })
    report = collect.collect_into(course, export)
    assert report.exit_code == 0
    assert "canvas names and ids of 3 students kept in the gradebook" in report.table()
    grade(course, {"smithjohn": (2, 3), "doejane": (2, 1), "ghostgus": (0, 1)},
          late={"doejane": 1.0})
    return course


def test_collect_keeps_canvas_user_ids(canvas_course):
    folks = lms.people(canvas_course.db_url)
    assert {s: p.lms_user_id for s, p in folks.items()} == {
        "smithjohn": "12345", "doejane": "111", "ghostgus": "777"}


def test_canvas_roster_round_trip(canvas_course, tmp_path, capsys):
    roster = write_roster(tmp_path / "roster.csv", CANVAS_ROSTER)
    code = cli.main(["--root", str(canvas_course.root), "export", "--format", "canvas",
                     "--template", str(roster), "--missing", "zero"])
    out = capsys.readouterr().out
    assert code == 0
    written = read_csv(canvas_course.reports / "canvas-grades.csv")
    # every row and column of the roster, in order; only the a1 column is filled
    assert written[0] == CANVAS_ROSTER[0] and len(written) == len(CANVAS_ROSTER)
    for got, want in zip(written, CANVAS_ROSTER, strict=True):
        assert got[:5] + got[6:] == want[:5] + want[6:]
    assert [row[5] for row in written[1:]] == ["5", "5", "2", "0", "0"]  # Jane: 3 - 1 late
    assert "a1: no submission from 2: Roe, Rick, Student, Test" in out
    assert "submissions with no roster row (1): ghostgus" in out
    assert roster.read_text() == write_roster(tmp_path / "again.csv", CANVAS_ROSTER).read_text()

    cli.main(["--root", str(canvas_course.root), "export", A, "--format", "canvas",
              "--template", str(roster)])  # --missing empty (the default)
    written = read_csv(canvas_course.reports / "canvas-grades.csv")
    assert [row[5] for row in written[2:]] == ["5", "2", "", ""]


def test_canvas_plain_file_has_canvas_columns(canvas_course):
    from graders.export import write_lms

    made = write_lms(canvas_course, "canvas", missing="zero")
    rows = read_csv(made.path)
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", A]
    assert rows[1] == ["Points Possible", "", "", "", "", "5"]
    assert sorted(rows[2:]) == [["doejane", "111", "", "", "", "2"],
                                ["ghostgus", "777", "", "", "", "1"],
                                ["smithjohn", "12345", "", "", "", "5"]]


def test_a_roster_that_is_not_canvas_is_refused(canvas_course, tmp_path):
    roster = write_roster(tmp_path / "r.csv", [["Name", "Score"], ["x", "1"]])
    with pytest.raises(SystemExit, match="not a canvas gradebook export: no column Student, ID"):
        cli.main(["--root", str(canvas_course.root), "export", "--format", "canvas",
                  "--template", str(roster)])
    two = write_roster(tmp_path / "two.csv", [[*CANVAS_ROSTER[0][:5], "a1 (1)", "a1 (2)"]])
    with pytest.raises(SystemExit, match="several roster columns name a1"):
        cli.main(["--root", str(canvas_course.root), "export", "--format", "canvas",
                  "--template", str(two)])
    with pytest.raises(SystemExit, match="--template needs --format"):
        cli.main(["--root", str(canvas_course.root), "export", "--template", str(two)])
    with pytest.raises(SystemExit):
        cli.main(["--root", str(canvas_course.root), "export", "--format", "blackboard"])


# ------------------------------------------------------------------------------------ Moodle
MOODLE_ROSTER = [
    ["First name", "Last name", "ID number", "Institution", "Department", "Email address",
     "Assignment: a1 (Real)", "Last downloaded from this course"],
    ["Anna", "Müller", "", "Uni", "CS", "anna@example.org", "-", "1714564800"],
    ["Bob", "Smith-Jones", "", "Uni", "CS", "bob@example.org", "-", "1714564800"],
    ["Carl", "Cole", "C3", "Uni", "CS", "carl@example.org", "-", "1714564800"],
]


@pytest.fixture(scope="module")
def moodle_course(tmp_path_factory, blank_gradebook) -> Course:
    """Collected from a Moodle zip (Anna, Bob; Bob's email added as nbgrader's `db student
    import` would) and graded."""
    from nbgrader.api import Gradebook

    tmp_path = tmp_path_factory.mktemp("moodle")
    course = make_course(tmp_path / "course", blank_gradebook)
    export = zip_of(tmp_path / "moodle.zip", {
        "Anna Müller_12345_assignsubmission_file_/a1.ipynb": notebook(),
        "Bob Smith_222_assignsubmission_file_/a1.ipynb": notebook(),
    })
    report = collect.collect_into(course, export)
    assert "moodle names and ids of 2 students kept" in report.table()
    with Gradebook(course.db_url) as gb:
        gb.update_or_create_student("bob-smith").email = "bob@example.org"
        gb.db.commit()
    grade(course, {"anna-muller": (2, 2), "bob-smith": (2, 3)}, late={})
    return course


def test_collect_keeps_moodle_names(moodle_course):
    anna = lms.people(moodle_course.db_url)["anna-muller"]
    assert (anna.first_name, anna.last_name, anna.lms_user_id) == ("Anna", "Müller", "")


def test_moodle_roster_round_trip(moodle_course, tmp_path, capsys):
    roster = write_roster(tmp_path / "grades.txt", MOODLE_ROSTER, delimiter="\t", bom=True)
    assert cli.main(["--root", str(moodle_course.root), "export", "--format", "moodle",
                     "--template", str(roster)]) == 0
    out = capsys.readouterr().out
    path = moodle_course.reports / "moodle-grades.csv"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # as Moodle wrote it
    written = read_csv(path, delimiter="\t")
    assert len(written) == len(MOODLE_ROSTER)
    for got, want in zip(written, MOODLE_ROSTER, strict=True):
        assert got[:6] + got[7:] == want[:6] + want[7:]
    # Anna by her name (as collect derived her id), Bob by his email, Carl did not submit
    assert [row[6] for row in written] == ["Assignment: a1 (Real)", "4", "5", ""]
    assert "a1: no submission from 1: Carl Cole" in out
    assert "no roster row" not in out


def test_moodle_plain_file_needs_an_email_or_id_number(moodle_course):
    from graders.export import write_lms

    made = write_lms(moodle_course, "moodle", missing="zero")
    rows = read_csv(made.path)
    assert rows == [["First name", "Last name", "ID number", "Email address", A],
                    ["Bob", "Smith", "", "bob@example.org", "5"]]
    assert made.left_out == ["anna-muller"]
    assert "left out, no way to identify them in moodle (1): anna-muller" in made.summary()


def test_collect_without_a_gradebook_says_identities_were_not_kept(tmp_path):
    root = tmp_path / "course"
    (root / "source" / A).mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    nbformat.write(new_notebook(), str(root / "source" / A / f"{A}.ipynb"))
    export = zip_of(tmp_path / "c.zip", {"doejane_111_222_a1.ipynb": notebook()})
    report = collect.collect_into(Course(root), export)
    assert "not kept: no gradebook yet" in report.table()
    assert not (root / "gradebook.db").exists()
