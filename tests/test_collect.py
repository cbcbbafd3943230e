"""``collect``: submissions from folders and Moodle/Canvas zips into submitted/ (no grading)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from graders import cli
from graders.collect import (
    REFUSED,
    RENAMED,
    SKIPPED,
    TAKEN,
    CollectError,
    collect,
    match_name,
    sanitise_student_id,
)

ASSIGNMENTS = ["01_dnn", "02_cnn", "03_transfer_learning"]
IDS = {a: {f"{a}-task", f"{a}-test1", f"{a}-test2"} for a in ASSIGNMENTS}


def notebook_bytes(assignment: str | None, marker: str = "") -> bytes:
    """A valid notebook carrying ``assignment``'s grade ids (none for None); ``marker`` makes
    its bytes unique."""
    cells = [new_code_cell(f"# {marker}")]
    for gid in sorted(IDS.get(assignment, ())):
        cells.append(new_code_cell("pass", metadata={"nbgrader": {"grade_id": gid}}))
    for i, cell in enumerate(cells):
        cell.id = f"cell-{i}"  # deterministic bytes
    return nbformat.writes(new_notebook(cells=cells)).encode()


def put(root: Path, rel: str, data: bytes, mtime: float | None = None) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def by_origin(report) -> dict:
    return {o.origin: o for o in report.outcomes}


def test_student_ids_are_sanitised_for_nbgrader():
    assert sanitise_student_id("Émile Zola") == "emile-zola"
    assert sanitise_student_id("  O'Brien, Seán ") == "o-brien-sean"
    assert sanitise_student_id("ab*c?[d]") == "ab-c-d"  # no glob characters
    assert sanitise_student_id("12345") == "s12345"  # nbgrader reads numeric ids as numbers
    assert sanitise_student_id("../..") == ""
    assert sanitise_student_id("jdoe_2.x") == "jdoe_2.x"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("01_dnn.ipynb", "01_dnn"),
        ("Copy of 01_dnn.ipynb", "01_dnn"),
        ("03_transfer_learning (1).ipynb", "03_transfer_learning"),
        ("02_cnn-Copy1.ipynb", "02_cnn"),
        ("01_dnn-2.ipynb", "01_dnn"),
        ("01_DNN_final.ipynb", "01_dnn"),
        ("homework.ipynb", None),
        ("01_dnn_and_02_cnn.ipynb", None),  # two assignments named: ambiguous
    ],
)
def test_file_names_are_matched_to_assignments(filename, expected):
    assert match_name(filename, ASSIGNMENTS) == expected


def test_folder_layout_takes_renames_and_refuses_with_reasons(tmp_path):
    src, submitted = tmp_path / "in", tmp_path / "course" / "submitted"
    files = {
        "alice/01_dnn.ipynb": notebook_bytes("01_dnn", "alice"),
        "bob/02_cnn/02_cnn.ipynb": notebook_bytes("02_cnn", "bob"),
        "carol/Copy of 01_dnn.ipynb": notebook_bytes("01_dnn", "carol"),
        "dave/03_transfer_learning (1).ipynb": notebook_bytes("03_transfer_learning", "dave"),
        "Émile Zola/02_cnn/my work.ipynb": notebook_bytes("02_cnn", "emile"),
        "ivan/homework.ipynb": notebook_bytes("01_dnn", "ivan"),  # matched by its grade ids
        "erin/01_dnn.pdf": b"%PDF-1.4",
        "frank/01_dnn.ipynb": b'{"cells": [',  # truncated JSON
        # nested past the parser's recursion limit: once stopped the whole class's collection
        "aaron/01_dnn.ipynb": b"[" * 200_000 + b"]" * 200_000,
        "aaron/homework.ipynb": b"[" * 200_000 + b"]" * 200_000,
        "gina/02_cnn.ipynb": b'{"cells": 5, "nbformat": 4}',  # JSON, not a notebook
        "hank/homework.ipynb": notebook_bytes(None, "hank"),
        "kim/01_dnn/01_dnn.ipynb": notebook_bytes("01_dnn", "kim"),
        "kim/01_dnn/scratch.ipynb": notebook_bytes(None, "kim scratch"),
        "kim/01_dnn/.ipynb_checkpoints/01_dnn-checkpoint.ipynb": notebook_bytes("01_dnn", "old"),
    }
    for rel, data in files.items():
        put(src, rel, data)
    put(src, "judy/01_dnn.ipynb", notebook_bytes("01_dnn", "judy old"), mtime=1_700_000_000)
    put(src, "judy/01_dnn (1).ipynb", notebook_bytes("01_dnn", "judy new"), mtime=1_700_000_100)

    report = collect(src, submitted, ASSIGNMENTS, IDS)
    got = by_origin(report)

    expect = {
        "alice/01_dnn.ipynb": (TAKEN, "alice", "01_dnn"),
        "bob/02_cnn/02_cnn.ipynb": (TAKEN, "bob", "02_cnn"),
        "carol/Copy of 01_dnn.ipynb": (RENAMED, "carol", "01_dnn"),
        "dave/03_transfer_learning (1).ipynb": (RENAMED, "dave", "03_transfer_learning"),
        "Émile Zola/02_cnn/my work.ipynb": (RENAMED, "emile-zola", "02_cnn"),
        "ivan/homework.ipynb": (RENAMED, "ivan", "01_dnn"),
        "judy/01_dnn (1).ipynb": (RENAMED, "judy", "01_dnn"),
        "judy/01_dnn.ipynb": (REFUSED, "judy", "01_dnn"),
        "kim/01_dnn/01_dnn.ipynb": (TAKEN, "kim", "01_dnn"),
        "kim/01_dnn/scratch.ipynb": (REFUSED, "kim", "01_dnn"),
    }
    for origin, (status, student, assignment) in expect.items():
        o = got[origin]
        assert (o.status, o.student, o.assignment) == (status, student, assignment), o
    reasons = {
        "erin/01_dnn.pdf": "not a notebook",
        "frank/01_dnn.ipynb": "corrupt JSON",
        "aaron/01_dnn.ipynb": "corrupt JSON",
        "aaron/homework.ipynb": "cannot match",
        "gina/02_cnn.ipynb": "not a valid notebook",
        "hank/homework.ipynb": "cannot match",
        "judy/01_dnn.ipynb": "duplicate: older than judy/01_dnn (1).ipynb",
        "kim/01_dnn/scratch.ipynb": "not named 01_dnn.ipynb",
    }
    for origin, reason in reasons.items():
        assert got[origin].status == REFUSED and reason in got[origin].reason, got[origin]
    assert not any("checkpoint" in o for o in got), "checkpoint folders are ignored"
    assert report.exit_code == 1

    # written exactly where nbgrader looks, with the student's bytes, and nothing else
    written = {p.relative_to(submitted).as_posix(): p.read_bytes()
               for p in submitted.rglob("*") if p.is_file()}
    assert written == {
        "alice/01_dnn/01_dnn.ipynb": files["alice/01_dnn.ipynb"],
        "bob/02_cnn/02_cnn.ipynb": files["bob/02_cnn/02_cnn.ipynb"],
        "carol/01_dnn/01_dnn.ipynb": files["carol/Copy of 01_dnn.ipynb"],
        "dave/03_transfer_learning/03_transfer_learning.ipynb":
            files["dave/03_transfer_learning (1).ipynb"],
        "emile-zola/02_cnn/02_cnn.ipynb": files["Émile Zola/02_cnn/my work.ipynb"],
        "ivan/01_dnn/01_dnn.ipynb": files["ivan/homework.ipynb"],
        "judy/01_dnn/01_dnn.ipynb": notebook_bytes("01_dnn", "judy new"),
        "kim/01_dnn/01_dnn.ipynb": files["kim/01_dnn/01_dnn.ipynb"],
    }

    # collecting again changes nothing and says so; a changed file replaces the old copy
    put(src, "alice/01_dnn.ipynb", notebook_bytes("01_dnn", "alice v2"))
    again = by_origin(collect(src, submitted, ASSIGNMENTS, IDS))
    assert again["bob/02_cnn/02_cnn.ipynb"].status == SKIPPED
    assert again["carol/Copy of 01_dnn.ipynb"].status == SKIPPED
    assert again["alice/01_dnn.ipynb"].status == TAKEN
    assert "replaced" in again["alice/01_dnn.ipynb"].reason
    assert (submitted / "alice/01_dnn/01_dnn.ipynb").read_bytes() == notebook_bytes(
        "01_dnn", "alice v2"
    )


def test_duplicates_with_the_same_time_are_all_refused(tmp_path):
    src, submitted = tmp_path / "in", tmp_path / "submitted"
    put(src, "zoe/01_dnn.ipynb", notebook_bytes("01_dnn", "a"), mtime=1_700_000_000)
    put(src, "zoe/Copy of 01_dnn.ipynb", notebook_bytes("01_dnn", "b"), mtime=1_700_000_000)
    report = collect(src, submitted, ASSIGNMENTS, IDS)
    assert [o.status for o in report.outcomes] == [REFUSED, REFUSED]
    assert all("cannot tell the newest" in o.reason for o in report.outcomes)
    assert not submitted.exists()


def test_newest_file_counts_even_when_broken(tmp_path):
    src, submitted = tmp_path / "in", tmp_path / "submitted"
    put(src, "zoe/01_dnn.ipynb", notebook_bytes("01_dnn", "good"), mtime=1_700_000_000)
    put(src, "zoe/01_dnn (1).ipynb", b"not json", mtime=1_700_000_100)
    got = by_origin(collect(src, submitted, ASSIGNMENTS, IDS))
    assert "corrupt" in got["zoe/01_dnn (1).ipynb"].reason
    assert "older than" in got["zoe/01_dnn.ipynb"].reason
    assert not submitted.exists()


def write_zip(path: Path, members: dict[str, bytes], when=(2024, 5, 1, 12, 0, 0)) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=when), data)
    return path


def test_moodle_export(tmp_path):
    submitted = tmp_path / "submitted"
    export = write_zip(tmp_path / "moodle.zip", {
        "Anna Müller_12345_assignsubmission_file_/01_dnn.ipynb": notebook_bytes("01_dnn", "a"),
        "Bob Smith_222_assignsubmission_file_/Copy of 02_cnn.ipynb": notebook_bytes("02_cnn"),
        "Bob Smith_222_assignsubmission_onlinetext_/onlinetext.html": b"<p>hi</p>",
        "Same Name_1_assignsubmission_file_/01_dnn.ipynb": notebook_bytes("01_dnn", "one"),
        "Same Name_2_assignsubmission_file_/01_dnn.ipynb": notebook_bytes("01_dnn", "two"),
        "__MACOSX/._junk": b"\0",
    })
    got = by_origin(collect(export, submitted, ASSIGNMENTS, IDS))
    anna = got["Anna Müller_12345_assignsubmission_file_/01_dnn.ipynb"]
    assert (anna.status, anna.student, anna.assignment) == (TAKEN, "anna-muller", "01_dnn")
    bob = got["Bob Smith_222_assignsubmission_file_/Copy of 02_cnn.ipynb"]
    assert (bob.status, bob.student, bob.assignment) == (RENAMED, "bob-smith", "02_cnn")
    text = got["Bob Smith_222_assignsubmission_onlinetext_/onlinetext.html"]
    assert text.status == REFUSED and "not a notebook" in text.reason
    for n in (1, 2):
        same = got[f"Same Name_{n}_assignsubmission_file_/01_dnn.ipynb"]
        assert same.status == REFUSED and "2 participants share" in same.reason
    assert not any(k.startswith("__MACOSX") for k in got)
    assert sorted(p.relative_to(submitted).as_posix() for p in submitted.rglob("*.ipynb")) == [
        "anna-muller/01_dnn/01_dnn.ipynb", "bob-smith/02_cnn/02_cnn.ipynb"]
    assert (submitted / "anna-muller/01_dnn/01_dnn.ipynb").read_bytes() == notebook_bytes(
        "01_dnn", "a")


def test_canvas_export_and_assignment_filter(tmp_path):
    submitted = tmp_path / "submitted"
    export = write_zip(tmp_path / "canvas.zip", {
        "smithjohn_12345_67890_01_dnn.ipynb": notebook_bytes("01_dnn", "john"),
        "doejane_LATE_111_222_01_dnn-1.ipynb": notebook_bytes("01_dnn", "jane"),
        "doejane_111_333_02_cnn.ipynb": notebook_bytes("02_cnn", "jane"),
        "4711_5_6_01_dnn.ipynb": notebook_bytes("01_dnn", "numeric"),
        "readme.txt": b"a file outside every layout",
    })
    report = collect(export, submitted, ASSIGNMENTS, IDS, only="01_dnn")
    got = by_origin(report)
    assert (got["smithjohn_12345_67890_01_dnn.ipynb"].status,
            got["smithjohn_12345_67890_01_dnn.ipynb"].student) == (TAKEN, "smithjohn")
    jane = got["doejane_LATE_111_222_01_dnn-1.ipynb"]
    assert (jane.status, jane.student, jane.assignment) == (RENAMED, "doejane", "01_dnn")
    assert got["4711_5_6_01_dnn.ipynb"].student == "s4711"
    assert "not in a known layout" in got["readme.txt"].reason
    assert "doejane_111_333_02_cnn.ipynb" not in got  # other assignment: left alone
    assert not (submitted / "doejane" / "02_cnn").exists()
    assert (submitted / "doejane/01_dnn/01_dnn.ipynb").is_file()


def test_zip_slip_never_writes_outside_submitted(tmp_path):
    course = tmp_path / "course"
    submitted = course / "submitted"
    export = write_zip(tmp_path / "evil.zip", {
        "../../evil/01_dnn.ipynb": notebook_bytes("01_dnn"),
        "/abs/01_dnn.ipynb": notebook_bytes("01_dnn"),
        "../x_1_assignsubmission_file_/01_dnn.ipynb": notebook_bytes("01_dnn"),
        "../01_dnn/01_dnn.ipynb": notebook_bytes("01_dnn"),
        "..\\..\\win_1_2_01_dnn.ipynb": notebook_bytes("01_dnn"),
        "ok/01_dnn.ipynb": notebook_bytes("01_dnn", "ok"),
    })
    report = collect(export, submitted, ASSIGNMENTS, IDS)
    refused = [o for o in report.outcomes if o.status == REFUSED]
    assert len(refused) == 5
    assert all("unsafe path" in o.reason for o in refused)
    everything = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
                        if p.is_file())
    assert everything == ["course/submitted/ok/01_dnn/01_dnn.ipynb", "evil.zip"]


def test_cli_collect_prints_a_table_and_exits_1_on_refusals(tmp_path, capsys):
    root = tmp_path / "course"
    for a in ASSIGNMENTS[:2]:
        nb = nbformat.reads(notebook_bytes(a).decode(), as_version=4)
        (root / "source" / a).mkdir(parents=True)
        nbformat.write(nb, str(root / "source" / a / f"{a}.ipynb"))
    src = tmp_path / "in"
    put(src, "amy/homework.ipynb", notebook_bytes("02_cnn", "amy"))  # found by its grade ids
    put(src, "ben/01_dnn.ipynb", b"{")
    code = cli.main(["--root", str(root), "collect", str(src)])
    out = capsys.readouterr().out
    assert code == 1
    assert "renamed   amy" in out and "refused   ben" in out and "1 renamed" in out
    assert (root / "submitted/amy/02_cnn/02_cnn.ipynb").is_file()

    (tmp_path / "in" / "ben" / "01_dnn.ipynb").unlink()
    assert cli.main(["--root", str(root), "collect", str(src)]) == 0  # amy: skipped
    assert "1 skipped" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="does not exist"):
        cli.main(["--root", str(root), "collect", str(tmp_path / "nowhere.zip")])
    with pytest.raises(CollectError, match="neither a folder nor a zip"):
        collect(src / "amy" / "homework.ipynb", root / "submitted", ASSIGNMENTS)


def test_platform_identities_are_kept_with_the_outcomes(tmp_path):
    from graders.collect import Identity

    submitted = tmp_path / "submitted"
    moodle = write_zip(tmp_path / "moodle.zip", {
        "Anna Maria Müller_12345_assignsubmission_file_/01_dnn.ipynb": notebook_bytes("01_dnn"),
        "Bob Smith_7_assignsubmission_file_/notes.txt": b"not a notebook",
    })
    report = collect(moodle, submitted, ASSIGNMENTS, IDS)
    anna = Identity("anna-maria-muller", "moodle", "Anna Maria Müller", participant="12345")
    assert report.identities() == {"anna-maria-muller": anna}  # refused files keep none
    assert anna.names() == ("Anna Maria", "Müller")
    again = collect(moodle, submitted, ASSIGNMENTS, IDS)  # skipped as identical: still known
    assert again.identities() == {"anna-maria-muller": anna}

    canvas = write_zip(tmp_path / "canvas.zip", {
        "doejane_LATE_111_222_01_dnn.ipynb": notebook_bytes("01_dnn", "jane")})
    jane = collect(canvas, submitted, ASSIGNMENTS, IDS).identities()["doejane"]
    assert (jane.platform, jane.user_id, jane.names()) == ("canvas", "111", ("", ""))
    folder = tmp_path / "folder"
    put(folder, "kim/01_dnn.ipynb", notebook_bytes("01_dnn", "kim"))
    assert collect(folder, submitted, ASSIGNMENTS, IDS).identities() == {}
