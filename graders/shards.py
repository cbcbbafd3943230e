"""Shards of a class: independent grading runs (one per machine) split the students by name.

``python -m graders autograde --shard K/N`` grades shard ``K`` of ``N``; a student's shard is a
hash of the name alone, so every machine agrees without talking to the others, adding students
moves nobody, and the ``N`` shards are disjoint and together hold everyone.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (1 <= K <= N) as ``(K, N)``; a ValueError saying what is expected otherwise."""
    match = _SHARD.fullmatch(text or "")
    if not match:
        raise ValueError(f"shard must look like K/N (for example 1/2), not {text!r}")
    k, n = int(match[1]), int(match[2])
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"shard {text!r}: need 1 <= K <= N and N >= 1")
    return k, n


def shard_of(student: str, n: int) -> int:
    """The shard (1..n) of ``student``: a hash of the name alone, the same on every machine."""
    digest = hashlib.sha256(student.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def select_shard(students: Iterable[str], k: int, n: int) -> list[str]:
    """The students (in the given order, without repeats) that belong to shard ``k`` of ``n``."""
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: need 1 <= K <= N and N >= 1")
    return [s for s in dict.fromkeys(students) if shard_of(s, n) == k]
