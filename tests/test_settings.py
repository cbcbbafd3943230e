"""graders.settings and the course object: nbgrader's configuration read once, through nbgrader's
own classes, with one gradebook URL for every command (the configured one, or ``--db-url``)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from graders import cli, settings
from graders.course import REPO_ROOT, Course

CONFIG = """\
import os
os.environ["GRADERS_TEST_FROM_CONFIG"] = "1"
c = get_config()
c.CourseDirectory.db_url = "sqlite:////nowhere/configured.db"
c.CourseDirectory.submitted_directory = "inbox"
c.CourseDirectory.ignore = ["*.pyc", "grading"]
c.ClearHiddenTests.begin_test_delimeter = "BEGIN SECRET"
c.ClearHiddenTests.end_test_delimeter = "END SECRET"
c.Execute.timeout = 7
"""


def _course_folder(tmp_path: Path, config: str | None = CONFIG) -> Path:
    root = tmp_path / "course"
    root.mkdir(parents=True)
    if config is not None:
        (root / "nbgrader_config.py").write_text(textwrap.dedent(config))
    return root


def test_settings_come_from_the_course_config_and_leave_the_environment_alone(tmp_path):
    root = _course_folder(tmp_path)
    s = settings.load(root)
    assert s.root == root.resolve()
    assert (s.db_url, s.db_url_from) == ("sqlite:////nowhere/configured.db", "config")
    assert s.hidden_tests == ("BEGIN SECRET", "END SECRET")
    assert s.solution == ("BEGIN SOLUTION", "END SOLUTION")  # nbgrader's default
    assert s.cell_timeout == 7
    assert s.ignore == ("*.pyc", "grading")
    assert s.folder(s.submitted_directory, "bob", "a1") == root.resolve() / "inbox" / "bob" / "a1"
    assert "GRADERS_TEST_FROM_CONFIG" not in os.environ  # running the config changed nothing


def test_an_explicit_url_beats_the_config_and_the_default_is_nbgraders(tmp_path):
    root = _course_folder(tmp_path)
    url = "postgresql://grader@db.example/course"
    assert (settings.load(root, url).db_url, settings.load(root, url).db_url_from) == (
        url, "option")
    bare = _course_folder(tmp_path / "bare", config=None)
    s = settings.load(bare)
    assert (s.db_url, s.db_url_from) == (f"sqlite:///{bare.resolve() / 'gradebook.db'}", "default")
    assert s.cell_timeout == 30  # nbgrader's Execute.timeout default


def test_the_course_passes_a_url_on_nbgraders_command_line_only_when_given(tmp_path):
    root = _course_folder(tmp_path)
    configured = Course(root)
    assert configured.db_url == "sqlite:////nowhere/configured.db"
    assert not [a for a in configured.nbgrader_args() if "db_url" in a]  # nbgrader reads it
    given = Course(root, db_url="sqlite:////elsewhere.db")
    assert "--CourseDirectory.db_url=sqlite:////elsewhere.db" in given.nbgrader_args()
    assert given.submission_path("bob", "a1") == root.resolve() / "inbox/bob/a1/a1.ipynb"
    assert given.grading_folder("a1") == root.resolve() / "source/a1/grading"


def test_the_repository_course_ignores_its_grading_folders():
    """nbgrader copies every other file of source/<a>/ into release/ and autograded/."""
    course = Course(REPO_ROOT)
    assert "grading" in course.settings.ignore
    for assignment in course.assignments():
        assert (course.grading_folder(assignment) / "mutations.toml").is_file()
        assert not (course.folder("release", ".", assignment) / "grading").exists()


VERBS = [
    ["release"], ["autograde"], ["grades"], ["feedback"], ["export"], ["demo"],
    ["collect", "inbox"],
]


@pytest.mark.parametrize("verb", VERBS, ids=[v[0] for v in VERBS])
def test_db_url_reaches_every_verb_before_or_after_it(verb, tmp_path):
    url = "postgresql://grader@db.example/course"
    parser = cli.build_parser()
    for argv in (["--db-url", url, *verb], [*verb, "--db-url", url]):
        args = parser.parse_args(["--root", str(tmp_path), *argv])
        course = cli.course_of(args)
        assert course.db_url == url and course.settings.db_url_from == "option", argv
    plain = parser.parse_args(["--root", str(tmp_path), *verb])
    assert plain.db_url is None
