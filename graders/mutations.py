"""Mutants (plausible wrong answers) and alternatives (other correct answers), read from
``tests/mutations/<assignment>.toml``; see the comment at the top of such a file."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from graders.notebooks import Mutation

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MUTATIONS_DIR = Path(__file__).resolve().parent.parent / "tests" / "mutations"


@dataclass(frozen=True)
class Variant:
    """A named change to one solution cell and the test cells it must fail (or pass)."""

    name: str
    kind: str  # "mutant" or "alternative"
    mutation: Mutation
    targets: tuple[str, ...]  # `fails` of a mutant, `covers` of an alternative
    why: str = ""
    demo: bool = False

    @property
    def last_target(self) -> str:
        return self.targets[-1]


def _variant(kind: str, entry: dict) -> Variant:
    replace = tuple(tuple(pair) for pair in entry.get("replace", ()))
    source = entry.get("source")
    if bool(replace) == (source is not None):
        raise ValueError(f"{kind} {entry.get('name')!r}: give exactly one of `replace`, `source`")
    targets = tuple(entry["fails" if kind == "mutant" else "covers"])
    if not targets:
        raise ValueError(f"{kind} {entry['name']!r} names no test cells")
    return Variant(
        name=entry["name"],
        kind=kind,
        mutation=Mutation(cell=entry["cell"], replace=replace, source=source),
        targets=targets,
        why=entry.get("why", ""),
        demo=bool(entry.get("demo", False)),
    )


def _read(assignment: str, directory: Path) -> dict:
    path = directory / f"{assignment}.toml"
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        return tomllib.load(fh)


def sample_settings(assignment: str, directory: Path = MUTATIONS_DIR) -> dict:
    """The ``[samples]`` table: how graders/samples.py derives sample submissions."""
    return _read(assignment, directory).get("samples", {})


def load(assignment: str, directory: Path = MUTATIONS_DIR) -> list[Variant]:
    """All mutants and alternatives of ``assignment`` (empty if it has no file)."""
    data = _read(assignment, directory)
    path = directory / f"{assignment}.toml"
    variants = [_variant("mutant", e) for e in data.get("mutant", [])]
    variants += [_variant("alternative", e) for e in data.get("alternative", [])]
    names = [v.name for v in variants]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"{path}: duplicate names {sorted(duplicates)}")
    return variants
