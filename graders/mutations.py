"""Mutants (plausible wrong answers) and alternatives (other correct answers) of an assignment,
read from ``source/<a>/grading/mutations.toml`` (see the comment at the top of such a file),
with the ``[samples]`` settings that :mod:`graders.samples` derives sample submissions from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from graders.course import Course
from graders.notebooks import Mutation

NAME = "mutations"  # source/<a>/grading/mutations.toml


@dataclass(frozen=True)
class Variant:
    """A named change to one solution cell and the test cells it must fail (or pass)."""

    name: str
    kind: str  # "mutant" or "alternative"
    mutation: Mutation
    targets: tuple[str, ...]  # `fails` of a mutant, `covers` of an alternative
    why: str = ""
    demo: bool = False
    #: a further case of a claim already proved by another variant: run by `make test-variants`
    #: (every variant), not by `make test` (whose time CI bounds)
    extended: bool = False
    #: a mutant's exact score in a target cell where it keeps some points (partial credit);
    #: in every other target it must score 0
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def last_target(self) -> str:
        return self.targets[-1]

    def expected_score(self, gid: str, points: float) -> float:
        """The score this variant must get in test cell ``gid`` worth ``points``."""
        if self.kind == "alternative" or gid not in self.targets:
            return points
        return self.scores.get(gid, 0.0)


def _variant(kind: str, entry: dict) -> Variant:
    replace = tuple(tuple(pair) for pair in entry.get("replace", ()))
    source = entry.get("source")
    if bool(replace) == (source is not None):
        raise ValueError(f"{kind} {entry.get('name')!r}: give exactly one of `replace`, `source`")
    targets = tuple(entry["fails" if kind == "mutant" else "covers"])
    if not targets:
        raise ValueError(f"{kind} {entry['name']!r} names no test cells")
    scores = {str(k): float(v) for k, v in entry.get("scores", {}).items()}
    if scores and (kind != "mutant" or not set(scores) <= set(targets)):
        raise ValueError(f"{kind} {entry['name']!r}: `scores` names cells it does not fail")
    return Variant(
        name=entry["name"],
        kind=kind,
        mutation=Mutation(cell=entry["cell"], replace=replace, source=source),
        targets=targets,
        why=entry.get("why", ""),
        demo=bool(entry.get("demo", False)),
        extended=bool(entry.get("extended", False)),
        scores=scores,
    )


def path(assignment: str, course: Course | None = None) -> Path:
    """``source/<a>/grading/mutations.toml`` of ``course`` (default: this repository's)."""
    return (course or Course()).grading_folder(assignment) / f"{NAME}.toml"


def sample_settings(assignment: str, course: Course | None = None) -> dict:
    """The ``[samples]`` table: how graders/samples.py derives sample submissions."""
    return (course or Course()).grading_file(assignment, NAME).get("samples", {})


def load(assignment: str, course: Course | None = None) -> list[Variant]:
    """All mutants and alternatives of ``assignment`` (empty if it has no file)."""
    where = path(assignment, course)
    data = (course or Course()).grading_file(assignment, NAME)
    variants = [_variant("mutant", e) for e in data.get("mutant", [])]
    variants += [_variant("alternative", e) for e in data.get("alternative", [])]
    names = [v.name for v in variants]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"{where}: duplicate names {sorted(duplicates)}")
    return variants
