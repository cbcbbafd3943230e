"""``export`` (gradebook CSV, failure shares, score plot) and ``release --zip``."""

from __future__ import annotations

import csv
import os
import shutil
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from graders import cli, notebooks
from graders.course import REPO_ROOT, Course
from graders.export import (
    cell_failures,
    read_gradebook,
    release_files,
    score_histogram,
    write_csv,
    zip_release,
)

# assignment -> grade cell -> max score; student -> assignment -> cell -> (auto, manual)
CELLS = {"a1": {"t1": 1.0, "t2": 2.0, "t3": 3.0}, "a2": {"u1": 5.0}}
SCORES = {
    "ann": {"a1": {"t1": (1, None), "t2": (2, None), "t3": (3, None)}, "a2": {"u1": (5, None)}},
    "ben": {"a1": {"t1": (0, None), "t2": (2, None), "t3": (0, 3)}},  # t3 regraded by hand
    "cat": {"a1": {"t1": (0, None), "t2": (0, None), "t3": (3, None)}},
    "dan": {"a2": {"u1": (0, None)}},
}


SOLUTIONS = {"a1": ("s1", "s2")}  # solution cells (where flags are kept)


@pytest.fixture(scope="module")
def gradebook_url(tmp_path_factory) -> str:
    """The gradebook of known grades, built once for this module."""
    # nbgrader runs ``alembic`` by name when it creates a gradebook
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        return make_gradebook(tmp_path_factory.mktemp("gradebook") / "gradebook.db")


def make_gradebook(path: Path) -> str:
    """A gradebook with the known grades above, built through nbgrader's API."""
    from nbgrader.api import Gradebook

    url = f"sqlite:///{path}"
    with Gradebook(url) as gb:
        for assignment, cells in CELLS.items():
            gb.add_assignment(assignment)
            gb.add_notebook(assignment, assignment)
            for name, pts in cells.items():
                gb.add_grade_cell(name, assignment, assignment, max_score=pts, cell_type="code")
            for name in SOLUTIONS.get(assignment, ()):
                gb.add_solution_cell(name, assignment, assignment)
        for student, subs in SCORES.items():
            gb.add_student(student)
            for assignment, cells in subs.items():
                gb.add_submission(assignment, student)
                for name, (auto, manual) in cells.items():
                    grade = gb.find_grade(name, assignment, assignment, student)
                    grade.auto_score, grade.manual_score = auto, manual
                    grade.needs_manual_grade = False
        gb.db.commit()
    return url


def test_gradebook_rows_csv_and_failure_shares(gradebook_url, tmp_path):
    rows = read_gradebook(gradebook_url)
    table = {(r.assignment, r.student): r for r in rows}
    assert len(rows) == 8  # every student x assignment
    assert table["a1", "ann"].score == 6 and table["a1", "ann"].max_score == 6
    assert table["a1", "ben"].score == 5  # the manual score replaces the auto score
    assert {g: c.score for g, c in table["a1", "ben"].cells.items()} == {"t1": 0, "t2": 2, "t3": 3}
    assert table["a1", "cat"].score == 3 and table["a1", "cat"].failed() == ["t1", "t2"]
    assert not table["a1", "dan"].in_gradebook and table["a1", "dan"].score == 0
    assert table["a1", "dan"].status == "missing" and table["a1", "dan"].max_score == 6
    assert table["a2", "dan"].in_gradebook and table["a2", "dan"].score == 0
    assert table["a2", "dan"].status == "graded"

    out = write_csv(rows, tmp_path / "grades.csv")
    with open(out, newline="") as fh:
        lines = list(csv.DictReader(fh))
    assert list(lines[0]) == ["assignment", "student", "submitted", "status", "reason", "score",
                              "max_score", "t1", "t2", "t3", "u1"]
    ben = next(x for x in lines if x["assignment"] == "a1" and x["student"] == "ben")
    assert (ben["score"], ben["t1"], ben["t3"], ben["u1"]) == ("5", "0", "3", "")
    dan = next(x for x in lines if x["assignment"] == "a1" and x["student"] == "dan")
    assert (dan["submitted"], dan["score"], dan["max_score"], dan["t1"]) == ("0", "0", "6", "")
    assert (dan["status"], dan["reason"]) == ("missing", "no submission in the gradebook")
    assert (ben["status"], ben["reason"]) == ("graded", "")

    shares = [(f.assignment, f.cell, f.failed, f.submitted) for f in cell_failures(rows)]
    assert shares == [("a1", "t1", 2, 3), ("a2", "u1", 1, 2), ("a1", "t2", 1, 3),
                      ("a1", "t3", 0, 3)]

    counts, edges = score_histogram(rows, "a1")
    assert edges[0] == -0.5 and edges[-1] == 6.5
    assert counts == [0, 0, 0, 1, 0, 1, 1]  # cat 3, ben 5, ann 6; dan did not submit


