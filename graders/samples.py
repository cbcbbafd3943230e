"""Sample submissions derived from the reference solution at the time they are made.

Used by ``make demo`` (to show the whole grading path) and by the end-to-end tests (which
assert that nbgrader grades each exactly as expected). Because they are derived from
``source/<a>/`` (the notebook and ``grading/mutations.toml``), they never go stale.

===================  =========================================================================
student              what it is
===================  =========================================================================
``ref``              the reference solution typed into the release notebook: full marks
``stub``             the untouched release notebook: zero
``partial``          the first tasks solved, the rest left as stubs
``mut-<name>``       the reference with one mutant (``demo = true`` in ``mutations.toml``)
``tamper-edit``      partial, one task wrong, its test cell replaced by a print and its points
                     raised to 100 in the metadata: the cell is restored, the points are not
``tamper-delete``    partial, one task wrong and its test cell deleted, test cells of correct
                     tasks deleted or de-tagged, a read-only run cell deleted (with the test
                     cell after it): all are put back and run
``corrupt``          not a notebook (truncated JSON): reported, and nobody else is affected
===================  =========================================================================

Adversarial students (:func:`adversarial`, built from the reference, and
:func:`hostile_samples`; ``make demo`` adds them, graded by :mod:`graders.parallel`): each adds
an attack to the first code solution cell (or a cell at the end).

===================  =========================================================================
``endless``          ignores SIGINT and loops forever: ``timed out`` by the limits
``stuck-late``       the same in its last solution cell: ``timed out (partial)``, the test
                     cells before it keep their points
``membomb``          ignores SIGINT and allocates memory until killed: ``crashed``
``flood``            prints 256 MiB in its first task (the grading process once kept all of
                     it): full marks, ``graded``; the graded notebook keeps a few MiB and says
                     what it left out
``snoop``            looks for ``gradebook.db`` and ``source/`` at every path it can guess (the
                     course's and the repository's included) and prints the hidden tests it
                     finds: ``graded``, full marks; sandboxed it finds nothing
``network``          connects to 127.0.0.1 (a port the caller listens on) and to an outside
                     address: full marks, ``flagged`` (it imports ``socket``); sandboxed both
                     fail
``escape``           writes a file into the course root, the repository root, ``$HOME`` and
                     ``/tmp``: ``graded``, full marks; sandboxed nothing lands outside its
                     folder. Only built where the sandbox is available (it would litter).
``diskfill``         ignores SIGINT, fills the sandbox's ``/tmp`` and waits: ``crashed`` at the
                     disk limit. Only built where the sandbox is available (it would fill the
                     machine's ``/tmp``).
``hide-errors``      the untouched stub with tricks that hide errors from the kernel's report
                     (``set_custom_exc``, ``showtraceback``; :mod:`graders.hostile`): zero, as
                     the stub, and ``flagged``
``patch-helpers``    ``partial`` with ``dlworkshop.checks`` and NumPy's comparisons patched in
                     the kernel: what ``partial`` scores, and ``flagged``
``read-back``        the reference, reading the kernel's input history, frames, files and the
                     grading agent for hidden tests and printing them encoded: full marks,
                     nothing found, ``flagged``
===================  =========================================================================
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from nbformat import NotebookNode

from graders import hostile, mutations, notebooks
from graders.course import REPO_ROOT, Course


@dataclass
class Sample:
    """A submission and what grading it must give."""

    student: str
    notebook: NotebookNode | bytes
    description: str
    must_fail: set[str] = field(default_factory=set)  # test cells that must lose their points
    may_fail: set[str] = field(default_factory=set)  # downstream cells allowed either way
    processed: bool = True  # False: nbgrader must refuse it (and grade everyone else)
    status: str = "graded"  # the status graders.parallel must report for it


FIXED_STUDENTS = ("ref", "stub", "partial", "tamper-edit", "tamper-delete", "corrupt")


def _mutant_student(variant: mutations.Variant) -> str:
    return f"mut-{variant.name}".replace("_", "-")


def student_names(assignment: str, mutants: bool = True, course: Course | None = None) -> list[str]:
    """The student ids :func:`build` uses (known before the release exists)."""
    names = list(FIXED_STUDENTS)
    if mutants:
        variants = mutations.load(assignment, course)
        names += [_mutant_student(v) for v in variants if v.kind == "mutant" and v.demo]
    return names


def _tests_after(nb: NotebookNode, gid: str) -> set[str]:
    start = notebooks.cell_index(nb, gid)
    return {notebooks.grade_id(c) for c in nb.cells[start:] if notebooks.is_test(c)}


def build(course: Course, assignment: str, mutants: bool = True) -> list[Sample]:
    """The samples of ``assignment``; the release must exist (``course.generate_release``).

    ``mutants=False`` leaves out the ``mut-*`` students: the tests prove every mutant faster
    by running cells directly (tests/test_mutations.py), and keep nbgrader for the rest.
    """
    source = notebooks.read(course.source_path(assignment))
    release = notebooks.read(course.release_path(assignment))
    all_tests = {notebooks.grade_id(c) for c in notebooks.test_cells(source)}
    settings = mutations.sample_settings(assignment, course)
    variants = {v.name: v for v in mutations.load(assignment, course)}

    samples = [
        Sample("ref", notebooks.solved(source, release), "reference solution"),
        Sample("stub", copy.deepcopy(release), "untouched release", must_fail=set(all_tests)),
    ]

    first_unsolved = settings["partial_unsolved_from"]
    start = notebooks.cell_index(source, first_unsolved)
    unsolved = {notebooks.grade_id(c) for c in source.cells[start:] if notebooks.is_solution(c)}
    partial_fail = _tests_after(source, first_unsolved)
    samples.append(
        Sample(
            "partial",
            notebooks.solved(source, release, unsolved=unsolved),
            f"solved up to {first_unsolved!r}, stubs after",
            must_fail=set(partial_fail),
        )
    )

    for v in variants.values():
        if mutants and v.kind == "mutant" and v.demo:
            downstream = _tests_after(source, v.mutation.cell) - set(v.targets)
            samples.append(
                Sample(
                    _mutant_student(v),
                    notebooks.solved(source, release, mutations=[v.mutation]),
                    v.why,
                    must_fail=set(v.targets),
                    may_fail=downstream,
                )
            )

    tamper = variants[settings["tamper_mutant"]]
    target = tamper.targets[0]
    edited = notebooks.solved(source, release, unsolved=unsolved, mutations=[tamper.mutation])
    cell = edited.cells[notebooks.cell_index(edited, target)]
    cell.source = 'print("all tests passed")'
    cell.metadata["nbgrader"]["points"] = 100
    samples.append(
        Sample(
            "tamper-edit",
            edited,
            f"{tamper.name}, test cell {target!r} replaced and its points raised",
            must_fail=partial_fail | {target},
        )
    )

    deleted = notebooks.solved(source, release, unsolved=unsolved, mutations=[tamper.mutation])
    gone = {target, *settings.get("tamper_delete_passing", []),
            *settings.get("tamper_delete_readonly", [])}
    deleted.cells = [c for c in deleted.cells if notebooks.grade_id(c) not in gone]
    detag = settings.get("tamper_detag")
    if detag:
        cell = deleted.cells[notebooks.cell_index(deleted, detag)]
        del cell.metadata["nbgrader"]
        cell.source = "# nothing to see here"
    samples.append(
        Sample(
            "tamper-delete",
            deleted,
            f"{tamper.name}; test cells {sorted(gone)} deleted, {detag!r} de-tagged",
            must_fail=partial_fail | {target},
            status="flagged",  # the deleted test cells are put back, and named for review
        )
    )

    samples.append(
        Sample(
            "corrupt",
            b'{"cells": [',
            "truncated JSON, not a notebook",
            processed=False,
            status="refused",
        )
    )
    return samples


# ------------------------------------------------------------------------- adversarial students
ADVERSARIAL_STUDENTS = ("endless", "stuck-late", "membomb", "flood", "snoop", "network",
                        "escape", "diskfill")
HOSTILE_STUDENTS = ("hide-errors", "patch-helpers", "read-back")
#: Where the ``network`` student tries to go beyond the machine (a public DNS resolver).
OUTSIDE_ADDRESS = ("1.1.1.1", 53)

FLOOD_MB = 256

_ENDLESS = """\
import signal as _signal
_signal.signal(_signal.SIGINT, _signal.SIG_IGN)
while True:
    pass
