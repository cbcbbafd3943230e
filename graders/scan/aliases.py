"""Scopes, imports and aliases: which names of a notebook may hold a module, or something
reached from one, and by which dotted path (``m = np; f = m.allclose`` -> ``numpy.allclose``).

:class:`Aliases` reads every unit of a notebook (phase 1: scopes, their names, imports and the
bindings that may carry a module), then propagates module paths through assignments, loops,
defaults and call arguments to a fixpoint (phase 2). :meth:`Aliases.path` then gives the dotted
path an expression may evaluate to. Flagging is left to a subclass (:mod:`graders.scan.checks`),
told of each import and of each unit too deep to read.
"""

from __future__ import annotations

import ast
import collections
from typing import TYPE_CHECKING

from graders.scan.cells import literal

if TYPE_CHECKING:
    from graders.scan.cells import Unit

#: Conventional aliases, for a notebook whose imports are not in the scanned copy.
_CONVENTIONAL = {
    "np": "numpy", "torch": "torch", "nn": "torch.nn", "F": "torch.nn.functional",
    "plt": "matplotlib.pyplot", "pd": "pandas", "dlworkshop": "dlworkshop",
    "checks": "dlworkshop.checks", "os": "os", "sys": "sys", "__builtins__": "builtins",
}


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_LEAVES = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)


class Scope:
    """A Python scope: the notebook's namespace, a class body, a function or a comprehension."""

    def __init__(self, kind: str, parent: Scope | None) -> None:
        self.kind = kind
        self.parent = parent
        self.locals: set[str] = set()
        self.global_decl: set[str] = set()
        self.nonlocal_decl: set[str] = set()
        self.params: list[str] = []

    @property
    def function_like(self) -> bool:
        return self.kind in ("function", "comprehension")


