"""graders.submitted: links and special files in a submission folder never reach the grading
(unit tests), and a submission made of links gains nothing and reads nothing, with
``graders autograde`` and with plain ``nbgrader autograde`` (slow)."""

from __future__ import annotations

import copy
import json
import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell
from tinycourse import ASSIGNMENT, SECRET, copy_course, submission, tiny_released

from graders import parallel, submitted
from graders.status import FLAGGED, GRADED, REFUSED

__all__ = ["tiny_released"]  # a fixture
pytestmark = pytest.mark.xdist_group("submitted")  # one worker computes the module's fixtures

# prints every file of the kernel's folder (and below): what a link would have brought in
_READ_ALL = """\
import os
for _root, _dirs, _files in os.walk("."):
    for _name in _files:
        try:
            with open(os.path.join(_root, _name), "rb") as _f:
                print(_name, _f.read().decode("latin-1"))
        except OSError as _err:
            print(_name, _err)
"""


def _odd_folder(folder, course_root):
    """A submission folder with every kind of entry that is not the student's own file."""
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "mine.txt").write_text("my own data")
    os.symlink("../../../gradebook.db", folder / "leak.db")  # lands in the (scratch) course
    os.symlink(course_root / "gradebook.db", folder / "data" / "abs.db")
    os.symlink(course_root / "source", folder / "source-dir")
    os.symlink("nowhere", folder / "dangling")
    os.mkfifo(folder / "pipe")


def test_odd_entries_are_found_without_following_links_and_left_out_of_a_copy(tmp_path):
    src = tmp_path / "sub"
    (tmp_path / "gradebook.db").write_text("secret")
    (tmp_path / "source").mkdir()
    _odd_folder(src, tmp_path)
    assert submitted.odd_entries(src) == {
        "dangling": "a symbolic link", "data/abs.db": "a symbolic link", "leak.db":
        "a symbolic link", "pipe": "a FIFO", "source-dir": "a symbolic link"}
    dropped = submitted.copy_folder(src, tmp_path / "copy")
    assert set(dropped) == set(submitted.odd_entries(src))
    kept = sorted(p.relative_to(tmp_path / "copy").as_posix()
                  for p in (tmp_path / "copy").rglob("*"))
    assert kept == ["data", "data/mine.txt"]
    assert submitted.notebook_problem(src / "leak.db").startswith("leak.db is a symbolic link")
    assert submitted.notebook_problem(src / "pipe") == (
        "pipe is a FIFO, not a file: submit the notebook itself")
    assert submitted.notebook_problem(src / "data" / "mine.txt") is None
    assert submitted.notebook_problem(src / "absent.ipynb") is None  # missing: said elsewhere


def test_files_past_the_size_limits_are_left_out_and_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(submitted, "MAX_FILE_BYTES", 1000)
    monkeypatch.setattr(submitted, "MAX_FOLDER_BYTES", 2500)
    monkeypatch.setattr(submitted, "MAX_ENTRIES", 12)
    src = tmp_path / "sub"
    (src / "data").mkdir(parents=True)
    (src / "z.ipynb").write_bytes(b"n" * 900)  # notebooks at the top count first
    for name in ("a.bin", "b.bin"):
        (src / "data" / name).write_bytes(b"d" * 900)
    with open(src / "data" / "huge.bin", "wb") as fh:
        fh.truncate(10**12)  # sparse: nothing is written, nothing may be read or copied
    (src / "many").mkdir()
    for i in range(10):
        (src / "many" / f"{i}.txt").write_text("x")
    left_out = submitted.odd_entries(src)
    assert left_out["data/huge.bin"] == "a file of 1,000,000 MB, over the 1 kB limit for one file"
    assert left_out["data/b.bin"].startswith("a file past the 2 kB")
    assert "data/a.bin" not in left_out and "z.ipynb" not in left_out
    # entries: z.ipynb, data, many, data's 3 files, many/0.txt ... many/5.txt: 12
    assert [p for p in left_out if p.startswith("many/")] == [f"many/{i}.txt" for i in range(6, 10)]
    assert all("one entry too many" in left_out[f"many/{i}.txt"] for i in range(6, 10))
    submitted.copy_folder(src, tmp_path / "copy")
    assert sorted(p.relative_to(tmp_path / "copy").as_posix() for p in
                  (tmp_path / "copy").rglob("*") if p.is_file()) == [
        "data/a.bin", *[f"many/{i}.txt" for i in range(6)], "z.ipynb"]
    flags = submitted.flags(src / "z.ipynb", tmp_path / "none.ipynb")
    assert len(flags) == submitted.FLAGGED_ENTRIES + 1 and flags[-1] == (
        f"flagged: {len(left_out) - submitted.FLAGGED_ENTRIES} more entries in the submission "
        "were left out of the grading")
    with open(src / "big.ipynb", "wb") as fh:
        fh.truncate(5000)
    assert submitted.notebook_problem(src / "big.ipynb") == (
        "big.ipynb is 5 kB, over the 1 kB limit: clear its outputs (Kernel > Restart Kernel "
        "and Clear All Outputs), save it and submit it again")


