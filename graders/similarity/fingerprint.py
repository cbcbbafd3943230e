"""Fingerprints of code: normalised tokens, k-grams, winnowing (Schleimer, Wilkerson, Aiken 2003).

Student code is hostile text: it is only ever matched by one regular expression here, never
parsed by Python, compiled, imported or run. The tokenizer therefore never fails (a broken
string or bracket is just more tokens), and it costs linear time in the text.

Normalisation makes the usual disguises invisible:

- comments, blank lines, indentation and line breaks are dropped (reformatting);
- a string that is a statement of its own (a docstring, a string used as a comment) is dropped;
  other strings become ``S``; numbers keep their value (``0.50`` and ``0.5`` are one token);
- identifiers the student chooses become ``V`` (renaming): variables, parameters, functions,
  classes, and attributes of ``self``/``cls``. Keywords, Python's builtins (``len``, ``range``)
  and attribute names of other objects (``.sum``, ``.T``, ``.zeros_like``) stay: renaming them
  would change what the code does, and keeping them tells independent solutions apart;
- ``;``, a trailing comma before a closing bracket, and grouping parentheses (those that do
  not call anything: ``return (a, b)``, ``x = (y + 1)``) are dropped (statement layout).

Each *unit* (a run of lines a student wrote, see :mod:`graders.similarity.extract`) is
fingerprinted on its own, so reordering functions or blocks changes nothing. A fingerprint is
the hash of ``K`` consecutive normalised tokens, kept when winnowing selects it (the smallest
hash of each window of ``W`` consecutive k-grams): any shared run of ``K + W - 1`` tokens is
guaranteed to share a fingerprint, and only about ``2 / (W + 1)`` of the k-grams are kept.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Iterable
from dataclasses import dataclass

#: tokens per k-gram: a match shorter than this is noise (``x = x + 1``)
K = 8
#: winnowing window, in k-grams
W = 4

_TOKEN = re.compile(
    r"""
    (?P<comment>\#[^\r\n]*)
   |(?P<string>(?:[rRbBuUfF]{1,2})?(?:'''(?:\\.|[^\\])*?(?:'''|\Z)|\"\"\"(?:\\.|[^\\])*?(?:\"\"\"|\Z)
        |'(?:\\.|[^'\\\r\n])*(?:'|$)|"(?:\\.|[^"\\\r\n])*(?:"|$)))
   |(?P<name>[^\W\d]\w*)
   |(?P<number>0[xXoObB][0-9a-fA-F_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?[jJ]?)
   |(?P<newline>\r?\n|\r)
   |(?P<space>[ \t\f\\]+)
   |(?P<op>\*\*=?|//=?|>>=?|<<=?|->|:=|\.\.\.|[-+*/%@&|^=<>!]=|[-+*/%@&|^~<>()\[\]{},:;.=])
   |(?P<other>\S)
    """,
    re.VERBOSE | re.MULTILINE,
)
_KEYWORDS = frozenset(keyword.kwlist) | frozenset(getattr(keyword, "softkwlist", ()))
_BUILTINS = frozenset(name for name in dir(builtins) if not name.startswith("_"))
_OPEN, _CLOSE = "([{", ")]}"
_SELF = ("self", "cls")


@dataclass(frozen=True)
class Token:
    """A normalised token and where it lies in the text (character offsets)."""

    text: str
    start: int
    end: int


def _number(text: str) -> str:
    try:
        return repr(float(text.replace("_", "")))
    except ValueError:  # hex, octal, complex: as written, lower case
        return text.lower()


def _raw_tokens(text: str, start: int, end: int) -> list[tuple[str, str, int, int]]:
    """(kind, text, start, end) of every token of ``text[start:end]`` (spaces left out)."""
    out = []
    for m in _TOKEN.finditer(text, start, end):
        kind = m.lastgroup or "other"
        if kind != "space":
            out.append((kind, m.group(), m.start(), m.end()))
    return out


def _statement_strings(raw: list[tuple[str, str, int, int]]) -> set[int]:
    """Indexes of string tokens that form a statement of their own (docstrings and the like)."""
    dropped: set[int] = set()
    depth, at_start = 0, True
    i = 0
    while i < len(raw):
        kind, text, _, _ = raw[i]
        if kind == "string" and at_start and depth == 0:
            j = i
            while j < len(raw) and raw[j][0] in ("string", "comment"):
                j += 1
            if j == len(raw) or raw[j][0] == "newline" or raw[j][1] == ";":
                dropped.update(range(i, j))
                i = j
                continue
        if kind == "op" and text in _OPEN:
            depth += 1
        elif kind == "op" and text in _CLOSE:
            depth = max(0, depth - 1)
        if kind == "newline" and depth == 0 or (kind == "op" and text == ";"):
            at_start = True
        elif kind not in ("comment", "newline"):
            at_start = False
        i += 1
    return dropped


def tokens(text: str, start: int = 0, end: int | None = None) -> list[Token]:
    """The normalised tokens of ``text[start:end]`` (see the module docstring)."""
    end = len(text) if end is None else end
    raw = _raw_tokens(text, start, end)
    skip = _statement_strings(raw)
    out: list[Token] = []
    parens: list[bool] = []  # per open "(": whether it is kept (a call), else grouping
    for i, (kind, word, a, b) in enumerate(raw):
        if i in skip or kind in ("comment", "newline"):
            continue
        if kind == "op" and word == "(":
            prev = out[-1].text if out else ""
            call = prev in (")", "]", "S") or prev.startswith(".") or (
                (prev[:1].isalpha() or prev[:1] == "_") and prev not in _KEYWORDS
            )
            parens.append(call)
            if not call:
                continue
        elif kind == "op" and word == ")" and parens and not parens.pop():
            continue
        if kind == "string":
            norm = "S"
        elif kind == "number":
            norm = _number(word)
        elif kind == "name":
            prev = out[-1].text if out else ""
            before = raw[i - 2][1] if i >= 2 and raw[i - 1][1] == "." else ""
            if word in _KEYWORDS:
                norm = word
            elif prev == "." and before not in _SELF:
                norm = "." + word  # an attribute of something the student did not name
            elif word in _BUILTINS and prev != ".":
                norm = word
            else:
                norm = "V"
        elif kind == "op" and word == ";":
            continue
        elif kind == "op" and word == "," and _next_is_close(raw, i):
            continue
        else:
            norm = word
        out.append(Token(norm, a, b))
    return out


def _next_is_close(raw: list[tuple[str, str, int, int]], i: int) -> bool:
    for kind, word, _, _ in raw[i + 1:]:
        if kind in ("comment", "newline"):
            continue
        return kind == "op" and word in _CLOSE
    return False


@dataclass(frozen=True)
class Fingerprint:
    """A selected k-gram: its hash and the characters of the text it covers."""

    hash: int
    start: int
    end: int


class Vocabulary:
    """Token texts as small integers, shared by everything compared in one run (a k-gram's hash
    is the hash of a tuple of these ints, which Python computes the same in every process)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def ids(self, toks: Iterable[Token]) -> list[int]:
        table = self._ids
        return [table.setdefault(t.text, len(table)) for t in toks]


def winnow(hashes: list[int], window: int = W) -> list[int]:
    """Positions chosen by robust winnowing: in each window of ``window`` consecutive hashes the
    smallest (the rightmost of equal ones), each position once. Fewer hashes than a window:
    the smallest of them."""
    if not hashes:
        return []
    if len(hashes) <= window:
        best = min(range(len(hashes)), key=lambda i: (hashes[i], -i))
        return [best]
    chosen: list[int] = []
    for left in range(len(hashes) - window + 1):
        best = left
        for i in range(left + 1, left + window):
            if hashes[i] <= hashes[best]:
                best = i
        if not chosen or chosen[-1] != best:
            chosen.append(best)
    return chosen


def fingerprints(
    text: str,
    units: Iterable[tuple[int, int]],
    vocabulary: Vocabulary,
    k: int = K,
    window: int = W,
) -> tuple[list[Fingerprint], int]:
    """The winnowed fingerprints of each unit ``text[start:end]`` and the number of tokens.

    A unit shorter than ``k`` tokens gives no fingerprint.
    """
    found: list[Fingerprint] = []
    count = 0
    for start, end in units:
        toks = tokens(text, start, end)
        count += len(toks)
        if len(toks) < k:
            continue
        ids = vocabulary.ids(toks)
        hashes = [hash(tuple(ids[i:i + k])) for i in range(len(ids) - k + 1)]
        for i in winnow(hashes, window):
            found.append(Fingerprint(hashes[i], toks[i].start, toks[i + k - 1].end))
    return found, count


def all_hashes(
    text: str, units: Iterable[tuple[int, int]], vocabulary: Vocabulary, k: int = K
) -> set[int]:
    """Every k-gram hash of the units (no winnowing): what code to exclude looks like, so that
    any fingerprint a student shares with it is found whichever k-grams winnowing kept."""
    found: set[int] = set()
    for start, end in units:
        ids = vocabulary.ids(tokens(text, start, end))
        found.update(hash(tuple(ids[i:i + k])) for i in range(len(ids) - k + 1))
    return found
