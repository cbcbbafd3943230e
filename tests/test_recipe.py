"""The README's multi-machine recipe end to end against a real PostgreSQL server
(tests/pgserver.py), with the gradebook URL set in the course's ``nbgrader_config.py``
(``c.CourseDirectory.db_url``) and no flag on any command: ``graders release``, two shards of
``graders autograde`` at once (two machines sharing the course folder), then ``feedback`` (for
every student), ``grades`` and ``export``. The same recipe with ``--db-url`` on every command:
tests/test_postgres.py.

Regression: ``Course.nbgrader`` overrode the configured URL on nbgrader's command line, and
``feedback``, ``grades`` and ``demo`` read a local SQLite file whatever the URL."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import gradebook_rows as rows
import nbformat
import pytest
import tinycourse
from pgserver import postgres_server  # noqa: F401  (fixture)

from graders.course import REPO_ROOT, Course
from graders.shards import select_shard

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tinycourse")]
A = tinycourse.ASSIGNMENT


def _graders(root: Path, *argv: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "graders", "--root", str(root), *argv]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_the_recipe_with_the_url_in_the_course_config(postgres_server, tmp_path, capsys):  # noqa: F811
    url = postgres_server.create_database("recipe")
    root = tmp_path / "course"
    source = root / "source" / A / f"{A}.ipynb"
    source.parent.mkdir(parents=True)
    nbformat.write(tinycourse.source_notebook(), str(source))
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    with (root / "nbgrader_config.py").open("a") as fh:
        fh.write(f"\nc.CourseDirectory.db_url = {url!r}\n")

    release = _graders(root, "release", A)
    assert release.wait(timeout=300) == 0, release.stdout.read()
    course = Course(root)
    assert (course.db_url, course.settings.db_url_from) == (url, "config")
    for student, how in rows.STUDENTS.items():
        course.submit(student, A, tinycourse.submission(course, **how))
    runs = [_graders(root, "autograde", A, "--shard", f"{k}/2", "--workers", "1")
            for k in (1, 2)]  # two machines at once
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    for k, output in enumerate(outputs, start=1):  # each graded its own shard only
        for student in rows.STUDENTS:
            assert (student in output) == (student in select_shard(rows.STUDENTS, k, 2)), output

    rows.check_reports(course, [], capsys)
