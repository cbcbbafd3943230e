"""Generated classes for the similarity check: independent solutions and disguised copies.

Independent solutions come from the assignment itself: the reference and every mutant and
alternative of ``source/<a>/grading/mutations.toml`` (:mod:`graders.mutations`), each applied to
the release by :func:`graders.notebooks.solved`. A *disguised copy* of a notebook has every
solution cell passed through :func:`disguise`, the tricks a student uses to hide a copy:
variables and ``self`` attributes renamed, the code reformatted (``ast.unparse``: other line
breaks, spacing and quotes, comments gone), top-level functions and classes in another order,
docstrings rewritten, comments added, and dead code inserted into every function.

This is the instructor's own code (the course's reference and its variants), parsed with
:mod:`ast` to transform it; nothing here reads a student's submission.
"""

from __future__ import annotations

import ast
import base64
import builtins
import copy
import random
from collections.abc import Iterable

from nbformat import NotebookNode

from graders import mutations, notebooks, syntax
from graders.course import Course

_KEEP = frozenset(dir(builtins)) | {"self", "cls"}


class _Renamer(ast.NodeTransformer):
    """Renames local variables (not parameters: they are the task's interface) and attributes
    of ``self`` that the code assigns."""

    def __init__(self, names: dict[str, str], attrs: dict[str, str]) -> None:
        self.names, self.attrs = names, attrs

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.names.get(node.id, node.id)
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.Attribute:
        self.generic_visit(node)
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            node.attr = self.attrs.get(node.attr, node.attr)
        return node


