"""Reading a notebook's code cells the way nbgrader and IPython run them.

Which cells a student controls (:func:`locked_ids`: the others nbgrader restores from the
source notebook), and each cell's code as IPython runs it: ``%magic`` and ``!shell`` lines
transformed into visible ``get_ipython()`` calls, the statements of ``%time``/``%timeit`` as
code of their own, a one-line cell that automagic runs as a magic, line numbers mapped back to
the cell's source. The result is a list of :class:`Unit` (parsed code, nothing executed).
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nbformat import NotebookNode

from graders import syntax
from graders.notebooks import grade_id

if TYPE_CHECKING:
    from graders.scan.aliases import Scope

#: Magics whose statements are scanned as code of their own.
_TIMED = frozenset({"time", "timeit"})

_TRANSFORMER = None


def _ipython_transform(source: str) -> str:
    global _TRANSFORMER
    if _TRANSFORMER is None:
        from IPython.core.inputtransformer2 import TransformerManager

        _TRANSFORMER = TransformerManager()
    return _TRANSFORMER.transform_cell(source)


class _TooDeep(Exception):
    """Python itself may accept the code (with a higher recursion limit); the scan cannot."""


def _ast_parse(source: str) -> ast.Module | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return syntax.parse(source)
    except (SyntaxError, ValueError):
        return None
    except (RecursionError, MemoryError) as err:
        raise _TooDeep from err


def _parse(source: str) -> tuple[ast.Module, list[int], str] | None:
    """The cell as IPython runs it, for each of its lines the line of ``source`` (1-based), and
    its text.

    Plain Python is what IPython runs unchanged; otherwise IPython's transformation is applied
    (it drops leading blank lines and joins ``\\``-continued magic lines, hence the map).
    """
    tree = _ast_parse(source)
    if tree is not None:
        return tree, list(range(1, source.count("\n") + 2)), source
    original = source.splitlines()
    skip = 0
    while skip < len(original) and not original[skip].strip():
        skip += 1
    try:
        code = _ipython_transform("\n".join(original[skip:]) + "\n")
    except Exception:  # noqa: BLE001 - whatever IPython cannot read, it cannot run either
        return None
    tree = _ast_parse(code)
    if tree is None:
        return None
    rest = original[skip:]
    lines, i = [], 0
    for new in code.splitlines():
        lines.append(skip + min(i, max(len(rest) - 1, 0)) + 1)
        if i < len(rest) and rest[i] == new:
            i += 1
            continue
        i += 1
        if "get_ipython()" in new:  # an escaped command: IPython joined its continued lines
            while i < len(rest) and rest[i - 1].rstrip().endswith("\\"):
                i += 1
    return tree, lines, code


_MAGIC_NAMES: frozenset[str] = frozenset()
#: Line magics of ipykernel's shell (``ipykernel.zmqshell.KernelMagics``), not imported here.
_KERNEL_MAGICS = ("edit", "clear", "less", "more", "man", "connect_info", "qtconsole",
                  "autosave", "subshell")


def _magic_names() -> frozenset[str]:
    """Names IPython runs as a magic or a shell alias when a one-line cell starts with them."""
    global _MAGIC_NAMES
    if not _MAGIC_NAMES:
        from IPython.core import magics
        from IPython.core.alias import default_aliases

        names = set(_KERNEL_MAGICS)
        names.update(alias for alias, _command in default_aliases())
        for attr in dir(magics):
            table = getattr(getattr(magics, attr), "magics", None)
            if isinstance(table, dict):
                names.update(table.get("line", {}))
        _MAGIC_NAMES = frozenset(names)
    return _MAGIC_NAMES


def _automagic(source: str) -> tuple[str, str, int] | None:
    """A one-line cell that IPython's prefilter runs as a magic without ``%`` (automagic, on by
    default: ``history``, ``run x.py``, ``cat *.ipynb``): the magic's name, the cell written
    with ``%``, and its line. IPython skips it when the name is a variable
    (:mod:`graders.scan.checks`)."""
    stripped = source.strip()
    if not stripped or "\n" in stripped or stripped[0] in "%!?,;/":
        return None
    try:
        code = _ipython_transform(source)
    except Exception:  # noqa: BLE001 - IPython would not run it either
        return None
    if len(code.splitlines()) != 1:
        return None
    from IPython.core.splitinput import LineInfo

    info = LineInfo(code.splitlines()[0])
    if info.esc or info.ifun not in _magic_names() or info.the_rest[:1] in ("=", ","):
        return None
    line = source[: source.index(stripped[0])].count("\n") + 1
    return info.ifun, f"%{info.ifun} {info.the_rest}", line


def _timed_statement(arg: str) -> list[str]:
    """Candidate statements of a ``%time``/``%timeit`` argument, options stripped in turn."""
    tokens = arg.split()
    return [arg] + [" ".join(tokens[k:]) for k in range(1, min(len(tokens), 8))]


@dataclass
class Unit:
    """One piece of code run in the notebook's namespace: a cell or a timed magic's statement."""

    tree: ast.Module
    lines: list[int]
    position: int  # the cell's index in the notebook
    cell: str
    scanned: bool
    too_deep: bool = False
    automagic: str = ""  # a one-line cell that IPython runs as the magic of this name
    nodes: list[tuple[ast.AST, Scope, frozenset[str]]] = field(default_factory=list)

    def line(self, node: ast.AST) -> int:
        """The line of ``node`` in the cell's source (1-based)."""
        lineno = getattr(node, "lineno", 1)
        return self.lines[min(max(lineno, 1), len(self.lines)) - 1]