def _submit_linked_class(course):
    """A notebook that is a link to the instructor's, a stub that reads what links bring in,
    and a correct notebook beside a FIFO and a dangling link."""
    linked = course.submission_path("linked", ASSIGNMENT)
    linked.parent.mkdir(parents=True)
    os.symlink(f"../../../source/{ASSIGNMENT}/{ASSIGNMENT}.ipynb", linked)
    stub = submission(course, unsolved=("add", "mul", "square"))
    stub.cells.append(new_code_cell(_READ_ALL))
    folder = course.submit("reader", ASSIGNMENT, stub).parent
    _odd_folder(folder, course.root)
    correct = course.submit("honest", ASSIGNMENT, submission(course)).parent
    os.mkfifo(correct / "pipe")
    os.symlink("nowhere", correct / "dangling")
    # half an emoji (a lone surrogate: valid JSON, no UTF-8 can write it) in a correct notebook
    cut = submission(course)
    cut.cells.append(new_markdown_cell("my notes CUT-HERE"))
    path = course.submit("cut-emoji", ASSIGNMENT, cut)
    path.write_text(path.read_text().replace("CUT-HERE", "\\ud83d"))  # JSON's escape for it
    # sizes: a correct notebook beside a 1 TB (sparse) file; a notebook over the limit
    huge = course.submit("huge-file", ASSIGNMENT, submission(course)).parent
    with open(huge / "weights.bin", "wb") as fh:
        fh.truncate(10**12)
    big = course.submission_path("huge-notebook", ASSIGNMENT)
    big.parent.mkdir(parents=True)
    with open(big, "wb") as fh:
        fh.truncate(submitted.MAX_FILE_BYTES + 1)


def _submit_shadowing(course):
    """A correct notebook whose folder holds modules named like what a kernel imports while
    it starts (they ran before the agent, and in a kernel started ahead before its own run),
    and a module of the student's own that a solution imports (that still works)."""
    nb = submission(course)
    _cell(nb, "add").source = "from mine import add"
    folder = course.submit("shadowing", ASSIGNMENT, nb).parent
    for shadow in ("ipykernel_launcher.py", "zmq.py", "traitlets.py"):
        (folder / shadow).write_text("import os\nos._exit(3)\n")
    (folder / "mine.py").write_text("def add(a, b):\n    return a + b\n")


def _outputs(course, student):
    nb = nbformat.read(str(course.autograded_path(student, ASSIGNMENT)), as_version=4)
    return "\n".join(json.dumps(c.get("outputs", [])) for c in nb.cells)