def _target_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def short(node: ast.AST, limit: int = 60) -> str:
    """The source text of ``node``, cut to ``limit`` characters."""
    try:
        text = ast.unparse(node)
    except (RecursionError, ValueError, AttributeError):
        return "..."
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Aliases:
    """Scopes and module aliases of a whole notebook (phases 1 and 2 of the scan)."""

    def __init__(self, units: list[Unit]) -> None:
        # units whose code is too deep to read are dropped from the list by collect()
        self.units = units
        self.module = Scope("module", None)
        self.scope_of: dict[int, Scope] = {}
        # (scope, name, value, where): ``name`` bound in ``scope`` to ``value`` (or to one of its
        # elements: a container of modules counts as a module) evaluated in ``where``
        self.bindings: list[tuple[Scope, str, ast.AST, Scope]] = []
        self.defaults: list[tuple[Scope, str, ast.AST, Scope]] = []
        self.calls: list[tuple[ast.Call, Scope]] = []
        self.defs: list[tuple[Scope, str, ast.AST]] = []
        self.imports: list[tuple[Scope, str, str | None]] = []
        self.aliases: dict[tuple[Scope, str], str] = {}
        self.deleted: set[str] = set()  # names deleted at notebook level

    # -------------------------------------------------------------------------- traversal
    def _inner(self, node: ast.AST, kind: str, parent: Scope) -> Scope:
        scope = self.scope_of.get(id(node))
        if scope is None:
            scope = self.scope_of[id(node)] = Scope(kind, parent)
        return scope

    def walk(self, tree: ast.AST, scope: Scope) -> list[tuple[ast.AST, Scope, frozenset[str]]]:
        """Every node (parents first, in source order) with the scope its names resolve in, and
        (at notebook or class level) the names bound by the enclosing ``for`` loops."""
        out = []
        stack: list[tuple[ast.AST, Scope, frozenset[str]]] = [(tree, scope, frozenset())]
        while stack:
            node, scope, loops = stack.pop()
            out.append((node, scope, loops))
            children = self._children(node, scope, loops)
            children.reverse()
            stack += children
        return out

    def _children(
        self, node: ast.AST, scope: Scope, loops: frozenset[str]
    ) -> list[tuple[ast.AST, Scope, frozenset[str]]]:
        none: frozenset[str] = frozenset()
        if isinstance(node, _FUNCTIONS):
            inner = self._inner(node, "function", scope)
            args = node.args
            outer = [*args.defaults, *(d for d in args.kw_defaults if d is not None)]
            if not isinstance(node, ast.Lambda):
                outer += node.decorator_list
                outer += [node.returns] if node.returns else []
                every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
                every += [a for a in (args.vararg, args.kwarg) if a]
                outer += [a.annotation for a in every if a.annotation]
            body = [node.body] if isinstance(node, ast.Lambda) else node.body
            return [(n, scope, loops) for n in outer] + [(n, inner, none) for n in body]
        if isinstance(node, ast.ClassDef):
            inner = self._inner(node, "class", scope)
            outer = [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]
            return [(n, scope, loops) for n in outer] + [(n, inner, none) for n in node.body]
        if isinstance(node, _COMPREHENSIONS):
            inner = self._inner(node, "comprehension", scope)
            out = []
            for i, gen in enumerate(node.generators):
                out.append((gen.iter, inner if i else scope, loops))
                out.append((gen.target, inner, loops))
                out += [(cond, inner, loops) for cond in gen.ifs]
            parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
            return out + [(part, inner, loops) for part in parts]
        if isinstance(node, ast.NamedExpr):
            target_scope = scope
            while target_scope.kind == "comprehension" and target_scope.parent is not None:
                target_scope = target_scope.parent
            return [(node.target, target_scope, loops), (node.value, scope, loops)]
        if isinstance(node, (ast.For, ast.AsyncFor)) and not scope.function_like:
            inside = loops | _target_names(node.target)
            return [
                (node.target, scope, loops),
                (node.iter, scope, loops),
                *((n, scope, inside) for n in node.body),
                *((n, scope, loops) for n in node.orelse),
            ]
        out = []
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, list):
                out += [(v, scope, loops) for v in value
                        if isinstance(v, ast.AST) and not isinstance(v, _LEAVES)]
            elif isinstance(value, ast.AST) and not isinstance(value, _LEAVES):
                out.append((value, scope, loops))
        return out

    # -------------------------------------------------------------------------- names
    def resolve(self, name: str, scope: Scope) -> tuple[Scope, str]:
        """Where a name read in ``scope`` is bound (Python's rules; classes bind for their body)."""
        s, direct = scope, True
        while s.kind != "module" and s.parent is not None:
            if s.kind == "class":
                if direct and name in s.locals:
                    return s, name
            elif name in s.global_decl:
                return self.module, name
            elif name not in s.nonlocal_decl and name in s.locals:
                return s, name
            s, direct = s.parent, False
        return self.module, name

    def binds_here(self, name: str, scope: Scope) -> tuple[Scope, str]:
        """Which scope a name assigned in ``scope`` binds in."""
        if scope.function_like:
            if name in scope.global_decl:
                return self.module, name
            if name in scope.nonlocal_decl and scope.parent is not None:
                return self.resolve(name, scope.parent)
        return scope, name

    def is_global(self, name: str, scope: Scope) -> bool:
        """A read of ``name`` in ``scope`` may reach the notebook's namespace or the builtins."""
        return not self.resolve(name, scope)[0].function_like

    # -------------------------------------------------------------------------- phase 1
    def collect(self) -> None:
        """Scopes, their names, and every binding that may carry a module."""
        for unit in list(self.units):
            if unit.too_deep and unit.scanned:
                self.flag_unreadable(unit)
            if not unit.scanned:
                self._collect_top(unit.tree.body, unit)
                continue
            try:
                unit.nodes = self.walk(unit.tree, self.module)
                for node, scope, _loops in unit.nodes:
                    self._collect(node, scope, unit)
            except RecursionError:
                self.units.remove(unit)
                if unit.scanned:
                    self.flag_unreadable(unit)

    def _collect_top(self, body: list[ast.stmt], unit: Unit) -> None:
        """What a cell that is not scanned binds at notebook level: its imports and aliases."""
        module = self.module
        for stmt in body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                self._collect_import(stmt, module, unit)
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                module.locals.add(stmt.name)
            elif isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    module.locals.update(_target_names(target))
                    self._bind(module, target, stmt.value)
            elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
                module.locals.update(_target_names(stmt.target))
            elif isinstance(stmt, (ast.For, ast.AsyncFor)):
                module.locals.update(_target_names(stmt.target))
                self._bind(module, stmt.target, stmt.iter)
            elif isinstance(stmt, (ast.With, ast.AsyncWith)):
                for item in stmt.items:
                    if item.optional_vars is not None:
                        module.locals.update(_target_names(item.optional_vars))
            elif isinstance(stmt, ast.Try):
                for handler in stmt.handlers:
                    if handler.name:
                        module.locals.add(handler.name)
                    self._collect_top(handler.body, unit)
            for name in ("body", "orelse", "finalbody"):
                if isinstance(stmt, (ast.For, ast.AsyncFor, ast.While, ast.If, ast.With,
                                     ast.AsyncWith, ast.Try)):
                    self._collect_top(getattr(stmt, name, []), unit)

    def _bind(self, scope: Scope, target: ast.AST, value: ast.AST) -> None:
        if isinstance(target, ast.Name):
            self.bindings.append((scope, target.id, value, scope))
        elif isinstance(target, ast.Starred):
            self._bind(scope, target.value, value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            pairs = (
                isinstance(value, (ast.Tuple, ast.List))
                and len(value.elts) == len(target.elts)
                and not any(isinstance(e, ast.Starred) for e in [*value.elts, *target.elts])
            )
            for i, elt in enumerate(target.elts):
                if pairs:
                    self._bind(scope, elt, value.elts[i])
                else:
                    self._bind(scope, elt, value)

    def _collect(self, node: ast.AST, scope: Scope, unit: Unit) -> None:
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            scope.locals.add(node.id)
            if isinstance(node.ctx, ast.Del) and scope is self.module:
                self.deleted.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            self._collect_import(node, scope, unit)
        elif isinstance(node, _FUNCTIONS):
            inner = self.scope_of[id(node)]
            args = node.args
            positional = [a.arg for a in [*args.posonlyargs, *args.args]]
            inner.params = positional
            inner.locals.update(positional, (a.arg for a in args.kwonlyargs))
            inner.locals.update(a.arg for a in (args.vararg, args.kwarg) if a)
            with_default = positional[len(positional) - len(args.defaults):]
            for name, default in zip(with_default, args.defaults, strict=True):
                self.defaults.append((inner, name, default, scope))
            for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
                if default is not None:
                    self.defaults.append((inner, arg.arg, default, scope))
            if not isinstance(node, ast.Lambda):
                scope.locals.add(node.name)
                self.defs.append((scope, node.name, node))
        elif isinstance(node, ast.ClassDef):
            scope.locals.add(node.name)
        elif isinstance(node, ast.Global):
            scope.global_decl.update(node.names)
        elif isinstance(node, ast.Nonlocal):
            scope.nonlocal_decl.update(node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            scope.locals.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            scope.locals.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            scope.locals.add(node.rest)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                self._bind(scope, target, node.value)
                if isinstance(target, ast.Name) and isinstance(node.value, ast.Lambda):
                    self.defs.append((scope, target.id, node.value))
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            self._bind(scope, node.target, node.value)
        elif isinstance(node, ast.NamedExpr):
            target_scope = scope
            while target_scope.kind == "comprehension" and target_scope.parent is not None:
                target_scope = target_scope.parent
            self._bind(target_scope, node.target, node.value)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            self._bind(scope, node.target, node.iter)
        elif isinstance(node, _COMPREHENSIONS):
            inner = self.scope_of[id(node)]
            for i, gen in enumerate(node.generators):
                for name in _target_names(gen.target):
                    self.bindings.append((inner, name, gen.iter, inner if i else scope))
        elif isinstance(node, ast.Call):
            self.calls.append((node, scope))

    def _collect_import(
        self, node: ast.Import | ast.ImportFrom, scope: Scope, unit: Unit
    ) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                path = alias.name if alias.asname else alias.name.split(".")[0]
                scope.locals.add(bound)
                self.imports.append((scope, bound, path))
                self.flag_import(unit, node, alias.name)
            return
        module = node.module if node.level == 0 else None
        for alias in node.names:
            if alias.name == "*":
                if module:
                    self.flag_import(unit, node, module, star=True)
                continue
            bound = alias.asname or alias.name
            scope.locals.add(bound)
            self.imports.append((scope, bound, f"{module}.{alias.name}" if module else None))
            if module:
                self.flag_import(unit, node, f"{module}.{alias.name}")

    def flag_import(self, unit: Unit, node: ast.AST, path: str, star: bool = False) -> None:
        """Called for each name imported in ``unit`` (``star``: ``from path import *``)."""
        raise NotImplementedError

    def flag_unreadable(self, unit: Unit) -> None:
        """Called for a scanned unit too deeply nested to read."""
        raise NotImplementedError

    # -------------------------------------------------------------------------- phase 2
    def propagate(self) -> None:
        """Which names may hold a module or something reached from one (a fixpoint)."""
        for scope, name, path in self.imports:
            if path is not None:
                self.aliases.setdefault(self.binds_here(name, scope), path)
        functions: dict[tuple[Scope, str], list[Scope]] = {}
        for scope, name, node in self.defs:
            functions.setdefault(self.binds_here(name, scope), []).append(self.scope_of[id(node)])
        items: list[tuple[tuple[Scope, str], ast.AST, Scope]] = [
            (self.binds_here(name, scope), value, where)
            for scope, name, value, where in self.bindings]
        items += [((inner, name), default, where) for inner, name, default, where in self.defaults]
        for call, where in self.calls:
            if isinstance(call.func, ast.Name):
                targets = functions.get(self.resolve(call.func.id, where), [])
            elif isinstance(call.func, ast.Lambda):
                targets = [self.scope_of[id(call.func)]]
            else:
                continue
            for inner in targets:
                for i, arg in enumerate(call.args):
                    if isinstance(arg, ast.Starred) or i >= len(inner.params):
                        break
                    items.append(((inner, inner.params[i]), arg, where))
                items += [((inner, kw.arg), kw.value, where) for kw in call.keywords
                          if kw.arg is not None and kw.arg in inner.locals]
        # A worklist: an item is looked at again only when a name its value reads becomes an
        # alias (passes over every item, one per step of a chain, took quadratic time: a chain
        # of 6,000 assignments written backwards held the batch for a minute). Full passes
        # after it keep the fixpoint exact for reads the index misses (names in a lambda).
        readers: dict[tuple[Scope, str], list[int]] = {}
        for i, (_key, value, where) in enumerate(items):
            for node in ast.walk(value):
                if isinstance(node, ast.Name):
                    readers.setdefault(self.resolve(node.id, where), []).append(i)
        queue = collections.deque(range(len(items)))
        while queue:
            while queue:
                key, value, where = items[queue.popleft()]
                if self._taint(key, value, where):
                    queue.extend(readers.get(key, ()))
            for key, value, where in items:
                if self._taint(key, value, where):
                    queue.extend(readers.get(key, ()))

    def _taint(self, key: tuple[Scope, str], value: ast.AST, where: Scope) -> bool:
        if key in self.aliases:
            return False
        path = self.path(value, where)
        if path is None:
            return False
        self.aliases[key] = path
        return True

    def path(self, node: ast.AST, scope: Scope) -> str | None:
        """The dotted path of a module (or of something reached from one) that ``node`` may
        evaluate to, e.g. ``"numpy.allclose"``; ``None`` for ordinary values."""
        if isinstance(node, ast.Name):
            key = self.resolve(node.id, scope)
            found = self.aliases.get(key)
            if found is None and key[0] is self.module and node.id not in self.module.locals:
                found = _CONVENTIONAL.get(node.id)
            return found
        if isinstance(node, ast.Attribute):
            base = self.path(node.value, scope)
            if base is not None:
                return f"{base}.{node.attr}"
            return short(node) if node.attr in ("__class__", "__bases__", "__mro__") else None
        if isinstance(node, ast.Subscript):
            base = self.path(node.value, scope)
            return f"{base}[]" if base is not None else None
        if isinstance(node, ast.Call):
            return self._call_path(node, scope)
        if isinstance(node, ast.IfExp):
            return self.path(node.body, scope) or self.path(node.orelse, scope)
        if isinstance(node, ast.BoolOp):
            return next((p for v in node.values if (p := self.path(v, scope))), None)
        if isinstance(node, (ast.NamedExpr, ast.Starred)):
            return self.path(node.value, scope)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return next((p for v in node.elts if (p := self.path(v, scope))), None)
        if isinstance(node, ast.Dict):
            return next((p for v in node.values if (p := self.path(v, scope))), None)
        return None

    def _call_path(self, node: ast.Call, scope: Scope) -> str | None:
        func = node.func
        if not isinstance(func, ast.Name) or not self.is_global(func.id, scope):
            return None
        args = node.args
        if func.id == "getattr" and len(args) >= 2:
            base, name = self.path(args[0], scope), literal(args[1])
            if base is not None:
                return f"{base}.{name}" if name else f"{base}.<computed>"
        elif func.id == "type" and len(args) == 1:
            return short(node)
        elif func.id == "vars" and len(args) == 1:
            base = self.path(args[0], scope)
            return f"{base}.__dict__" if base else None
        elif func.id == "__import__" and args:
            return literal(args[0])
        return None

