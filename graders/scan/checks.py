"""The checks of the scan (phase 3): each node of every scanned unit against the catalogue of
:mod:`graders.scan.catalogue`, with names resolved by :class:`graders.scan.aliases.Aliases`.

Checks go by kind of node: names (builtins, history, ``exec``, ``exit``, ...), attributes
(IPython's shell, frames and code, writes to modules or ``sys``), writes into items, calls
(``setattr``/``getattr`` on modules, ``locals()``/``vars()``, magics). Findings are returned in
notebook order, one per (cell, line, rule).
"""

from __future__ import annotations

import ast

from graders.scan.aliases import Aliases, Scope, short
from graders.scan.catalogue import (
    CELL_MAGICS_OK,
    CONFIG_ITEMS,
    CONFIG_WRITES,
    DOTTED,
    DUNDER_READS,
    DUNDER_WRITES_OK,
    DYNAMIC,
    FRAME_ATTRS,
    HISTORY,
    INTERNALS,
    IPYTHON,
    LINE_MAGICS_OK,
    MAGIC,
    MAPPING_WRITES,
    PATCH,
    PROCESS,
    RUN_CODE,
    STAR_FLAGGED,
    TOO_DEEP,
    Finding,
    installs_packages,
    lookup,
)
from graders.scan.cells import Unit, literal, magic_call


