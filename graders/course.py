"""An nbgrader course folder: its settings, its paths, and the real ``nbgrader`` commands.

A :class:`Course` reads ``nbgrader_config.py`` once (:mod:`graders.settings`) and answers every
path from nbgrader's own folder names; the gradebook URL it uses is the configured one
(``c.CourseDirectory.db_url``, default ``<root>/gradebook.db``) unless one is given, and every
nbgrader command it runs and every gradebook read (:mod:`graders.gradebook`) uses that URL.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat import NotebookNode

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from graders import gradebook, notebooks, release
from graders import settings as settings_mod
from graders.gradebook import CellGrade, SubmissionGrade
from graders.settings import REPO_ROOT, CourseSettings

__all__ = ["COURSE_FILES", "REPO_ROOT", "CellGrade", "Course", "NbgraderError",
           "SubmissionGrade", "nbgrader_env"]

COURSE_FILES = ("nbgrader_config.py", "source")
#: the folder of ``source/<a>/`` with what only graders use (mutants, calibration); nbgrader
#: copies none of it (``CourseDirectory.ignore``)
GRADING_FOLDER = "grading"


class NbgraderError(RuntimeError):
    """An nbgrader command failed; the message carries its output."""


def nbgrader_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for an nbgrader process, ``extra`` merged over it.

    nbgrader calls ``alembic`` by name: the interpreter's bin folder goes first on PATH.
    """
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{path}", **(extra or {})}


