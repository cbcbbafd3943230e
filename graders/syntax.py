"""``ast.parse`` for this package: one thread at a time in a process.

CPython 3.11's AST constructor counts its recursion depth in per-interpreter state, not per
thread: two threads parsing at once can fail with ``SystemError: AST constructor recursion
depth mismatch`` (python/cpython#106905). A grading batch parses in several threads: the
parent's merge scans each submission (:mod:`graders.scan`) while its kernel launcher reads the
setup cells and the sandbox's paths (:mod:`graders.prestart`, :mod:`graders.sandbox`), and a
forked nbgrader replays the setup cells in a thread of its own (:mod:`graders.verdict`). Seen
once in a class of 32 on 2 cores: a reference submission "crashed" with that error while its
grade was recorded. Parsing takes milliseconds, so a lock costs nothing measurable.
"""

from __future__ import annotations

import ast
import threading

_ONE_AT_A_TIME = threading.Lock()


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    """:func:`ast.parse` of ``source`` (its errors too), never in two threads at once."""
    with _ONE_AT_A_TIME:
        return ast.parse(source, filename)