def _assigned(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Names stored inside functions, and attributes of ``self`` stored anywhere."""
    names, attrs = set(), set()
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        params = {a.arg for a in [*func.args.args, *func.args.kwonlyargs, *func.args.posonlyargs]}
        for node in ast.walk(func):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                if node.id not in params and node.id not in _KEEP:
                    names.add(node.id)
            if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name) and node.value.id == "self"):
                attrs.add(node.attr)
    return names, attrs


def _dead_code(rng: random.Random, n: int) -> list[ast.stmt]:
    r = rng.randint(2, 999)
    templates = [
        f"if False:\n    unused_{n} = {r}",
        f"debug_{n} = [{r}]",
        f"for _ in range({r} - {r}):\n    pass_{n} = None",
        f"while {r} < 0:\n    break",
    ]
    return syntax.parse(rng.choice(templates)).body


def _rewrite_docstrings_and_pad(tree: ast.Module, rng: random.Random) -> None:
    counter = 0
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        body = func.body
        first = body[0] if body else None
        has_doc = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                   and isinstance(first.value.value, str))
        if has_doc:
            body[0].value.value = f"My own version (v{rng.randint(1, 9)})."
        if isinstance(func, ast.ClassDef):
            continue
        counter += 1
        at = rng.randint(1 if has_doc else 0, len(body))
        func.body = body[:at] + _dead_code(rng, counter) + body[at:]


def disguise(source: str, seed: int = 0) -> str:
    """``source`` with the usual disguises of a copy applied (see the module docstring); the
    code still does the same. Source that does not parse gets comments and blank lines only."""
    rng = random.Random(seed)
    try:
        tree = syntax.parse(source)
    except SyntaxError:
        return "# my solution\n\n" + source.replace("\n", "\n\n")
    names, attrs = _assigned(tree)
    new = {n: f"{n}_{rng.choice(['v', 'my', 'tmp', 'x'])}{i}" for i, n in enumerate(sorted(names))}
    new_attrs = {a: f"{a}_s{i}" for i, a in enumerate(sorted(attrs))}
    tree = _Renamer(new, new_attrs).visit(tree)
    _rewrite_docstrings_and_pad(tree, rng)
    defs = [i for i, node in enumerate(tree.body)
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    if len(defs) > 1:  # the top-level definitions in reverse order, other statements stay
        moved = [tree.body[i] for i in defs][::-1]
        for i, node in zip(defs, moved, strict=True):
            tree.body[i] = node
    ast.fix_missing_locations(tree)
    text = ast.unparse(tree)
    return f"# solution, written by me\n{text}\n# end of solution\n"


def _solution_cells(nb: NotebookNode) -> Iterable[NotebookNode]:
    return (c for c in nb.cells if notebooks.is_solution(c) and c.cell_type == "code")


def disguised_copy(
    nb: NotebookNode, seed: int = 0, cells: Iterable[str] | None = None
) -> NotebookNode:
    """A copy of a submission with its solution cells (or only those with the grade ids
    ``cells``) disguised, each with its own seed."""
    out = copy.deepcopy(nb)
    chosen = set(cells) if cells is not None else None
    for i, cell in enumerate(_solution_cells(out)):
        if chosen is None or notebooks.grade_id(cell) in chosen:
            cell.source = disguise(cell.source, seed * 1000 + i)
    return out


def variants(course: Course, assignment: str) -> dict[str, tuple[NotebookNode, str | None]]:
    """The independent solutions, each with the grade id of the cell that is its own work:
    ``ref`` (the reference; None) and one notebook per mutant and alternative (named
    ``mut-<name>`` and ``alt-<name>``; the cell it changes)."""
    source = notebooks.read(course.source_path(assignment))
    release = notebooks.read(course.release_path(assignment))
    found = {"ref": (notebooks.solved(source, release), None)}
    for v in mutations.load(assignment, course):
        prefix = "mut" if v.kind == "mutant" else "alt"
        nb = notebooks.solved(source, release, mutations=[v.mutation])
        found[f"{prefix}-{v.name}"] = (nb, v.mutation.cell)
    return found


def generated_class(
    course: Course, assignment: str, copies: dict[str, int], seed: int = 0
) -> dict[str, NotebookNode]:
    """:func:`variants` plus, for each ``name: n`` of ``copies``, ``n`` disguised copies of that
    variant, named ``copy<j>-<name>`` (j = 1..n). A variant differs from the reference in one
    cell only (the rest stands for what every student writes alike), so a copy disguises that
    cell: the copied work."""
    found = variants(course, assignment)
    out = {name: nb for name, (nb, _) in found.items()}
    for name, n in copies.items():
        nb, cell = found[name]
        for j in range(1, n + 1):
            cells = [cell] if cell else None
            out[f"copy{j}-{name}"] = disguised_copy(nb, seed + 7 * j + len(out), cells)
    return out


def large_class(
    course: Course, assignment: str, size: int, seed: int = 0, output_kb: int = 40
) -> dict[str, NotebookNode]:
    """``size`` notebooks for timing: each picks, per solution cell, the reference or one of
    that cell's mutants and alternatives at random, then disguises every cell; three cells
    get an image output of ``output_kb`` KiB, as real submissions carry plots."""
    rng = random.Random(seed)
    source = notebooks.read(course.source_path(assignment))
    release = notebooks.read(course.release_path(assignment))
    cells = {notebooks.grade_id(c): c.source for c in source.cells}
    by_cell: dict[str, list] = {}
    for v in mutations.load(assignment, course):
        try:  # a variant whose text the source no longer has is left out (timing only)
            v.mutation.apply(cells.get(v.mutation.cell, ""))
        except ValueError:
            continue
        by_cell.setdefault(v.mutation.cell, []).append(v.mutation)
    found = {}
    for i in range(size):
        chosen = [rng.choice([None, *options]) for options in by_cell.values()]
        nb = notebooks.solved(source, release, mutations=[m for m in chosen if m])
        nb = disguised_copy(nb, seed + i)
        for cell in [c for c in nb.cells if c.cell_type == "code"][-3:]:
            data = base64.b64encode(rng.randbytes(output_kb * 768)).decode()
            cell.outputs = [NotebookNode(output_type="display_data", metadata={},
                                         data={"image/png": data})]
        found[f"student{i:03d}"] = nb
    return found
