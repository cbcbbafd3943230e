"""Sample submissions derived from the reference solution at the time they are made.

Used by ``make demo`` (to show the whole grading path) and by the end-to-end tests (which
assert that nbgrader grades each exactly as expected). Because they are derived from
``source/`` and ``tests/mutations/``, they never go stale.

===================  =========================================================================
student              what it is
===================  =========================================================================
``ref``              the reference solution typed into the release notebook: full marks
``stub``             the untouched release notebook: zero
``partial``          the first tasks solved, the rest left as stubs
``mut-<name>``       the reference with one mutant (``demo = true`` in the TOML file)
``tamper-edit``      partial, one task wrong, its test cell replaced by a print and its points
                     raised to 100 in the metadata: the cell is restored, the points are not
``tamper-delete``    partial, one task wrong and its test cell deleted, test cells of correct
                     tasks deleted or de-tagged: all are put back and run
``corrupt``          not a notebook (truncated JSON): reported, and nobody else is affected
===================  =========================================================================
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from nbformat import NotebookNode

from graders import mutations, notebooks
from graders.course import Course


@dataclass
class Sample:
    """A submission and what grading it must give."""

    student: str
    notebook: NotebookNode | bytes
    description: str
    must_fail: set[str] = field(default_factory=set)  # test cells that must lose their points
    may_fail: set[str] = field(default_factory=set)  # downstream cells allowed either way
    processed: bool = True  # False: nbgrader must refuse it (and grade everyone else)


FIXED_STUDENTS = ("ref", "stub", "partial", "tamper-edit", "tamper-delete", "corrupt")


def _mutant_student(variant: mutations.Variant) -> str:
    return f"mut-{variant.name}".replace("_", "-")


def student_names(assignment: str, mutants: bool = True) -> list[str]:
    """The student ids :func:`build` uses (known before the release exists)."""
    names = list(FIXED_STUDENTS)
    if mutants:
        names += [
            _mutant_student(v) for v in mutations.load(assignment) if v.kind == "mutant" and v.demo
        ]
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
    settings = mutations.sample_settings(assignment)
    variants = {v.name: v for v in mutations.load(assignment)}

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
    gone = {target, *settings.get("tamper_delete_passing", [])}
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
        )
    )

    samples.append(
        Sample("corrupt", b'{"cells": [', "truncated JSON, not a notebook", processed=False)
    )
    return samples