def magic_call(node: ast.AST) -> tuple[str, ast.Call] | None:
    """``get_ipython().<method>(...)``: the method name and the call."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Call)
        and isinstance(node.func.value.func, ast.Name)
        and node.func.value.func.id == "get_ipython"
        and not node.func.value.args
    ):
        return node.func.attr, node
    return None


def literal(node: ast.AST | None) -> str | None:
    """The value of a string literal, else ``None``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _units(source: str, position: int, cell: str, scanned: bool, depth: int = 0) -> list[Unit]:
    """The cell's code, followed by the statements of its ``%time``/``%timeit`` magics."""
    try:
        parsed = _parse(source)
    except _TooDeep:
        return [Unit(ast.Module(body=[], type_ignores=[]), [1], position, cell, scanned, True)]
    units = []
    if parsed is not None:
        tree, lines, code = parsed
        units.append(Unit(tree, lines, position, cell, scanned))
        if depth <= 5 and "_magic" in code:
            units += _timed_units(units[0], position, cell, scanned, depth)
    auto = _automagic(source) if depth <= 5 else None
    if auto is not None:
        name, text, line = auto
        for unit in _units(text, position, cell, scanned, depth + 1):
            unit.lines = [line + n - 1 for n in unit.lines]
            unit.automagic = unit.automagic or name
            units.append(unit)
    return units


def _timed_units(
    parent: Unit, position: int, cell: str, scanned: bool, depth: int
) -> list[Unit]:
    """The statements of the ``%time``/``%timeit`` magics in ``parent``, as units of their own."""
    units = []
    for node in ast.walk(parent.tree):
        magic = magic_call(node)
        if magic is None or magic[0] not in ("run_line_magic", "run_cell_magic"):
            continue
        method, call = magic
        name = literal(call.args[0]) if call.args else None
        if name not in _TIMED:
            continue
        base = parent.line(call)
        texts = [(literal(call.args[1]) if len(call.args) > 1 else None, 0)]
        if method == "run_cell_magic":
            texts.append((literal(call.args[2]) if len(call.args) > 2 else None, 1))
        for text, offset in texts:
            if not text:
                continue
            candidates = _timed_statement(text) if offset == 0 else [text]
            for candidate in candidates:
                sub = _units(candidate, position, cell, scanned, depth + 1)
                if sub:
                    for unit in sub:
                        unit.lines = [base + offset + n - 1 for n in unit.lines]
                    units += sub
                    break
    return units


def locked_ids(source_nb: NotebookNode) -> set[str]:
    """grade_ids of the cells whose source nbgrader restores from the source notebook.

    As ``nbgrader.utils.is_locked`` (nbgrader 0.9.6): a cell with nbgrader metadata that is not a
    solution cell and is either a grade (test) cell or marked ``locked``.
    """
    ids = set()
    for cell in source_nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        gid = grade_id(cell)
        if not meta or not gid or meta.get("solution"):
            continue
        if meta.get("grade") or meta.get("locked"):
            ids.add(gid)
    return ids


def notebook_units(nb: NotebookNode, locked: Collection[str] = ()) -> list[Unit]:
    """The code of every code cell of ``nb``, in notebook order: cells whose grade_id is in
    ``locked`` only when they may import something, as units that are not scanned."""
    locked = set(locked)
    units: list[Unit] = []
    for position, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        gid = grade_id(cell)
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(s for s in source if isinstance(s, str))
        elif not isinstance(source, str):
            source = ""
        scanned = gid not in locked
        if scanned or "import" in source:  # a locked cell matters for its imports only
            units += _units(source, position, gid or f"#{position}", scanned)
    return units