"""

_MEMBOMB = """\
import signal as _signal
_signal.signal(_signal.SIGINT, _signal.SIG_IGN)
_hog = []
while True:
    try:
        _hog.append(b"x" * (32 << 20))
    except MemoryError:
        pass
"""

_FLOOD = """\
import sys as _sys
for _line in range(FLOOD_MB):
    _sys.stdout.write("flood! " * 149796 + "\\n")  # 1 MiB a line, each sent at once
    _sys.stdout.flush()
del _sys, _line
"""

_SNOOP = """\
def _snoop(roots):
    import glob, os, re
    hidden = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", re.S)
    here = os.getcwd()
    guesses = [here] + [os.path.join(here, *[".."] * k) for k in range(1, 7)]
    guesses += roots + [os.path.expanduser("~"), "/tmp", "/"]
    seen = set()
    for root in guesses:
        for pattern in ("gradebook.db", "*/gradebook.db", "source/*/*.ipynb", "*/source/*/*.ipynb"):
            for path in glob.glob(os.path.join(root, pattern)):
                path = os.path.realpath(path)
                if path in seen:
                    continue
                seen.add(path)
                try:
                    with open(path, "rb") as fh:
                        text = fh.read().decode("utf-8", "replace")
                except OSError as err:
                    print("snoop: cannot read", path, type(err).__name__)
                    continue
                print("snoop: read", path, len(text), "characters")
                for block in hidden.findall(text)[:20]:
                    print(block[:2000])
    print("snoop: found", len(seen), "files")