def test_flags_kept_in_the_gradebook_reach_the_export(gradebook_url, tmp_path):
    from graders import gradebook

    src = gradebook_url.removeprefix("sqlite:///")
    shutil.copy2(src, tmp_path / "flags.db")
    url = f"sqlite:///{tmp_path / 'flags.db'}"
    flags = ["flagged: reads IPython input history (In) at cell s2 line 3",
             "flagged: assigns to numpy.allclose at cell nowhere line 1",
             "flagged: calls exec() at cell s2 line 7"]
    gradebook.set_flags(url, "a1", "cat", flags, order=["s1", "s2"])
    cat = gradebook.read_submission(url, "a1", "cat", order=["t1", "t2", "t3", "s1", "s2"])
    assert cat.status == "flagged" and cat.reason == flags[1]  # s1 (first in order) holds it
    assert cat.flags == [flags[1], flags[0], flags[2]]  # cell order, then the scan's order
    assert cat.score == 3  # flags change no score
    from nbgrader.api import Gradebook

    with Gradebook(url) as gb:  # what nbgrader's formgrader shows
        nb = gb.find_submission_notebook("a1", "a1", "cat")
        assert nb.flagged
        assert gb.find_comment("s2", "a1", "a1", "cat").auto_comment == "\n".join(
            [flags[0], flags[2]])
    rows = read_gradebook(url, ["a1"])
    out = write_csv(rows, tmp_path / "flags.csv")
    with open(out, newline="") as fh:
        by_student = {x["student"]: x for x in csv.DictReader(fh)}
    assert (by_student["cat"]["status"], by_student["cat"]["reason"]) == ("flagged", flags[1])
    assert by_student["ann"]["status"] == "graded"
    gradebook.set_flags(url, "a1", "cat", [])  # a clean re-scan unflags
    assert gradebook.read_submission(url, "a1", "cat").status == "graded"


