"""What of a submission folder is the student's work: regular files and folders.

Symbolic links and special files (FIFOs, sockets, devices) are never copied for grading and
never reach the student's kernel. A link in ``submitted/<student>/<assignment>/`` can point
anywhere the grading process can read (relative links land in the course once the folder is
copied: its ``source/`` and ``gradebook.db``, with the hidden tests); nbgrader copies what a
link points to as a regular file, so the kernel would see it. A FIFO blocks whoever reads it.
Submissions reach ``submitted/`` in many ways (``graders collect`` refuses links, but ``unzip``,
``git``, ``rsync -a`` and nbgrader's exchange keep them), so grading checks again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path

from graders import notebooks

__all__ = ["copy_folder", "flags", "notebook_problem", "odd_entries"]


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device or special file"


def odd_entries(folder: Path) -> dict[str, str]:
    """Entries of ``folder`` (recursively, links not followed) that are neither regular files
    nor folders, by path relative to ``folder``: what each is (``"a symbolic link"``, ...)."""
    found: dict[str, str] = {}
    folder = Path(folder)
    if not folder.is_dir():
        return found
    for root, dirs, files in os.walk(folder):  # follows no link below the folder itself
        for name in [*dirs, *files]:
            path = Path(root) / name
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                found[path.relative_to(folder).as_posix()] = _kind(mode)
    return dict(sorted(found.items()))


def copy_folder(src: Path, dst: Path) -> dict[str, str]:
    """Copy the submission folder ``src`` to ``dst`` without its :func:`odd_entries`, which
    it returns."""
    src = Path(src)
    dropped = odd_entries(src)

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder)
        return {n for n in names if (here / n).relative_to(src).as_posix() in dropped}

    shutil.copytree(src, dst, symlinks=True, ignore=ignore)
    return dropped


def notebook_problem(path: Path) -> str | None:
    """Why the submitted notebook ``path`` is not graded although something is there (a link
    or a special file), else None."""
    try:
        mode = Path(path).lstat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return f"{Path(path).name} is {_kind(mode)}, not a file: submit the notebook itself"


def flags(notebook: Path, source: Path) -> list[str]:
    """What the instructor should look at in the submission ``notebook`` (of the assignment
    whose instructor's notebook is ``source``) beyond its code: entries the grading left out
    (:func:`odd_entries`), and test cells it does not have, which the grading put back (a
    student who deleted them, or pasted the code into a new notebook)."""
    found = [f"flagged: {path} in the submission is {what}: left out of the grading"
             for path, what in odd_entries(Path(notebook).parent).items()]
    if notebook_problem(notebook) is None:  # (a FIFO would block the read)
        with contextlib.suppress(Exception):  # not a notebook: reported elsewhere
            have = {notebooks.grade_id(c) for c in notebooks.read(notebook).cells}
            missing = [notebooks.grade_id(c) for c in notebooks.read(source).cells
                       if notebooks.is_test(c) and notebooks.grade_id(c) not in have]
            if missing:
                found.append(f"flagged: the test cells {', '.join(missing)} are missing from "
                             "the submission (put back and run by the grader)")
    return found
