"""A whole class compared: which fingerprints count, every pair's scores, and clusters.

Fingerprints that every student is expected to share are excluded before anything is scored:

- those of the **release** (starter code and visible tests, pasted again by a student);
- those of the **reference solution** (the instructor's way is the obvious way: ``out = x @ W +
  b`` is no evidence); ``Settings.reference = False`` keeps them;
- **common** ones, found in more than ``max_share`` of the class (and in at least
  ``min_common`` students): idioms everyone writes;
- every fingerprint of a task a student solved in fewer than ``min_tokens`` tokens.

A pair's score for a task is the number of (kept) fingerprints the two share, divided by the
smaller of their two counts for that task (at least ``floor``): 1.0 when one student's work is
wholly contained in the other's, so inserted dead code does not dilute it. The overall score
does the same over all tasks together. Pairs are ranked by overall score, then by the number
of shared fingerprints. A **cluster** is a connected group of three or more students whose
pairs score at least the threshold overall.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import combinations

from graders.similarity.extract import TaskText
from graders.similarity.fingerprint import (
    Fingerprint,
    K,
    Vocabulary,
    W,
    all_hashes,
    fingerprints,
)


@dataclass(frozen=True)
class Settings:
    """How a class is compared (see the module docstring)."""

    threshold: float = 0.5
    max_share: float = 0.5
    min_common: int = 4
    min_tokens: int = 12
    floor: int = 4
    reference: bool = True  # exclude the reference solution's fingerprints
    k: int = K
    window: int = W


@dataclass
class Student:
    """One submission: its parts, all its fingerprints per task, and the kept hashes."""

    name: str
    parts: dict[str, TaskText]
    prints: dict[str, list[Fingerprint]]
    kept: dict[str, set[int]] = field(default_factory=dict)

    def kept_count(self, task: str | None = None) -> int:
        if task is None:
            return sum(len(h) for h in self.kept.values())
        return len(self.kept.get(task, ()))


@dataclass
class Pair:
    """Two students (``a`` < ``b``): shared kept fingerprints and scores, per task and overall."""

    a: str
    b: str
    shared: dict[str, int]
    scores: dict[str, float]
    overall: float

    @property
    def shared_total(self) -> int:
        return sum(self.shared.values())


@dataclass
class Cluster:
    """Students connected by pairs at or above the threshold, and the tasks those pairs share
    at or above it."""

    students: list[str]
    tasks: list[str]


@dataclass
class Comparison:
    """The result for one assignment."""

    assignment: str
    settings: Settings
    tasks: list[str]
    students: dict[str, Student]
    pairs: list[Pair]
    clusters: list[Cluster]
    skipped: dict[str, str] = field(default_factory=dict)  # student -> why not compared
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> fingerprints

    def pair(self, a: str, b: str) -> Pair | None:
        a, b = sorted((a, b))
        return next((p for p in self.pairs if (p.a, p.b) == (a, b)), None)

    def flagged(self) -> list[Pair]:
        """Pairs at or above the threshold overall, best first."""
        return [p for p in self.pairs if p.overall >= self.settings.threshold]


def fingerprint_parts(
    parts: Mapping[str, TaskText], vocabulary: Vocabulary, settings: Settings
) -> tuple[dict[str, list[Fingerprint]], dict[str, int]]:
    """Per task, the fingerprints of the student's runs, and the number of tokens."""
    prints, counts = {}, {}
    for task, part in parts.items():
        prints[task], counts[task] = fingerprints(
            part.text, part.runs, vocabulary, settings.k, settings.window
        )
    return prints, counts


def compare(
    assignment: str,
    submissions: Mapping[str, Mapping[str, TaskText]],
    tasks: list[str],
    base: set[int],
    reference: Mapping[str, TaskText] | None,
    vocabulary: Vocabulary,
    settings: Settings | None = None,
    skipped: Mapping[str, str] | None = None,
) -> Comparison:
    """Compare every pair of ``submissions`` (student -> task -> text). ``base``: hashes of the
    release, always excluded; ``reference``: the reference solution's parts (fingerprinted
    with the same ``vocabulary``, which ``base`` must have used too)."""
    settings = settings or Settings()
    excluded: dict[str, int] = defaultdict(int)
    ref_hashes: set[int] = set()
    if reference is not None and settings.reference:
        for part in reference.values():
            ref_hashes |= all_hashes(part.text, part.runs, vocabulary, settings.k)
    students: dict[str, Student] = {}
    owners: dict[tuple[str, int], list[str]] = defaultdict(list)
    for name in sorted(submissions):
        prints, counts = fingerprint_parts(submissions[name], vocabulary, settings)
        student = Student(name, dict(submissions[name]), prints)
        for task, found in prints.items():
            hashes = {f.hash for f in found}
            if counts[task] < settings.min_tokens:
                excluded["short solution"] += len(hashes)
                continue
            kept = hashes - base - ref_hashes
            excluded["release"] += len(hashes & base)
            excluded["reference"] += len(hashes - base) - len(kept)
            student.kept[task] = kept
            for h in kept:
                owners[task, h].append(name)
        students[name] = student
    limit = max(settings.max_share * len(students), settings.min_common - 1)
    shared: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (task, h), names in owners.items():
        if len(names) > limit:
            excluded["common"] += 1
            for name in names:
                students[name].kept[task].discard(h)
            continue
        for a, b in combinations(names, 2):  # names are sorted: a < b
            shared[a, b][task] += 1
    pairs = [_pair(a, b, dict(counts), students, settings) for (a, b), counts in shared.items()]
    pairs.sort(key=lambda p: (-p.overall, -p.shared_total, p.a, p.b))
    return Comparison(
        assignment, settings, tasks, students, pairs, clusters(pairs, settings.threshold),
        dict(skipped or {}), dict(excluded),
    )


def _pair(
    a: str, b: str, shared: dict[str, int], students: dict[str, Student], settings: Settings
) -> Pair:
    sa, sb = students[a], students[b]
    scores = {
        task: n / max(min(sa.kept_count(task), sb.kept_count(task)), settings.floor)
        for task, n in shared.items()
    }
    total = sum(shared.values())
    overall = total / max(min(sa.kept_count(), sb.kept_count()), settings.floor)
    return Pair(a, b, shared, scores, min(1.0, overall))


def clusters(pairs: list[Pair], threshold: float) -> list[Cluster]:
    """Connected groups of three or more students over pairs scoring ``threshold`` or more,
    largest first; each with the tasks its pairs share at or above the threshold."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    strong = [p for p in pairs if p.overall >= threshold]
    for p in strong:
        parent[find(p.a)] = find(p.b)
    groups: dict[str, list[str]] = defaultdict(list)
    for name in list(parent):
        groups[find(name)].append(name)
    found = []
    for members in groups.values():
        if len(members) < 3:
            continue
        inside = set(members)
        tasks: dict[str, None] = {}
        for p in strong:
            if p.a in inside:
                tasks.update((t, None) for t, s in p.scores.items() if s >= threshold)
        found.append(Cluster(sorted(members), list(tasks)))
    return sorted(found, key=lambda c: (-len(c.students), c.students))