class Scan(Aliases):
    """Scopes and module aliases of a whole notebook, then the findings in its scanned units."""

    def __init__(self, units: list[Unit]) -> None:
        super().__init__(units)
        self.imported_flags: set[str] = set()
        self.magic_names: set[int] = set()
        self.findings: list[tuple[int, int, int, Finding]] = []

    # -------------------------------------------------------------------------- phase 1 hooks
    def flag_import(self, unit: Unit, node: ast.AST, path: str, star: bool = False) -> None:
        if not unit.scanned:
            return
        if star and path in STAR_FLAGGED:
            rule, names = STAR_FLAGGED[path]
            self.add(unit, node, rule, f"imports every public name of {path} ({names})")
            return
        hit = lookup(path)
        if hit is not None:
            key, (rule, what) = hit
            self.imported_flags.add(key)
            self.add(unit, node, rule, f"imports {path} ({what})")

    def flag_unreadable(self, unit: Unit) -> None:
        self.add(unit, unit.tree, DYNAMIC, TOO_DEEP)

    # -------------------------------------------------------------------------- phase 3
    def add(self, unit: Unit, node: ast.AST, rule: str, reason: str) -> None:
        finding = Finding(rule, reason, unit.cell, unit.line(node))
        self.findings.append((unit.position, finding.line, len(self.findings), finding))

    def check(self) -> None:
        for unit in self.units:
            if not unit.scanned or self._shadowed(unit.automagic):
                continue
            try:
                for node, scope, loops in unit.nodes:
                    self._check(node, scope, loops, unit)
            except RecursionError:
                self.add(unit, unit.tree, DYNAMIC, TOO_DEEP)

    def _shadowed(self, magic: str) -> bool:
        """IPython runs a one-line cell as Python, not as magic, if the name is a variable."""
        return bool(magic) and magic in self.module.locals and magic not in self.deleted

    def _check(self, node: ast.AST, scope: Scope, loops: frozenset[str], unit: Unit) -> None:
        if isinstance(node, ast.Name):
            self._check_name(node, scope, loops, unit)
        elif isinstance(node, ast.Attribute):
            self._check_attribute(node, scope, unit)
        elif isinstance(node, ast.Subscript) and not isinstance(node.ctx, ast.Load):
            self._check_item_write(node, scope, unit)
        elif isinstance(node, ast.Call):
            self._check_call(node, scope, unit)

    def _check_path(self, node: ast.AST, scope: Scope, unit: Unit) -> None:
        path = self.path(node, scope)
        hit = lookup(path) if path else None
        if hit is not None and hit[0] not in self.imported_flags:
            key, (rule, what) = hit
            self.add(unit, node, rule, f"uses {key} ({what})")

    def _check_name(
        self, node: ast.Name, scope: Scope, loops: frozenset[str], unit: Unit
    ) -> None:
        name = node.id
        if not self.is_global(name, scope):
            if isinstance(node.ctx, ast.Load):
                self._check_path(node, scope, unit)
        elif name in ("__builtins__", "__builtin__"):
            self.add(unit, node, INTERNALS, f"uses {name} (the interpreter's built-in names)")
        elif isinstance(node.ctx, ast.Store):
            return
        elif name == "get_ipython":
            if id(node) not in self.magic_names:
                self.add(unit, node, IPYTHON, "calls get_ipython() (the running IPython shell)")
        elif HISTORY.match(name) and (name not in loops or isinstance(node.ctx, ast.Del)):
            verb = "deletes" if isinstance(node.ctx, ast.Del) else "reads"
            self.add(unit, node, IPYTHON, f"{verb} IPython's input/output history ({name})")
        elif name in RUN_CODE:
            self.add(unit, node, DYNAMIC, RUN_CODE[name])
        elif name == "globals":
            self.add(unit, node, DYNAMIC, "uses globals() (the notebook's namespace as a mapping)")
        elif name in ("exit", "quit"):
            self.add(unit, node, PROCESS, f"ends the kernel ({name})")
        elif isinstance(node.ctx, ast.Load):
            self._check_path(node, scope, unit)

    def _check_attribute(self, node: ast.Attribute, scope: Scope, unit: Unit) -> None:
        attr = node.attr
        inner = node.value
        if (
            isinstance(inner, ast.Call)
            and isinstance(inner.func, ast.Name)
            and inner.func.id == "get_ipython"
            and id(inner.func) not in self.magic_names
            and self.is_global("get_ipython", scope)
        ):
            self.magic_names.add(id(inner.func))
            self.add(unit, node, IPYTHON, f"uses get_ipython().{attr} (the running IPython shell)")
        if attr == "get_ipython":
            self.add(unit, node, IPYTHON, "uses get_ipython (the running IPython shell)")
        if attr in FRAME_ATTRS:
            self.add(unit, node, INTERNALS, f"reaches frame or code internals (.{attr})")
        if attr in DUNDER_READS:
            self.add(unit, node, INTERNALS, f"reaches {attr} (interpreter internals)")
        base = self.path(inner, scope)
        if attr == "__dict__" and base is not None:
            self.add(unit, node, INTERNALS, f"reaches the __dict__ of {short(inner)} ({base})")
        if isinstance(node.ctx, ast.Load):
            self._check_path(node, scope, unit)
            return
        verb = "deletes" if isinstance(node.ctx, ast.Del) else "replaces"
        if base is not None:
            full = f"{base}.{attr}"
            if base.split(".")[-1] == "sys":
                self.add(unit, node, INTERNALS, f"{verb} {short(node)} (an interpreter setting)")
            elif not full.startswith(CONFIG_WRITES):
                self.add(unit, node, PATCH, f"{verb} {short(node)}{_of(full, node)}")
        elif attr.startswith("__") and attr.endswith("__") and attr not in DUNDER_WRITES_OK:
            self.add(unit, node, INTERNALS, f"{verb} {short(node)} (a special attribute)")

    def _check_item_write(self, node: ast.Subscript, scope: Scope, unit: Unit) -> None:
        value = node.value
        if (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id in ("globals", "locals", "vars")
            and not value.args
            and self.is_global(value.func.id, scope)
        ):
            self.add(unit, node, DYNAMIC, f"writes names through {value.func.id}()")
            return
        base = self.path(value, scope)
        if base is not None and not CONFIG_ITEMS.search(base):
            verb = "deletes from" if isinstance(node.ctx, ast.Del) else "writes into"
            self.add(unit, node, PATCH, f"{verb} {short(value)}[...]{_of(base, value)}")

    def _check_call(self, node: ast.Call, scope: Scope, unit: Unit) -> None:
        magic = magic_call(node)
        if magic is not None and self.is_global("get_ipython", scope):
            self._check_magic(magic[0], node, unit)
        func = node.func
        if isinstance(func, ast.Attribute):
            if func.attr in ("__setattr__", "__delattr__"):
                targets = [func.value, *node.args[:1]]
                base = next((p for t in targets if (p := self.path(t, scope))), None)
                if base is not None:
                    self.add(unit, node, PATCH, f"calls {func.attr} on {base}")
            elif func.attr in MAPPING_WRITES and isinstance(func.value, ast.Call):
                inner = func.value.func
                if (
                    isinstance(inner, ast.Name)
                    and inner.id in ("locals", "vars")
                    and not func.value.args
                    and self.is_global(inner.id, scope)
                ):
                    self.add(unit, node, DYNAMIC, f"writes names through {inner.id}()")
            return
        if not isinstance(func, ast.Name) or not self.is_global(func.id, scope):
            return
        name, args = func.id, node.args
        if name in ("setattr", "delattr") and args:
            base = self.path(args[0], scope)
            attr = literal(args[1]) if len(args) > 1 else None
            if base is not None:
                self.add(unit, node, PATCH, f"{name}() on {short(args[0])}{_of(base, args[0])}")
            elif attr and attr.startswith("__") and attr.endswith("__"):
                self.add(unit, node, INTERNALS, f"{name}() of the special attribute {attr}")
        elif name in ("getattr", "hasattr") and len(args) >= 2:
            attr = literal(args[1])
            base = self.path(args[0], scope)
            if attr is None and base is not None:
                self.add(unit, node, DYNAMIC,
                         f"{name}() of a computed name on {short(args[0])}{_of(base, args[0])}")
            elif attr in FRAME_ATTRS or attr in DUNDER_READS:
                self.add(unit, node, INTERNALS, f"{name}() of {attr} (interpreter internals)")
            elif attr is not None and base is not None:
                self._check_path(node, scope, unit)
        elif name in ("locals", "vars") and not args and not scope.function_like:
            self.add(unit, node, DYNAMIC, f"uses {name}() (the notebook's namespace as a mapping)")
        elif name == "vars" and args:
            base = self.path(args[0], scope)
            if base is not None:
                self.add(unit, node, INTERNALS, f"reads the namespace of {base} through vars()")

    def _check_magic(self, method: str, node: ast.Call, unit: Unit) -> None:
        self.magic_names.add(id(node.func.value.func))
        args = node.args
        first = literal(args[0]) if args else None
        if method in ("system", "getoutput"):
            if method == "system" and first is not None and installs_packages(first):
                return  # e.g. Colab's `!pip install ...` of the course's package
            command = first if first is not None else "..."
            self.add(unit, node, MAGIC, f"runs a shell command (!{command[:40]})")
        elif method == "run_line_magic" and first is not None:
            argument = literal(args[1]) if len(args) > 1 else ""
            if first == "pip" and argument is not None and installs_packages(argument, magic=True):
                return
            if first not in LINE_MAGICS_OK or (
                first.startswith("pinfo") and not DOTTED.match(argument or "")
            ):
                self.add(unit, node, MAGIC, f"runs the IPython magic %{first}")
        elif method == "run_cell_magic" and first is not None:
            if first not in CELL_MAGICS_OK:
                self.add(unit, node, MAGIC, f"runs the IPython cell magic %%{first}")
        else:
            self.add(unit, node, IPYTHON, f"uses get_ipython().{method} (the running shell)")

    def result(self) -> list[Finding]:
        seen: set[tuple[str, int, str]] = set()
        out = []
        for _pos, _line, _order, finding in sorted(self.findings, key=lambda t: t[:3]):
            key = (finding.cell, finding.line, finding.rule)
            if key not in seen:
                seen.add(key)
                out.append(finding)
        return out


def _of(path: str, node: ast.AST) -> str:
    """`` (numpy.allclose)`` when the path says more than the source text."""
    return "" if path == short(node) else f" ({path})"