@pytest.fixture(scope="module")
def by_graders(tiny_released, tmp_path_factory):
    """One ``graders autograde`` run of a class with every case of this module."""
    course = copy_course(tiny_released, tmp_path_factory.mktemp("graders") / "course")
    _submit_linked_class(course)
    for how in EDITS:
        course.submit(how, ASSIGNMENT, _edited(course, how))
    _submit_shadowing(course)
    settings = parallel.Settings(workers=2, cell_timeout=20, progress=False)
    results = parallel.autograde(course, parallel.select_jobs(course, [ASSIGNMENT]), settings)
    return course, {r.student: r for r in results}


@pytest.fixture(scope="module")
def by_nbgrader(tiny_released, tmp_path_factory):
    """One plain ``nbgrader autograde`` run of a class with every case nbgrader can take (a
    FIFO stops nbgrader's own copy)."""
    course = copy_course(tiny_released, tmp_path_factory.mktemp("nbgrader") / "course")
    stub = submission(course, unsolved=("add", "mul", "square"))
    stub.cells.append(new_code_cell(_READ_ALL))
    folder = course.submit("reader", ASSIGNMENT, stub).parent
    (folder / "data").mkdir()
    (folder / "data" / "mine.txt").write_text("my own data")
    os.symlink("../../../gradebook.db", folder / "leak.db")
    os.symlink(course.root / "gradebook.db", folder / "data" / "abs.db")
    for how in EDITS:
        course.submit(how, ASSIGNMENT, _edited(course, how))
    _submit_shadowing(course)
    course.autograde(ASSIGNMENT)
    return course, course.grades(ASSIGNMENT)


@pytest.mark.slow
def test_links_in_a_submission_gain_nothing_and_read_nothing(by_graders):
    course, by = by_graders
    assert by["linked"].status == REFUSED and "symbolic link" in by["linked"].reason
    assert by["linked"].score == 0
    reader = by["reader"]
    assert reader.status == FLAGGED and reader.score == 0, reader.reason
    assert any("leak.db in the submission is a symbolic link" in f for f in reader.flags)
    assert any("pipe in the submission is a FIFO" in f for f in reader.flags)
    printed = _outputs(course, "reader")
    assert "my own data" in printed  # the cell ran and read the student's own files
    assert SECRET not in printed and "leak.db" not in printed
    assert not (course.folder("autograded", "reader", ASSIGNMENT) / "leak.db").exists()
    assert by["honest"].score == 6 and by["honest"].status == FLAGGED  # flagged, not failed


@pytest.mark.slow
def test_half_an_emoji_in_a_correct_notebook_loses_nothing(by_graders):
    course, by = by_graders
    assert "\\ud83d" in course.submission_path("cut-emoji", ASSIGNMENT).read_text()
    assert (by["cut-emoji"].score, by["cut-emoji"].status) == (6, GRADED), by["cut-emoji"].reason


@pytest.mark.slow
def test_a_submission_too_large_is_refused_or_left_out_with_a_reason(by_graders):
    course, by = by_graders
    assert by["huge-notebook"].status == REFUSED, by["huge-notebook"]
    assert "over the 102 MB limit: clear its outputs" in by["huge-notebook"].reason
    huge = by["huge-file"]
    assert (huge.score, huge.status) == (6, FLAGGED), huge.reason
    assert huge.flags == ["flagged: weights.bin in the submission is a file of 1,000,000 MB, "
                          "over the 102 MB limit for one file: left out of the grading"]
    assert not (course.folder("autograded", "huge-file", ASSIGNMENT) / "weights.bin").exists()


@pytest.mark.slow
def test_plain_nbgrader_leaves_out_what_links_brought_in(by_nbgrader):
    course, _ = by_nbgrader
    printed = _outputs(course, "reader")
    assert "my own data" in printed
    assert SECRET not in printed and "abs.db" not in printed


# ------------------------------------------------------------------ nbgrader metadata edited
def _cell(nb, gid):
    return next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get(
        "grade_id") == gid)