_snoop(ROOTS)
del _snoop
"""

_NETWORK = """\
def _network(targets):
    import socket
    for host, port in targets:
        try:
            with socket.create_connection((host, port), timeout=3) as conn:
                conn.sendall(b"network student was here\\n")
            print("network: connected to", host, port)
        except OSError as err:
            print("network: no connection to", host, port, type(err).__name__)
_network(TARGETS)
del _network
"""

_ESCAPE = """\
def _escape(folders, name):
    import os
    here = os.getcwd()
    folders = [os.path.join(here, "..", "..", ".."), *folders]
    folders += [os.path.expanduser("~"), "/tmp"]
    for folder in folders:
        try:
            with open(os.path.join(folder, name), "w") as fh:
                fh.write("escaped")
            print("escape: wrote into", folder)
        except OSError as err:
            print("escape: cannot write into", folder, type(err).__name__)
_escape(FOLDERS, NAME)
del _escape
"""


_DISKFILL = """\
import signal as _signal, time as _time
_signal.signal(_signal.SIGINT, _signal.SIG_IGN)
try:
    with open("/tmp/fill.bin", "wb") as _fh:
        while True:
            _fh.write(b"x" * (1 << 20))
            _fh.flush()
except OSError as _err:
    print("diskfill: stopped writing:", type(_err).__name__)
while True:
    _time.sleep(1)
