"""An nbgrader course folder, driven through the real ``nbgrader`` commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from graders import notebooks

REPO_ROOT = Path(__file__).resolve().parent.parent
COURSE_FILES = ("nbgrader_config.py", "source")


class NbgraderError(RuntimeError):
    """An nbgrader command failed; the message carries its output."""


@dataclass
class CellGrade:
    """One graded cell of one submission, as the gradebook has it."""

    grade_id: str
    score: float
    max_score: float
    needs_manual_grade: bool = False


@dataclass
class SubmissionGrade:
    """All graded cells of one student's notebook."""

    student: str
    assignment: str
    cells: dict[str, CellGrade] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return sum(c.score for c in self.cells.values())

    @property
    def max_score(self) -> float:
        return sum(c.max_score for c in self.cells.values())

    def failed(self) -> list[str]:
        """The test cells that did not earn full marks."""
        return [g for g, c in self.cells.items() if c.score < c.max_score]


class Course:
    """The course rooted at ``root`` (where ``nbgrader_config.py`` lives).

    ``db_url`` is its gradebook (any SQLAlchemy URL nbgrader accepts, e.g. PostgreSQL); every
    nbgrader command run through :meth:`nbgrader` uses it. Default: ``<root>/gradebook.db``.
    """

    def __init__(self, root: str | Path = REPO_ROOT, db_url: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.db_url = db_url or f"sqlite:///{self.root / 'gradebook.db'}"

    # ----------------------------------------------------------------- layout
    def assignments(self) -> list[str]:
        """Assignments in ``source/``: folders holding a notebook of the same name."""
        src = self.root / "source"
        return sorted(p.name for p in src.iterdir() if (p / f"{p.name}.ipynb").is_file())

    def source_path(self, assignment: str) -> Path:
        return self.root / "source" / assignment / f"{assignment}.ipynb"

    def release_path(self, assignment: str) -> Path:
        return self.root / "release" / assignment / f"{assignment}.ipynb"

    def submission_path(self, student: str, assignment: str) -> Path:
        return self.root / "submitted" / student / assignment / f"{assignment}.ipynb"

    def autograded_path(self, student: str, assignment: str) -> Path:
        return self.root / "autograded" / student / assignment / f"{assignment}.ipynb"

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
    @staticmethod
    def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
        # nbgrader calls `alembic` by name: the interpreter's bin folder must be on PATH.
        bindir = str(Path(sys.executable).parent)
        path = os.environ.get("PATH", "")
        return {**os.environ, "PATH": f"{bindir}{os.pathsep}{path}", **(extra or {})}

    def nbgrader(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        """Run ``nbgrader ARGS`` in the course root; raise NbgraderError if it fails (``check``)."""
        cmd = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.db_url={self.db_url}"]
        proc = subprocess.run(
            cmd,
            cwd=self.root,
            env=self._env(env),
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
        """``nbgrader generate_assignment``: writes ``release/<a>``, records it in the gradebook."""
        self.nbgrader("generate_assignment", assignment, "--force")
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

    def remove_students(self, students: list[str]) -> None:
        """Delete these students and all their submissions from the gradebook (if present)."""
        from nbgrader.api import Gradebook, MissingEntry

        sqlite_file = self.db_url.removeprefix("sqlite:///")
        if sqlite_file != self.db_url and not Path(sqlite_file).exists():
            return
        with Gradebook(self.db_url) as gb:
            for student in students:
                try:
                    gb.remove_student(student)
                except MissingEntry:
                    pass

    def grades(self, assignment: str) -> dict[str, SubmissionGrade]:
        """Per student, the auto-graded scores of ``assignment`` from the gradebook."""
        from nbgrader.api import Gradebook, MissingEntry

        result = {}
        with Gradebook(self.db_url) as gb:
            for student in gb.students:
                try:
                    nb = gb.find_submission_notebook(assignment, assignment, student.id)
                except MissingEntry:
                    continue
                sub = SubmissionGrade(student.id, assignment)
                for grade in nb.grades:
                    if grade.cell_type != "code":
                        continue
                    sub.cells[grade.name] = CellGrade(
                        grade.name,
                        float(grade.score or 0),
                        float(grade.max_score),
                        bool(grade.needs_manual_grade),
                    )
                result[student.id] = sub
        return result

    # ---------------------------------------------------------------- samples
    def reference_submission(self, assignment: str, **kwargs: object) -> NotebookNode:
        """The release notebook with solution cells filled in from the source (see
        :func:`graders.notebooks.solved` for ``unsolved`` and ``mutations``)."""
        return notebooks.solved(
            notebooks.read(self.source_path(assignment)),
            notebooks.read(self.release_path(assignment)),
            **kwargs,
        )