class Course:
    """The course whose ``nbgrader_config.py`` lies in ``root`` (default: this repository).

    ``db_url`` overrides the configured gradebook (any SQLAlchemy URL nbgrader accepts, e.g.
    PostgreSQL). The configuration is read on first use and then kept (:attr:`settings`).
    """

    def __init__(
        self,
        root: str | Path = REPO_ROOT,
        db_url: str | None = None,
        settings: CourseSettings | None = None,
    ) -> None:
        self._folder = Path(root).resolve()
        self._db_url = db_url
        if settings is not None:
            self.__dict__["settings"] = settings

    @functools.cached_property
    def settings(self) -> CourseSettings:
        """What nbgrader's configuration says about this course (read once)."""
        return settings_mod.load(self._folder, self._db_url)

    @property
    def root(self) -> Path:
        return self.settings.root

    @property
    def config_file(self) -> Path:
        """The course's ``nbgrader_config.py`` (in the folder the course was opened at)."""
        return self._folder / settings_mod.CONFIG_FILE

    @property
    def db_url(self) -> str:
        return self.settings.db_url

    # ----------------------------------------------------------------- layout
    def folder(self, step: str, student: str = ".", assignment: str = ".") -> Path:
        """nbgrader's folder for a step (``"source"``, ``"release"``, ``"submitted"``,
        ``"autograded"``, ``"feedback"``: mapped through the configured folder names)."""
        names = {
            "source": self.settings.source_directory,
            "release": self.settings.release_directory,
            "submitted": self.settings.submitted_directory,
            "autograded": self.settings.autograded_directory,
            "feedback": self.settings.feedback_directory,
        }
        return self.settings.folder(names[step], student, assignment)

    def assignments(self) -> list[str]:
        """Assignments in ``source/``: folders holding a notebook of the same name."""
        src = self.folder("source")
        if not src.is_dir():
            return []
        return sorted(p.name for p in src.iterdir() if (p / f"{p.name}.ipynb").is_file())

    def source_path(self, assignment: str) -> Path:
        return self.folder("source", ".", assignment) / f"{assignment}.ipynb"

    def grading_folder(self, assignment: str) -> Path:
        """``source/<a>/grading/``: the assignment's mutants, sample settings, calibration."""
        return self.folder("source", ".", assignment) / GRADING_FOLDER

    def grading_file(self, assignment: str, name: str) -> dict:
        """``source/<a>/grading/<name>.toml`` read as a dict (empty when there is none):
        ``mutations`` (mutants, alternatives, sample settings), ``calibration`` (metrics code,
        time budget)."""
        path = self.grading_folder(assignment) / f"{name}.toml"
        if not path.is_file():
            return {}
        with path.open("rb") as fh:
            return tomllib.load(fh)

    def release_path(self, assignment: str) -> Path:
        return self.folder("release", ".", assignment) / f"{assignment}.ipynb"

    def submission_path(self, student: str, assignment: str) -> Path:
        return self.folder("submitted", student, assignment) / f"{assignment}.ipynb"

    def autograded_path(self, student: str, assignment: str) -> Path:
        return self.folder("autograded", student, assignment) / f"{assignment}.ipynb"

    def feedback_path(self, student: str, assignment: str) -> Path:
        """The feedback page of a student's assignment: ``feedback/<s>/<a>/<a>.html``."""
        return self.folder("feedback", student, assignment) / f"{assignment}.html"

    @property
    def reports(self) -> Path:
        """``reports/``: what graders writes for the instructor (CSV, plots, zips)."""
        return self.root / "reports"

    def submitted_students(self) -> list[str]:
        """Every student with a folder in ``submitted/``, sorted."""
        return self._students_in(self.folder("submitted"))

    def autograded_students(self, assignment: str) -> list[str]:
        """Students with an autograded notebook of ``assignment``, sorted."""
        return [
            s for s in self._students_in(self.folder("autograded"))
            if self.autograded_path(s, assignment).is_file()
        ]

    @staticmethod
    def _students_in(folder: Path) -> list[str]:
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def cell_order(self, assignment: str) -> list[str] | None:
        """The grade ids of the source notebook in notebook order (None without a source)."""
        path = self.source_path(assignment)
        if not path.is_file():
            return None
        return [g for g in map(notebooks.grade_id, notebooks.read(path).cells) if g]

    @classmethod
    def scratch(cls, dest: str | Path, origin: str | Path = REPO_ROOT) -> Course:
        """A fresh course at ``dest`` with ``origin``'s configuration and sources only."""
        dest, origin = Path(dest), Path(origin)
        dest.mkdir(parents=True, exist_ok=True)
        for name in COURSE_FILES:
            src = origin / name
            if src.is_dir():
                shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, dest / name)
        return cls(dest)

    # --------------------------------------------------------------- nbgrader
    def nbgrader_args(self) -> list[str]:
        """What every nbgrader command of this course gets: the root, and the gradebook URL
        when it was given rather than configured (a configured one nbgrader reads itself)."""
        args = [f"--CourseDirectory.root={self.root}"]
        if self.settings.db_url_from == "option":
            args.append(f"--CourseDirectory.db_url={self.db_url}")
        return args

    def nbgrader(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        """Run ``nbgrader ARGS`` in the course root; raise NbgraderError if it fails (``check``)."""
        cmd = [sys.executable, "-m", "nbgrader", *args, *self.nbgrader_args()]
        proc = subprocess.run(
            cmd,
            cwd=self.root,
            env=nbgrader_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise NbgraderError(
                f"`nbgrader {' '.join(args)}` exited {proc.returncode}:\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def generate_release(self, assignment: str) -> Path:
        """``nbgrader generate_assignment``: writes ``release/<a>``, records it in the gradebook;
        then the notebook gets the metadata JupyterLab writes (:mod:`graders.release`)."""
        self.nbgrader("generate_assignment", assignment, "--force")
        release.clean_metadata(self.release_path(assignment))
        return self.release_path(assignment)

    def submit(self, student: str, assignment: str, nb: NotebookNode | bytes) -> Path:
        """Place a student's notebook where ``nbgrader autograde`` looks for it."""
        path = self.submission_path(student, assignment)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(nb, bytes):
            path.write_bytes(nb)
        else:
            nbformat.write(nb, str(path))
        return path

    def autograde(
        self, assignment: str, student: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """``nbgrader autograde``, for one student or all submitted ones.

        nbgrader exits 1 when any submission could not be processed; that is reported in the
        returned process (and in the gradebook), not raised, since the others are still graded.
        """
        args = ["autograde", assignment, "--force"]
        if student:
            args.append(f"--student={student}")
        return self.nbgrader(*args, env=env, check=False)

    # -------------------------------------------------------------- gradebook
    def remove_students(self, students: list[str]) -> None:
        """Delete these students and all their submissions from the gradebook (if present)."""
        gradebook.remove_students(self.db_url, students)

    def grades(self, assignment: str) -> dict[str, SubmissionGrade]:
        """Per student with a submission, the grade of ``assignment`` in the gradebook (cells
        in notebook order). FileNotFoundError when the gradebook is a missing SQLite file."""
        return gradebook.read_grades(self.db_url, assignment, self.cell_order(assignment))

    # ---------------------------------------------------------------- samples
    def reference_submission(self, assignment: str, **kwargs: object) -> NotebookNode:
        """The release notebook with solution cells filled in from the source (see
        :func:`graders.notebooks.solved` for ``unsolved`` and ``mutations``)."""
        return notebooks.solved(
            notebooks.read(self.source_path(assignment)),
            notebooks.read(self.release_path(assignment)),
            **kwargs,
        )