def test_a_status_nbgrader_has_no_column_for_reaches_the_export(gradebook_url, tmp_path):
    from graders import gradebook, kept_status

    shutil.copy2(gradebook_url.removeprefix("sqlite:///"), tmp_path / "status.db")
    url = f"sqlite:///{tmp_path / 'status.db'}"
    kept_status.set_status(url, "a1", "ann", "graded")  # nothing to keep: no table made
    assert "graders_status" not in {r[0] for r in _tables(url)}
    why = "interrupted at the cell limit: cell t2 ran past the 30 s per-cell limit"
    kept_status.set_status(url, "a1", "cat", "timed out (partial)", why)
    kept_status.set_status(url, "a1", "dan", "refused", "not a notebook: bad JSON")
    out = write_csv(read_gradebook(url), tmp_path / "status.csv")
    with open(out, newline="") as fh:
        table = {(x["assignment"], x["student"]): x for x in csv.DictReader(fh)}
    assert (table["a1", "cat"]["status"], table["a1", "cat"]["reason"]) == (
        "timed out (partial)", why)
    assert table["a1", "cat"]["score"] == "3"  # the points kept are nbgrader's rows
    assert (table["a1", "dan"]["status"], table["a1", "dan"]["submitted"]) == ("refused", "0")
    assert table["a1", "ann"]["status"] == "graded"
    before = {r.student: r.status for r in read_gradebook(gradebook_url, ["a2"])}
    assert {s: x["status"] for (a, s), x in table.items() if a == "a2"} == before  # untouched
    assert gradebook.read_grades(url, "a1")["cat"].status == "timed out (partial)"
    kept_status.set_status(url, "a1", "cat", "flagged", "flagged: ...")  # graded again: cleared
    assert gradebook.read_grades(url, "a1")["cat"].status == "graded"
    # a note of a graded run is kept and read back, after the flags of a flagged one
    note = "graded on a second run (the first crashed)"
    kept_status.set_status(url, "a1", "cat", "graded", note)
    assert (gradebook.read_grades(url, "a1")["cat"].status,
            gradebook.read_grades(url, "a1")["cat"].reason) == ("graded", note)
    gradebook.set_flags(url, "a1", "cat", ["flagged: reads In"])
    cat = gradebook.read_grades(url, "a1")["cat"]
    assert (cat.status, cat.reason) == ("flagged", f"flagged: reads In; {note}")
    gradebook.set_flags(url, "a1", "cat", [])
    kept_status.set_status(url, "a1", "cat", "graded")  # graded again without a note: cleared
    assert gradebook.read_grades(url, "a1")["cat"].reason == ""
    gradebook.remove_students(url, ["dan"])
    assert all(r.student != "dan" for r in read_gradebook(url))
    from nbgrader.api import Gradebook

    with Gradebook(url) as gb:  # a student added back starts with no status kept
        gb.add_student("dan")
    assert {r.student: r.status for r in read_gradebook(url, ["a1"])}["dan"] == "missing"


def _tables(url: str) -> list:
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        return [(name,) for name in inspect(engine).get_table_names()]
    finally:
        engine.dispose()