"""


def escape_file_name(token: str) -> str:
    """The file the ``escape`` student tries to write everywhere."""
    return f"escaped-{token}.txt"


def _with_attack(
    course: Course, assignment: str, attack: str, last: bool = False
) -> NotebookNode:
    """The reference submission with ``attack`` run first in its first (``last``: last) code
    solution cell."""
    source = notebooks.read(course.source_path(assignment))
    nb = notebooks.solved(source, notebooks.read(course.release_path(assignment)))
    cells = [c for c in nb.cells if notebooks.is_solution(c) and c.cell_type == "code"]
    cell = cells[-1] if last else cells[0]
    cell.source = f"{attack}\n{cell.source}"
    return nb


def _tests_from(nb: NotebookNode, last_solution: bool) -> set[str]:
    """The test cells at or after the first (or last) code solution cell."""
    solutions = [i for i, c in enumerate(nb.cells)
                 if notebooks.is_solution(c) and c.cell_type == "code"]
    start = solutions[-1] if last_solution else solutions[0]
    return {notebooks.grade_id(c) for c in nb.cells[start:] if notebooks.is_test(c)}


def adversarial(
    course: Course,
    assignment: str,
    port: int = 9,
    token: str = "graders",
    escape: bool = True,
    disk: bool = True,
) -> list[Sample]:
    """The adversarial students of ``assignment`` (see the module docstring).

    ``port``: the 127.0.0.1 port ``network`` connects to (a test listens there); ``token``
    names the file ``escape`` writes (:func:`escape_file_name`); ``escape=False`` and
    ``disk=False`` leave out ``escape`` and ``diskfill`` (for runs without the sandbox, where
    they would really write those files).
    """
    roots = [str(course.root), str(REPO_ROOT)]
    snoop = _SNOOP.replace("ROOTS", repr(roots))
    network = _NETWORK.replace("TARGETS", repr([("127.0.0.1", port), OUTSIDE_ADDRESS]))
    escape_code = _ESCAPE.replace("FOLDERS", repr(roots)).replace(
        "NAME", repr(escape_file_name(token))
    )
    samples = [
        Sample(
            "endless",
            _with_attack(course, assignment, _ENDLESS),
            "ignores SIGINT and loops forever",
            processed=False,
            status="timed out",
        ),
        Sample(
            "stuck-late",
            _with_attack(course, assignment, _ENDLESS, last=True),
            "ignores SIGINT and loops forever in its last task: the tests before keep their "
            "points",
            must_fail=_tests_from(_with_attack(course, assignment, ""), last_solution=True),
            status="timed out (partial)",
        ),
        Sample(
            "membomb",
            _with_attack(course, assignment, _MEMBOMB),
            "ignores SIGINT and allocates memory until killed",
            processed=False,
            status="crashed",
        ),
        Sample(
            "flood",
            _with_attack(course, assignment, _FLOOD.replace("FLOOD_MB", str(FLOOD_MB))),
            f"prints {FLOOD_MB} MiB in its first task, then goes on as the reference",
        ),
        Sample(
            "snoop",
            _with_attack(course, assignment, snoop),
            "reads gradebook.db and source/ wherever it can find them, prints hidden tests",
        ),
        Sample(
            "network",
            _with_attack(course, assignment, network),
            f"connects to 127.0.0.1:{port} and {OUTSIDE_ADDRESS[0]}:{OUTSIDE_ADDRESS[1]}",
            status="flagged",
        ),
    ]
    if escape:
        samples.append(
            Sample(
                "escape",
                _with_attack(course, assignment, escape_code),
                "writes files into the course and repository roots, $HOME and /tmp",
            )
        )
    if disk:
        samples.append(
            Sample(
                "diskfill",
                _with_attack(course, assignment, _DISKFILL),
                "ignores SIGINT, fills its disk (/tmp) and waits",
                processed=False,
                status="crashed",
            )
        )
    return samples


def hostile_samples(course: Course, assignment: str) -> list[Sample]:
    """``hide-errors``, ``patch-helpers`` and ``read-back`` (see the module docstring; they
    need the assignment's ``grading/mutations.toml`` for ``partial``)."""
    by_student = {s.student: s for s in build(course, assignment, mutants=False)}
    stub, partial, ref = by_student["stub"], by_student["partial"], by_student["ref"]

    def tricked(base: Sample, names: tuple[str, ...]) -> NotebookNode:
        nb = base.notebook
        for name in names:
            nb = hostile.with_trick(nb, hostile.by_name(name))
        return nb

    return [
        Sample("hide-errors", tricked(stub, ("custom-exc", "showtraceback", "post-run-hook")),
               "hides errors from the kernel's report", must_fail=stub.must_fail,
               status="flagged"),
        Sample("patch-helpers", tricked(partial, ("patch-checks", "patch-numpy")),
               "patches dlworkshop.checks and NumPy in its kernel", must_fail=partial.must_fail,
               status="flagged"),
        Sample("read-back", tricked(ref, ("history", "frames", "files", "agent-snoop")),
               "looks for the hidden tests in its kernel and prints them encoded",
               status="flagged"),
    ]
