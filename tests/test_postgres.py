"""A PostgreSQL gradebook (a real server on loopback, see tests/pgserver.py): released into,
graded as two independent shard runs of ``python -m graders --db-url URL autograde --shard K/2``
running at the same time, equal to a serial SQLite grading of the same submissions; then the
rest of the multi-machine recipe with the same flag: ``feedback`` for every student, ``grades``,
``export`` (the same recipe with the URL in the course's config: tests/test_recipe.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import gradebook_rows as rows
import pytest
from pgserver import postgres_server  # noqa: F401  (fixture)

from graders.course import REPO_ROOT, Course
from graders.shards import select_shard

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tinycourse")]
A = rows.ASSIGNMENT


def _postgres_course(serial: Course, root, url: str) -> Course:
    """The tiny course released into ``url`` with the same submissions as ``serial``."""
    root.mkdir()
    shutil.copy2(serial.root / "nbgrader_config.py", root / "nbgrader_config.py")
    for name in ("source", "submitted"):
        shutil.copytree(serial.root / name, root / name)
    course = Course(root, db_url=url)
    course.generate_release(A)
    assert not (root / "gradebook.db").exists()  # every nbgrader command used the URL
    return course


def _shard_run(course: Course, shard: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "graders", "--root", str(course.root), "--db-url", course.db_url,
           "autograde", A, "--shard", shard, "--workers", "1"]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_two_shards_graded_into_postgres_equal_serial_sqlite(
    postgres_server, tmp_path, capsys  # noqa: F811
):
    serial = rows.courses(tmp_path.parent / "pg-tiny")["serial"]
    url = postgres_server.create_database("gradebook")
    course = _postgres_course(serial, tmp_path / "course", url)
    assert all(select_shard(rows.STUDENTS, k, 2) for k in (1, 2))  # both runs have work

    runs = [_shard_run(course, f"{k}/2") for k in (1, 2)]  # two writers at once
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs

    assert rows.snapshot(url) == rows.snapshot(serial.db_url)
    assert set(course.grades(A)) == set(rows.STUDENTS)
    for k, output in enumerate(outputs, start=1):  # each run graded its own shard only
        for student in rows.STUDENTS:
            assert (student in output) == (student in select_shard(rows.STUDENTS, k, 2)), output

    rows.check_reports(course, ["--db-url", url], capsys)

    # a status nbgrader has no column for is kept in the same PostgreSQL database
    from graders import kept_status

    student, why = sorted(course.grades(A))[0], "the kernel died while running cell square"
    plain = course.grades(A)[student].status
    kept_status.set_status(url, A, student, "crashed (partial)", why)
    assert (course.grades(A)[student].status, course.grades(A)[student].reason) == (
        "crashed (partial)", why)
    kept_status.set_status(url, A, student, plain)
    assert course.grades(A)[student].status == plain