def test_cli_export_writes_csv_failures_and_one_histogram_per_assignment(
    gradebook_url, tmp_path, capsys
):
    import matplotlib.image

    url = gradebook_url
    root = tmp_path / "course"
    root.mkdir()
    assert cli.main(["--root", str(root), "export", "--db-url", url]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in printed[1:5]] == [
        ["a1", "t1"], ["a2", "u1"], ["a1", "t2"], ["a1", "t3"]]
    assert "2 / 3" in printed[1] and "67%" in printed[1]
    with open(root / "reports" / "cell_failures.csv", newline="") as fh:
        failures = list(csv.DictReader(fh))
    assert [(f["cell"], f["failed_share"]) for f in failures] == [
        ("t1", "0.667"), ("u1", "0.500"), ("t2", "0.333"), ("t3", "0.000")]
    with open(root / "reports" / "gradebook.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 8
    png = matplotlib.image.imread(root / "reports" / "score_distribution.png")
    one = matplotlib.image.imread(_plot_one(tmp_path, url))
    assert png.shape[1] == 2 * one.shape[1]  # two assignments: two panels side by side

    assert cli.main(["--root", str(root), "export", "a1", "--db-url", url,
                     "--csv", str(tmp_path / "a1.csv")]) == 0
    with open(tmp_path / "a1.csv", newline="") as fh:
        assert {x["assignment"] for x in csv.DictReader(fh)} == {"a1"}
    with pytest.raises(SystemExit, match="not in the gradebook"):
        cli.main(["--root", str(root), "export", "a9", "--db-url", url])
    with pytest.raises(SystemExit, match="no gradebook at"):
        cli.main(["--root", str(root), "export"])  # <root>/gradebook.db does not exist
    assert not (root / "gradebook.db").exists()


def _plot_one(tmp_path: Path, url: str) -> Path:
    from graders.export import plot_distribution

    return plot_distribution(read_gradebook(url, ["a2"]), tmp_path / "one.png")


# ---------------------------------------------------------------------------- release --zip
HIDDEN_LINE = "assert double(21) == 42  # hidden-7c1e"
SOLUTION_LINE = "return 2 * x  # solution-5b2d"


def _toy_course(root: Path) -> Course:
    """A course whose one assignment ``toy`` has a solution, a hidden test and a data file."""
    root.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    folder = root / "source" / "toy"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "numbers.csv").write_text("x\n1\n2\n")
    meta = {"grade_id": "double", "solution": True, "grade": False, "locked": False,
            "schema_version": 3}
    test = {"grade_id": "test_double", "solution": False, "grade": True, "locked": True,
            "points": 1, "schema_version": 3}
    nb = new_notebook(cells=[
        new_code_cell(f"def double(x):\n    ### BEGIN SOLUTION\n    {SOLUTION_LINE}\n"
                      "    ### END SOLUTION", metadata={"nbgrader": meta}),
        new_code_cell("assert double(1) == 2\n### BEGIN HIDDEN TESTS\n"
                      f"{HIDDEN_LINE}\n### END HIDDEN TESTS", metadata={"nbgrader": test}),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, str(folder / "toy.ipynb"))
    return Course(root)


def test_release_zip_holds_the_release_files_only(tmp_path, capsys):
    course = _toy_course(tmp_path / "course")
    assert cli.main(["--root", str(course.root), "release", "toy", "--zip"]) == 0
    assert "reports/release/toy.zip" in capsys.readouterr().out
    with zipfile.ZipFile(course.root / "reports" / "release" / "toy.zip") as zf:
        names = sorted(zf.namelist())
        contents = {n: zf.read(n) for n in names}
    assert names == ["toy/data/numbers.csv", "toy/toy.ipynb"]
    assert contents["toy/toy.ipynb"] == course.release_path("toy").read_bytes()
    assert contents["toy/data/numbers.csv"] == b"x\n1\n2\n"
    everything = b"".join(contents.values())
    for secret in (HIDDEN_LINE, SOLUTION_LINE, "BEGIN HIDDEN TESTS", "BEGIN SOLUTION"):
        assert secret.encode() not in everything
    assert b"assert double(1) == 2" in everything  # the visible test is there


@pytest.mark.xdist_group("nbgrader")
def test_release_zip_of_every_real_assignment(released, tmp_path):
    for assignment in released.assignments():
        out = zip_release(released, assignment, dest_dir=tmp_path)
        folder = released.root / "release" / assignment
        expected = sorted(p.relative_to(folder.parent).as_posix() for p in folder.rglob("*")
                          if p.is_file() and ".ipynb_checkpoints" not in p.parts
                          and "__pycache__" not in p.parts)
        assert [p.as_posix() for p in release_files(released, assignment)] == expected
        with zipfile.ZipFile(out) as zf:
            assert sorted(zf.namelist()) == expected
            zipped = nbformat.reads(zf.read(f"{assignment}/{assignment}.ipynb").decode(), 4)
        text = "\n".join(c.source for c in zipped.cells)
        source = notebooks.read(released.source_path(assignment))
        release_text = folder.joinpath(f"{assignment}.ipynb").read_text()
        hidden = {line.strip() for c in notebooks.test_cells(source)
                  for line in notebooks.hidden_test_lines(c.source)} - {""}
        secret = {h for h in hidden if h not in release_text}
        assert secret, "the check needs hidden lines to look for"
        assert not [h for h in secret if h in text]
        assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text


def test_lms_files_hold_every_assignment_and_the_missing_rule(gradebook_url, tmp_path):
    from graders.export import write_lms

    root = tmp_path / "course"
    root.mkdir()
    course = Course(root, db_url=gradebook_url)
    canvas = write_lms(course, "canvas", missing="zero")
    with open(canvas.path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "a1", "a2"]
    assert rows[1][0] == "Points Possible" and rows[1][5:] == ["6", "5"]
    assert {r[0]: r[5:] for r in rows[2:]} == {
        "ann": ["6", "5"], "ben": ["5", "0"], "cat": ["3", "0"], "dan": ["0", "0"]}
    assert canvas.no_submission == {"a1": ["dan"], "a2": ["ben", "cat"]}
    empty = write_lms(course, "canvas", ["a2"], out=tmp_path / "a2.csv")
    with open(empty.path, newline="") as fh:
        assert {r[0]: r[5] for r in list(csv.reader(fh))[2:]} == {
            "ann": "5", "ben": "", "cat": "", "dan": "0"}
    with pytest.raises(SystemExit, match="not in the gradebook"):
        write_lms(course, "moodle", ["a9"])
