"""Course-wide settings, read once from nbgrader's own configuration.

nbgrader reads ``nbgrader_config.py`` from the Jupyter configuration folders and from the course
root (the folder it runs in); :func:`load` reads the same files the same way and answers through
nbgrader's own classes (``CourseDirectory``, ``ClearHiddenTests``, ``ClearSolutions``,
``Execute``), so what ``graders`` believes about a course is what ``nbgrader`` does with it:
the root, the gradebook URL (``CourseDirectory.db_url``), the folder names, the ``ignore``
globs, the hidden-test and solution delimiters and the per-cell timeout.

One override beats the configuration for every command: the gradebook URL given on the command
line (``python -m graders --db-url URL VERB``). Loading the configuration runs it; whatever it
does to this process's environment (the course config sets thread counts) is undone, since
nbgrader processes load it again for themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = "nbgrader_config.py"


@dataclass(frozen=True)
class CourseSettings:
    """What nbgrader's configuration says about one course (see the module docstring)."""

    root: Path
    db_url: str
    #: where ``db_url`` came from: "option" (command line), "config" or "default"
    db_url_from: str
    course_id: str
    directory_structure: str
    source_directory: str
    release_directory: str
    submitted_directory: str
    autograded_directory: str
    feedback_directory: str
    #: globs nbgrader never copies (release, autograde); ``grading`` keeps instructor files out
    ignore: tuple[str, ...]
    #: ``(begin, end)`` of ``ClearHiddenTests`` (nbgrader matches them as substrings of a line)
    hidden_tests: tuple[str, str]
    #: ``(begin, end)`` of ``ClearSolutions``
    solution: tuple[str, str]
    #: seconds per cell, ``Execute.timeout`` (None: no per-cell limit)
    cell_timeout: float | None

    def folder(self, step: str, student: str, assignment: str) -> Path:
        """nbgrader's folder of ``step`` (a ``*_directory`` value) for a student and assignment:
        ``CourseDirectory.format_path`` (``student`` is ``"."`` for source and release)."""
        rel = self.directory_structure.format(
            nbgrader_step=step, student_id=student, assignment_id=assignment
        )
        return Path(os.path.normpath(self.root / rel))


def _read_config(folder: Path):
    """nbgrader's configuration as nbgrader running in ``folder`` reads it (a traitlets
    ``Config``), leaving this process's environment as it was."""
    from jupyter_core.paths import jupyter_config_path
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = Config()
    saved = dict(os.environ)
    try:
        # lowest priority first: system, environment, user folders, then the course's own file
        for path in [*reversed(jupyter_config_path()), str(folder)]:
            if os.path.isfile(os.path.join(path, CONFIG_FILE)):
                config.merge(PyFileConfigLoader(CONFIG_FILE, path=path).load_config())
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)
    return config


def load(root: str | Path | None = None, db_url: str | None = None) -> CourseSettings:
    """The settings of the course whose ``nbgrader_config.py`` lies in ``root`` (default: this
    repository); ``db_url`` overrides the configured gradebook."""
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions, Execute

    folder = Path(root if root is not None else REPO_ROOT).resolve()
    config = _read_config(folder)
    coursedir = CourseDirectory(config=config)
    if "root" not in config.get("CourseDirectory", {}):
        coursedir.root = str(folder)
    configured = "db_url" in config.get("CourseDirectory", {})
    hidden = ClearHiddenTests(config=config)
    solutions = ClearSolutions(config=config)
    timeout = Execute(config=config).timeout
    return CourseSettings(
        root=Path(coursedir.root),
        db_url=db_url or coursedir.db_url,
        db_url_from="option" if db_url else "config" if configured else "default",
        course_id=coursedir.course_id,
        directory_structure=coursedir.directory_structure,
        source_directory=coursedir.source_directory,
        release_directory=coursedir.release_directory,
        submitted_directory=coursedir.submitted_directory,
        autograded_directory=coursedir.autograded_directory,
        feedback_directory=coursedir.feedback_directory,
        ignore=tuple(coursedir.ignore),
        hidden_tests=(hidden.begin_test_delimeter, hidden.end_test_delimeter),
        solution=(solutions.begin_solution_delimeter, solutions.end_solution_delimeter),
        cell_timeout=float(timeout) if timeout else None,
    )