def _edited(course, how):
    """The reference (or, for ``points``, the stub) with its nbgrader metadata edited."""
    nb = submission(course, unsolved=("add", "mul", "square") if how == "points" else ())
    if how == "dup-solution":  # Jupyter's duplicate keeps the metadata
        nb.cells.insert(nb.cells.index(_cell(nb, "add")), copy.deepcopy(_cell(nb, "add")))
    elif how == "dup-test":
        nb.cells.append(copy.deepcopy(_cell(nb, "test_mul")))
    elif how == "foreign":  # pasted from another assignment's notebook
        nb.cells.append(new_code_cell("def relu(x):\n    return max(x, 0)", metadata={
            "nbgrader": {"grade_id": "relu_forward", "solution": True, "grade": False,
                         "locked": False, "schema_version": 3}}))
    elif how == "flags":
        _cell(nb, "test_add").metadata.nbgrader.update(grade=False, schema_version=99)
        _cell(nb, "mul").metadata["nbgrader"] = "solution"
    elif how == "points":  # a stub's solution cell claims to be a 100-point test
        _cell(nb, "add").metadata.nbgrader.update(grade=True, points=100, locked=True)
    elif how == "stripped":  # the code pasted into a new notebook: no nbgrader metadata
        for cell in nb.cells:
            cell.metadata.pop("nbgrader", None)
    elif how == "colab":
        nb = _saved_by_colab(nb)
    return nb


def _saved_by_colab(nb):
    """``nb`` as Colab saves it: nbformat 4.0 without cell ids (Colab keeps its own in the
    metadata), Colab's notebook metadata, outputs, and the install cell the release notebook
    tells a Colab student to add first."""
    nb = copy.deepcopy(nb)
    install = new_code_cell('!pip install -q "dlworkshop @ git+https://github.com/uni/dl@main"\n'
                            "try:\n    from google.colab import drive\n"
                            "    drive.mount('/content/drive')\nexcept ImportError:\n    pass")
    nb.cells.insert(0, install)
    nb.nbformat_minor = 0
    nb.metadata = nbformat.from_dict({
        "colab": {"provenance": [], "gpuType": "T4"}, "accelerator": "GPU",
        "kernelspec": {"name": "python3", "display_name": "Python 3"},
        "language_info": {"name": "python"}})
    for i, cell in enumerate(nb.cells):
        cell.pop("id", None)
        cell.metadata["id"] = f"c0lab{i:04d}"
        if cell.cell_type == "code":
            cell.metadata["colab"] = {"base_uri": "https://localhost:8080/"}
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
            cell.execution_count = i
    return nb


EDITS = {"dup-solution": 6, "dup-test": 6, "foreign": 6, "flags": 6, "points": 0,
         "stripped": 6, "colab": 6}


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["graders", "nbgrader"])
def test_modules_in_a_submission_never_run_before_the_agent(runner, request):
    _, grades = request.getfixturevalue(f"by_{runner}")
    assert grades["shadowing"].score == 6, grades["shadowing"]


@pytest.mark.slow
def test_a_notebook_saved_by_colab_is_graded_in_full_and_not_flagged(by_graders):
    """Colab's file format, and the install line the release notebook tells a Colab student to
    run, are not a reason for the instructor to look (a Colab class was all flagged)."""
    _, grades = by_graders
    assert (grades["colab"].score, grades["colab"].status) == (6, GRADED), grades["colab"].reason


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["graders", "nbgrader"])
def test_edited_nbgrader_metadata_is_the_instructors_again(runner, request):
    """Copy and paste, cells from another notebook and edited flags neither crash the grading
    (a correct notebook scored 0) nor gain points: each cell gets the instructor's metadata."""
    _, grades = request.getfixturevalue(f"by_{runner}")
    got = {how: (grades[how].score, grades[how].max_score) for how in EDITS}
    reasons = {how: grades[how].reason for how in EDITS}
    assert got == {how: (score, 6) for how, score in EDITS.items()}, reasons
    if runner == "graders":  # the instructor is told which test cells the grader put back
        assert grades["stripped"].status == FLAGGED
        assert reasons["stripped"] == (
            "flagged: the test cells test_add, test_mul, test_square are missing from the "
            "submission (put back and run by the grader)")
