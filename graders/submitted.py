"""What of a submission folder is the student's work: regular files and folders.

Symbolic links and special files (FIFOs, sockets, devices) are never copied for grading and
never reach the student's kernel. A link in ``submitted/<student>/<assignment>/`` can point
anywhere the grading process can read (relative links land in the course once the folder is
copied: its ``source/`` and ``gradebook.db``, with the hidden tests); nbgrader copies what a
link points to as a regular file, so the kernel would see it. A FIFO blocks whoever reads it.
Submissions reach ``submitted/`` in many ways (``graders collect`` refuses links, but ``unzip``,
``git``, ``rsync -a`` and nbgrader's exchange keep them), so grading checks again.

Size is bounded the same way: a notebook over nbgrader's file limit is refused with a reason
(clear its outputs), and other files over it, or past what a submission's files may add up to,
are left out and flagged: the folder is copied for every grading run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from graders import notebooks

__all__ = ["copy_folder", "flags", "leave_out_of_kernel_folder", "notebook_problem", "odd_entries"]


#: nbgrader's own limit on one file (``CourseDirectory.max_file_size``, 100,000 kB): a larger
#: notebook is refused, a larger other file left out (nbgrader would skip it too).
MAX_FILE_BYTES = 100_000 * 1024
#: What a submission's files may add up to, and how many entries (files and folders) it may
#: have: the rest is left out. The grading copies the folder for every run, and a kernel
#: started ahead gets a copy too; a notebook and a few data files are far below both.
MAX_FOLDER_BYTES = 200 * 2**20
MAX_ENTRIES = 1000
FLAGGED_ENTRIES = 5  # entries left out that the flags name one by one


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device or special file"


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.0f} MB" if size >= 1e6 else f"{size / 1e3:,.0f} kB"


def odd_entries(folder: Path) -> dict[str, str]:
    """Entries of ``folder`` (recursively, links not followed) that are left out of the grading,
    by path relative to ``folder``: what each is. Those are the ones that are neither regular
    files nor folders (``"a symbolic link"``, ...), files over :data:`MAX_FILE_BYTES`, and what
    comes past :data:`MAX_ENTRIES` entries or :data:`MAX_FOLDER_BYTES` in all (notebooks at
    the top of the folder count first, then the rest in name order)."""
    found: dict[str, str] = {}
    folder = Path(folder)
    if not folder.is_dir():
        return found
    entries, total = 0, 0
    for root, dirs, files in os.walk(folder):  # follows no link below the folder itself
        here = Path(root)
        dirs.sort()
        names = sorted(files, key=lambda n: (not (here == folder and n.endswith(".ipynb")), n))
        for name in [*names, *dirs]:
            path = here / name
            try:
                st = path.lstat()
            except OSError:
                continue
            relative = path.relative_to(folder).as_posix()
            entries += 1
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                found[relative] = _kind(st.st_mode)
            elif entries > MAX_ENTRIES:
                found[relative] = f"one entry too many (over {MAX_ENTRIES} files and folders)"
            elif stat.S_ISREG(st.st_mode) and st.st_size > MAX_FILE_BYTES:
                found[relative] = (f"a file of {_megabytes(st.st_size)}, over the "
                                   f"{_megabytes(MAX_FILE_BYTES)} limit for one file")
            elif stat.S_ISREG(st.st_mode) and total + st.st_size > MAX_FOLDER_BYTES:
                found[relative] = (f"a file past the {_megabytes(MAX_FOLDER_BYTES)} that a "
                                   "submission's files may add up to")
            elif stat.S_ISREG(st.st_mode):
                total += st.st_size
            if relative in found and name in dirs:
                dirs.remove(name)  # not walked: all of it is left out
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
    name = Path(path).name
    if not stat.S_ISREG(mode):
        return f"{name} is {_kind(mode)}, not a file: submit the notebook itself"
    size = Path(path).lstat().st_size
    if size > MAX_FILE_BYTES:
        return (f"{name} is {_megabytes(size)}, over the {_megabytes(MAX_FILE_BYTES)} limit: "
                "clear its outputs (Kernel > Restart Kernel and Clear All Outputs), save it and "
                "submit it again")
    return None


def flags(notebook: Path, source: Path) -> list[str]:
    """What the instructor should look at in the submission ``notebook`` (of the assignment
    whose instructor's notebook is ``source``) beyond its grade, as ``"flagged: ..."`` lines:
    entries the grading left out (:func:`odd_entries`), test cells it does not have, which the
    grading put back (a student who deleted them, or pasted the code into a new notebook), and
    the static scan's findings (:mod:`graders.scan`). Each notebook is read once."""
    from graders import scan

    left_out = list(odd_entries(Path(notebook).parent).items())
    found = [f"flagged: {path} in the submission is {what}: left out of the grading"
             for path, what in left_out[:FLAGGED_ENTRIES]]
    if len(left_out) > FLAGGED_ENTRIES:
        found.append(f"flagged: {len(left_out) - FLAGGED_ENTRIES} more entries in the "
                     "submission were left out of the grading")
    if notebook_problem(notebook) is not None:  # a FIFO would block the read
        return found
    try:
        nb = notebooks.read(notebook)
        have = {notebooks.grade_id(c) for c in nb.cells}
    except Exception:  # noqa: BLE001 - not a notebook: reported elsewhere
        return found
    instructors = notebooks.read(source)
    missing = [notebooks.grade_id(c) for c in instructors.cells
               if notebooks.is_test(c) and notebooks.grade_id(c) not in have]
    if missing:
        found.append(f"flagged: the test cells {', '.join(missing)} are missing from the "
                     "submission (put back and run by the grader)")
    return [*found, *(str(f) for f in scan.scan_submission(nb, instructors))]


def leave_out_of_kernel_folder(config: Any, resources: Any, log: logging.Logger) -> None:
    """For plain ``nbgrader autograde`` (``graders autograde`` never copies them): what nbgrader
    copied into the kernel's folder through the submission's links and special files goes
    before the kernel starts, and a linked notebook is not graded (raises). ``config``: the
    course's; ``resources``: nbgrader's for this notebook."""
    from nbgrader.coursedir import CourseDirectory

    ids = (resources or {}).get("nbgrader") or {}
    kernel_folder = ((resources or {}).get("metadata") or {}).get("path")
    if not (ids.get("student") and ids.get("assignment") and kernel_folder):
        return
    coursedir = CourseDirectory(config=config)
    folder = Path(coursedir.format_path(coursedir.submitted_directory, ids["student"],
                                        ids["assignment"]))
    problem = notebook_problem(folder / f"{ids.get('notebook')}.ipynb")
    if problem:
        raise RuntimeError(problem)
    for relative, what in odd_entries(folder).items():
        copy = Path(kernel_folder) / relative
        log.warning("left out %s: %s in the submission", relative, what)
        if copy.is_dir() and not copy.is_symlink():
            shutil.rmtree(copy, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                copy.unlink()
