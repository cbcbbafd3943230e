"""Static scan of a submission: flag student code that reaches into the grading machinery.

Verdicts are computed outside the student's process (the test cells run on the trusted side),
so the tricks below no longer change a grade. This scan is a second layer: before grading, it
reads the code cells a student controls and **flags** the submission when that code reaches for
the machinery of the notebook or of the interpreter. A flagged submission is graded exactly as
any other; the flag (``flagged: <reason> at cell <id> line <n>``) asks the instructor to read
the code. Flags never change a score.

What is scanned
    Every code cell except the cells whose source nbgrader restores from the instructor's copy
    (read-only and test cells of the source notebook, :func:`locked_ids`): solution cells, cells
    a student added, cells whose nbgrader metadata a student edited. Each cell is read the way
    IPython runs it (``%magic`` and ``!shell`` lines become visible calls, a one-line cell
    ``history`` is the magic ``%history`` when no variable of that name exists); a cell that is
    not valid Python gives no flag, it simply fails when run. The locked cells are read for
    their imports only (``np`` imported by the read-only setup cell is numpy everywhere).
    Nothing is executed.

What is flagged (rule: examples)
    ``ipython-internals``
        ``get_ipython()`` (input/AST transformers, ``set_custom_exc``, ``showtraceback``,
        ``events.register("post_run_cell", ...)``); importing ``IPython`` (except
        ``IPython.display``), ``ipykernel``, ``traitlets``, ``jupyter_client``, ``jupyter_core``,
        ``zmq``, ``comm``, ``nbformat``, ``nbclient``, ``nbconvert``, ``nbgrader``; reading the
        input/output history: ``In``, ``Out``, ``_ih``, ``_oh``, ``_dh``, ``_i``, ``_ii``,
        ``_iii``, ``_i<N>``, ``_<N>``, ``__``, ``___`` (the history holds earlier cells' source).
    ``ipython-magic``
        ``%magic``, ``%%magic`` and ``!shell`` lines, except ``%time``, ``%timeit``, ``%%time``,
        ``%%timeit`` (whose statements are scanned like any other code), ``%matplotlib`` and
        ``name?`` / ``name??`` help on a plain name. ``%%javascript``, ``%%capture``, ``%env``,
        ``%config``, ``%load_ext``, ``%autoreload``, ``%pip``, ``!cat *.ipynb`` are flagged, and
        so is a one-line cell that IPython's automagic runs as one (``history``, ``run x.py``,
        ``cat *.ipynb``), also inside ``%time``.
    ``interpreter-internals``
        ``builtins`` / ``__builtins__`` / ``__main__``; ``sys.modules``, ``sys._getframe``,
        ``sys.settrace``/``setprofile``, ``sys.excepthook``/``displayhook`` and the other hooks,
        any assignment to an attribute of ``sys`` (``sys.stdout = ...``, ``sys.path = ...``);
        the modules ``inspect``, ``gc``, ``ctypes``, ``cffi``, ``numpy.ctypeslib``,
        ``torch.utils.cpp_extension``, ``dis``, ``marshal``, ``pickle``, ``dill``,
        ``cloudpickle``, ``shelve``, ``copyreg``, ``linecache``, ``bdb``, ``trace``;
        ``types.FunctionType``/``CodeType``/``ModuleType``/``FrameType``/...; frame and code
        attributes (``f_back``, ``f_globals``, ``f_locals``, ``gi_frame``, ``tb_frame``,
        ``co_code``, ...), ``__globals__``, ``__code__``, ``__closure__``, ``__subclasses__``,
        ``__dict__`` of a module, writes to dunder attributes (``x.__class__ = ...``).
    ``process-control``
        ``threading``, ``_thread``, ``multiprocessing`` (``torch.multiprocessing`` too),
        ``concurrent``, ``asyncio``, ``subprocess``, ``signal``, ``atexit``, ``faulthandler``,
        ``resource``, ``socket``, ``pty``, ``weakref.finalize``; ``os.system``, ``os.popen``,
        ``os.fork``, ``os.kill``, ``os._exit``, ``os.abort``, ``os.exec*``, ``os.spawn*``,
        ``os.dup2``, ``from os import *``; ``exit``/``quit``.
        Code that runs later, elsewhere or never returns can act between or after cells.
    ``dynamic-code``
        ``exec``, ``eval``, ``compile``, ``__import__``, ``importlib``, ``runpy``, ``code``;
        ``getattr``/``hasattr`` with a computed name on a module (``getattr(np, "all" + "close")``);
        ``globals()`` in any form, ``locals()``/``vars()`` of the notebook's namespace, writes
        through ``locals()``; code nested too deeply for the scan to parse (Python may still run
        it after ``sys.setrecursionlimit``). Code the scan cannot read is code it cannot vouch
        for.
    ``module-patch``
        Assigning, augmenting or deleting an attribute of an imported module or of anything
        reached from one, through any alias: ``np.allclose = f``, ``torch.Tensor.__eq__ = f``,
        ``checks.check_close = f``, ``F.conv2d = f``, ``nn.Module.train = f``, ``m = np;
        m.allclose = f``, ``for m in (np, torch): m.allclose = f``, a function called with a
        module as argument that assigns to its parameter's attributes; ``setattr``/``delattr``
        on such an object; writing into ``module.__dict__``, ``vars(module)``, or into a
        container reached from a module (``checks.SETTINGS["rtol"] = 1``); patching the class of
        an object (``type(t).__eq__ = f``); ``unittest.mock``.

What is deliberately not flagged (honest students write it)
    Imports of ordinary libraries and their aliases (``import torch.nn.functional as F``,
    ``from tqdm.auto import tqdm``, ``from types import SimpleNamespace``, ``import os``,
    ``import sys``, ``from IPython.display import clear_output``); attributes of *objects*
    (``model.fc = nn.Linear(...)``, ``self.x = ...``, ``p.requires_grad = False``,
    ``setattr(self, name, v)``, ``getattr(model, name)``); calls into libraries
    (``torch.manual_seed``, ``np.random.seed``, ``warnings.filterwarnings``, ``os.path.join``,
    ``time.perf_counter()``, ``sys.path.append``, ``sys.stdout.flush()``, ``re.compile``,
    ``model.eval()``, ``torch.compile``); configuration writes ``torch.backends.* = ...``,
    ``pandas.options.* = ...``, ``plt.rcParams[...] = ...``, ``os.environ[...] = ...``;
    ``getattr(np, "pi")`` with a literal name; ``_`` as a throwaway name, and a history-like
    name that the code itself binds (a parameter or local of a function, a comprehension
    variable, the body of ``for _i in ...``); ``%matplotlib inline``, ``%time``, ``%timeit``;
    ``print``, f-strings, comprehensions, classes, dataclasses, decorators such as
    ``@torch.no_grad()``, ``with torch.no_grad():``; patching the student's own classes and
    objects (``MyNet.forward = f``, ``model.forward = types.MethodType(f, model)``); reading or
    writing files (the sandbox bounds what a kernel can reach); rebinding a name (``F = 3``, even
    ``print = ...``, only changes the student's own namespace); a one-line cell that names a
    variable (``history`` after ``history = train(...)``).

Borderline, flagged on purpose (rare in honest work, worth a look): ``getattr(nn, name)`` with
a computed name (choosing a layer class by string), ``globals()`` / notebook-level ``locals()``
in any use, ``import inspect`` / ``pickle`` / ``threading``, ``%load_ext autoreload``,
``%config InlineBackend...``, ``%%capture``, ``exit()``, ``type(self).counter += 1`` (writes to
a class reached through ``type(...)``), ``sys.path = [...]`` (``sys.path.append`` is not).

Limits
    The scan is static and conservative, not a proof: code that hides its intent well enough
    (a module passed through a data structure the scan does not follow, say) is not flagged.
    That is why verdicts do not depend on it. A name is resolved with Python's own scoping rules
    for functions, lambdas and comprehensions; at notebook level any cell may have failed, so a
    builtin or history name read there is flagged even if the student bound it earlier.

Cost (measured, not tested: ``scan_notebook`` on each reference submission with ``locked_ids``
of its source, median of 30 runs, two runs, on the 2-core development machine while other work
kept it busy, load average 5.5): 01_dnn (51 cells) 12 to 17 ms, fastest run 7 ms; 02_cnn 3 to
8 ms; 03_transfer_learning 2 to 6 ms. With every cell scanned (no ``locked``) 25 to 57 ms.
Reading the notebook file (``nbformat``) is not included.
"""

from __future__ import annotations

import ast
import copy
import re
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from graders.notebooks import grade_id

__all__ = ["Finding", "locked_ids", "scan_notebook", "scan_submission"]


@dataclass(frozen=True)
class Finding:
    """One place in a student-controlled cell that reaches into the grading machinery."""

    rule: str  # short id: see the module docstring
    reason: str  # human words, e.g. "reads IPython's input/output history (In)"
    cell: str  # the cell's nbgrader grade_id, else f"#{index}" (0-based position)
    line: int  # 1-based line within the cell's source

    def __str__(self) -> str:
        return f"flagged: {self.reason} at cell {self.cell} line {self.line}"


# ------------------------------------------------------------------------------ what is flagged
IPYTHON = "ipython-internals"
MAGIC = "ipython-magic"
INTERNALS = "interpreter-internals"
PROCESS = "process-control"
DYNAMIC = "dynamic-code"
PATCH = "module-patch"

#: Dotted names (modules or their members) and why reaching them is flagged; ``None`` allows a
#: name under a flagged one. The longest matching prefix decides.
_NAMES: dict[str, tuple[str, str] | None] = {
    **{m: (IPYTHON, "the machinery of the running notebook kernel") for m in (
        "IPython", "ipykernel", "traitlets", "jupyter_client", "jupyter_core", "zmq", "comm")},
    **{m: (IPYTHON, "the tools that run and grade notebooks") for m in (
        "nbformat", "nbclient", "nbconvert", "nbgrader")},
    "IPython.display": None,
    "builtins": (INTERNALS, "the interpreter's built-in names"),
    "__builtin__": (INTERNALS, "the interpreter's built-in names"),
    "__main__": (INTERNALS, "the notebook's own namespace"),
    "inspect": (INTERNALS, "reads frames and source of running code"),
    "gc": (INTERNALS, "reaches every live object"),
    "ctypes": (INTERNALS, "writes interpreter memory"),
    "_ctypes": (INTERNALS, "writes interpreter memory"),
    "cffi": (INTERNALS, "writes interpreter memory"),
    "numpy.ctypeslib": (INTERNALS, "writes interpreter memory"),
    "torch.utils.cpp_extension": (INTERNALS, "compiles and loads native code"),
    "dis": (INTERNALS, "reads compiled code"),
    "marshal": (INTERNALS, "builds code objects from bytes"),
    "linecache": (INTERNALS, "reads the cached source of earlier cells"),
    "bdb": (INTERNALS, "installs a trace function"),
    "trace": (INTERNALS, "installs a trace function"),
    **{m: (INTERNALS, "unpickling runs arbitrary code") for m in (
        "pickle", "_pickle", "dill", "cloudpickle", "shelve", "copyreg")},
    "sys.modules": (INTERNALS, "every loaded module, patchable"),
    "sys._getframe": (INTERNALS, "reads the frames of running code"),
    "sys._current_frames": (INTERNALS, "reads the frames of running code"),
    "sys.settrace": (INTERNALS, "runs code on every line executed"),
    "sys.setprofile": (INTERNALS, "runs code on every call"),
    "sys.excepthook": (INTERNALS, "changes how errors are reported"),
    "sys.displayhook": (INTERNALS, "changes how results are displayed"),
    "sys.breakpointhook": (INTERNALS, "an interpreter hook"),
    "sys.unraisablehook": (INTERNALS, "changes how errors are reported"),
    "sys.addaudithook": (INTERNALS, "an interpreter hook"),
    "sys.meta_path": (INTERNALS, "changes how modules are imported"),
    "sys.path_hooks": (INTERNALS, "changes how modules are imported"),
    "sys.path_importer_cache": (INTERNALS, "changes how modules are imported"),
    **{f"types.{t}": (INTERNALS, "builds functions, code or modules by hand") for t in (
        "FunctionType", "LambdaType", "CodeType", "CellType", "FrameType", "TracebackType",
        "ModuleType")},
    **{m: (PROCESS, "runs code in the background or in another process") for m in (
        "threading", "_thread", "multiprocessing", "concurrent", "asyncio", "subprocess", "pty",
        "os.system", "os.popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.posix_spawnp",
        "os.register_at_fork")},
    **{m: (PROCESS, "stops or signals processes") for m in (
        "signal", "os.kill", "os.killpg", "os._exit", "os.abort")},
    "atexit": (PROCESS, "runs code when the kernel exits"),
    "weakref.finalize": (PROCESS, "runs code when an object dies or the kernel exits"),
    "faulthandler": (PROCESS, "acts on crashes and timers"),
    "resource": (PROCESS, "changes the kernel's resource limits"),
    "socket": (PROCESS, "network connections"),
    "os.dup2": (PROCESS, "redirects the kernel's file descriptors"),
    "importlib": (DYNAMIC, "imports modules by computed name"),
    "runpy": (DYNAMIC, "runs code from files or modules"),
    "code": (DYNAMIC, "runs code from strings"),
    "codeop": (DYNAMIC, "compiles code from strings"),
    "unittest.mock": (PATCH, "replaces attributes of modules"),
    "mock": (PATCH, "replaces attributes of modules"),
}
#: Modules that libraries re-export as attributes (``torch.sys``, ``torch.multiprocessing``):
#: a dotted path is also matched from these names on, wherever they appear in it.
_REEXPORTED = frozenset({
    "sys", "os", "builtins", "inspect", "gc", "ctypes", "importlib", "subprocess", "threading",
    "_thread", "multiprocessing", "pickle", "marshal", "atexit", "faulthandler", "IPython",
    "ipykernel",
})
#: ``from <module> import *`` of these brings flagged names in under their bare names.
_STAR_FLAGGED = {
    "os": (PROCESS, "system, kill, fork, ..."),
    "sys": (INTERNALS, "modules, settrace, excepthook, ..."),
    "builtins": (INTERNALS, "exec, eval, __import__, ..."),
}
_OS_EXEC = re.compile(r"^(exec|spawn)[lv]p?e?$")

_HISTORY = re.compile(r"^(In|Out|_ih|_oh|_dh|_i|_ii|_iii|_i\d+|_\d+|__|___)$")
_RUN_CODE = {
    "exec": "runs code built at run time (exec)",
    "eval": "runs code built at run time (eval)",
    "compile": "compiles code built at run time (compile)",
    "__import__": "imports a module by computed name (__import__)",
}
_FRAME_ATTRS = frozenset({
    "f_back", "f_globals", "f_locals", "f_code", "f_builtins", "f_trace", "gi_frame", "gi_code",
    "cr_frame", "cr_code", "ag_frame", "ag_code", "tb_frame", "co_code", "co_consts", "co_names",
})
_DUNDER_READS = frozenset({
    "__globals__", "__code__", "__closure__", "__builtins__", "__subclasses__",
})
_DUNDER_WRITES_OK = frozenset({"__doc__", "__name__", "__qualname__", "__module__"})
#: Configuration that honest notebooks set by assignment (dotted-path prefixes).
_CONFIG_WRITES = ("torch.backends.", "pandas.options.")
_CONFIG_ITEMS = re.compile(r"(^|\.)(rcParams|environ)(\[\])?$")
_MAPPING_WRITES = frozenset({
    "update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__delitem__",
})

#: Magics allowed by name; ``time``/``timeit`` statements are scanned like any other code.
_LINE_MAGICS_OK = frozenset({"time", "timeit", "matplotlib", "pinfo", "pinfo2"})
_CELL_MAGICS_OK = frozenset({"time", "timeit"})
_TIMED = frozenset({"time", "timeit"})
_TOO_DEEP = "code nested too deeply for the scan to read"
_DOTTED = re.compile(r"^[A-Za-z_][\w.]*$")

#: Conventional aliases, for a notebook whose imports are not in the scanned copy.
_CONVENTIONAL = {
    "np": "numpy", "torch": "torch", "nn": "torch.nn", "F": "torch.nn.functional",
    "plt": "matplotlib.pyplot", "pd": "pandas", "dlworkshop": "dlworkshop",
    "checks": "dlworkshop.checks", "os": "os", "sys": "sys", "__builtins__": "builtins",
}


def _lookup(path: str) -> tuple[str, tuple[str, str]] | None:
    """The entry of :data:`_NAMES` that a dotted path reaches: ``(name, (rule, what))``."""
    segments = [s.removesuffix("[]") for s in path.split(".")]
    for start in range(len(segments)):
        if start and segments[start] not in _REEXPORTED:
            continue
        rest = segments[start:]
        if rest[0] == "os" and len(rest) > 1 and _OS_EXEC.match(rest[1]):
            return f"os.{rest[1]}", (PROCESS, "replaces the kernel process")
        for n in range(len(rest), 0, -1):
            key = ".".join(rest[:n])
            if key in _NAMES:
                entry = _NAMES[key]
                if entry is None:
                    break
                return key, entry
    return None


# ------------------------------------------------------------------------------ reading cells
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
            return ast.parse(source)
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
    with ``%``, and its line. IPython skips it when the name is a variable; see ``_Scan``."""
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
class _Unit:
    """One piece of code run in the notebook's namespace: a cell or a timed magic's statement."""

    tree: ast.Module
    lines: list[int]
    position: int  # the cell's index in the notebook
    cell: str
    scanned: bool
    too_deep: bool = False
    automagic: str = ""  # a one-line cell that IPython runs as the magic of this name
    nodes: list[tuple[ast.AST, _Scope, frozenset[str]]] = field(default_factory=list)

    def line(self, node: ast.AST) -> int:
        lineno = getattr(node, "lineno", 1)
        return self.lines[min(max(lineno, 1), len(self.lines)) - 1]


def _magic_call(node: ast.AST) -> tuple[str, ast.Call] | None:
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


def _literal(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _units(source: str, position: int, cell: str, scanned: bool, depth: int = 0) -> list[_Unit]:
    """The cell's code, followed by the statements of its ``%time``/``%timeit`` magics."""
    try:
        parsed = _parse(source)
    except _TooDeep:
        return [_Unit(ast.Module(body=[], type_ignores=[]), [1], position, cell, scanned, True)]
    units = []
    if parsed is not None:
        tree, lines, code = parsed
        units.append(_Unit(tree, lines, position, cell, scanned))
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
    parent: _Unit, position: int, cell: str, scanned: bool, depth: int
) -> list[_Unit]:
    """The statements of the ``%time``/``%timeit`` magics in ``parent``, as units of their own."""
    units = []
    for node in ast.walk(parent.tree):
        magic = _magic_call(node)
        if magic is None or magic[0] not in ("run_line_magic", "run_cell_magic"):
            continue
        method, call = magic
        name = _literal(call.args[0]) if call.args else None
        if name not in _TIMED:
            continue
        base = parent.line(call)
        texts = [(_literal(call.args[1]) if len(call.args) > 1 else None, 0)]
        if method == "run_cell_magic":
            texts.append((_literal(call.args[2]) if len(call.args) > 2 else None, 1))
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


# ------------------------------------------------------------------------------ scopes and aliases
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_LEAVES = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)


class _Scope:
    """A Python scope: the notebook's namespace, a class body, a function or a comprehension."""

    def __init__(self, kind: str, parent: _Scope | None) -> None:
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


def _short(node: ast.AST, limit: int = 60) -> str:
    try:
        text = ast.unparse(node)
    except (RecursionError, ValueError, AttributeError):
        return "..."
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Scan:
    """Scopes and module aliases of a whole notebook, then the findings in its scanned units."""

    def __init__(self, units: list[_Unit]) -> None:
        self.units = units
        self.module = _Scope("module", None)
        self.scope_of: dict[int, _Scope] = {}
        # (scope, name, value, where): ``name`` bound in ``scope`` to ``value`` (or to one of its
        # elements: a container of modules counts as a module) evaluated in ``where``
        self.bindings: list[tuple[_Scope, str, ast.AST, _Scope]] = []
        self.defaults: list[tuple[_Scope, str, ast.AST, _Scope]] = []
        self.calls: list[tuple[ast.Call, _Scope]] = []
        self.defs: list[tuple[_Scope, str, ast.AST]] = []
        self.imports: list[tuple[_Scope, str, str | None]] = []
        self.aliases: dict[tuple[_Scope, str], str] = {}
        self.imported_flags: set[str] = set()
        self.magic_names: set[int] = set()
        self.deleted: set[str] = set()  # names deleted at notebook level
        self.findings: list[tuple[int, int, int, Finding]] = []

    # -------------------------------------------------------------------------- traversal
    def _inner(self, node: ast.AST, kind: str, parent: _Scope) -> _Scope:
        scope = self.scope_of.get(id(node))
        if scope is None:
            scope = self.scope_of[id(node)] = _Scope(kind, parent)
        return scope

    def walk(self, tree: ast.AST, scope: _Scope) -> list[tuple[ast.AST, _Scope, frozenset[str]]]:
        """Every node (parents first, in source order) with the scope its names resolve in, and
        (at notebook or class level) the names bound by the enclosing ``for`` loops."""
        out = []
        stack: list[tuple[ast.AST, _Scope, frozenset[str]]] = [(tree, scope, frozenset())]
        while stack:
            node, scope, loops = stack.pop()
            out.append((node, scope, loops))
            children = self._children(node, scope, loops)
            children.reverse()
            stack += children
        return out

    def _children(
        self, node: ast.AST, scope: _Scope, loops: frozenset[str]
    ) -> list[tuple[ast.AST, _Scope, frozenset[str]]]:
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
    def resolve(self, name: str, scope: _Scope) -> tuple[_Scope, str]:
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

    def binds_here(self, name: str, scope: _Scope) -> tuple[_Scope, str]:
        """Which scope a name assigned in ``scope`` binds in."""
        if scope.function_like:
            if name in scope.global_decl:
                return self.module, name
            if name in scope.nonlocal_decl and scope.parent is not None:
                return self.resolve(name, scope.parent)
        return scope, name

    def is_global(self, name: str, scope: _Scope) -> bool:
        """A read of ``name`` in ``scope`` may reach the notebook's namespace or the builtins."""
        return not self.resolve(name, scope)[0].function_like

    # -------------------------------------------------------------------------- phase 1
    def collect(self) -> None:
        """Scopes, their names, and every binding that may carry a module."""
        for unit in list(self.units):
            if unit.too_deep and unit.scanned:
                self.add(unit, unit.tree, DYNAMIC, _TOO_DEEP)
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
                    self.add(unit, unit.tree, DYNAMIC, _TOO_DEEP)

    def _collect_top(self, body: list[ast.stmt], unit: _Unit) -> None:
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

    def _bind(self, scope: _Scope, target: ast.AST, value: ast.AST) -> None:
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

    def _collect(self, node: ast.AST, scope: _Scope, unit: _Unit) -> None:
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
        self, node: ast.Import | ast.ImportFrom, scope: _Scope, unit: _Unit
    ) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                path = alias.name if alias.asname else alias.name.split(".")[0]
                scope.locals.add(bound)
                self.imports.append((scope, bound, path))
                self._import_flag(unit, node, alias.name)
            return
        module = node.module if node.level == 0 else None
        for alias in node.names:
            if alias.name == "*":
                if module:
                    self._import_flag(unit, node, module, star=True)
                continue
            bound = alias.asname or alias.name
            scope.locals.add(bound)
            self.imports.append((scope, bound, f"{module}.{alias.name}" if module else None))
            if module:
                self._import_flag(unit, node, f"{module}.{alias.name}")

    def _import_flag(self, unit: _Unit, node: ast.AST, path: str, star: bool = False) -> None:
        if not unit.scanned:
            return
        if star and path in _STAR_FLAGGED:
            rule, names = _STAR_FLAGGED[path]
            self.add(unit, node, rule, f"imports every public name of {path} ({names})")
            return
        hit = _lookup(path)
        if hit is not None:
            key, (rule, what) = hit
            self.imported_flags.add(key)
            self.add(unit, node, rule, f"imports {path} ({what})")

    # -------------------------------------------------------------------------- phase 2
    def propagate(self) -> None:
        """Which names may hold a module or something reached from one (a fixpoint)."""
        for scope, name, path in self.imports:
            if path is not None:
                self.aliases.setdefault(self.binds_here(name, scope), path)
        functions: dict[tuple[_Scope, str], list[_Scope]] = {}
        for scope, name, node in self.defs:
            functions.setdefault(self.binds_here(name, scope), []).append(self.scope_of[id(node)])
        for _ in range(len(self.bindings) + len(self.defaults) + len(self.calls) + 1):
            changed = False
            for scope, name, value, where in self.bindings:
                changed |= self._taint(self.binds_here(name, scope), value, where)
            for inner, name, default, where in self.defaults:
                changed |= self._taint((inner, name), default, where)
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
                        changed |= self._taint((inner, inner.params[i]), arg, where)
                    for kw in call.keywords:
                        if kw.arg is not None and kw.arg in inner.locals:
                            changed |= self._taint((inner, kw.arg), kw.value, where)
            if not changed:
                break

    def _taint(self, key: tuple[_Scope, str], value: ast.AST, where: _Scope) -> bool:
        if key in self.aliases:
            return False
        path = self.path(value, where)
        if path is None:
            return False
        self.aliases[key] = path
        return True

    def path(self, node: ast.AST, scope: _Scope) -> str | None:
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
            return _short(node) if node.attr in ("__class__", "__bases__", "__mro__") else None
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

    def _call_path(self, node: ast.Call, scope: _Scope) -> str | None:
        func = node.func
        if not isinstance(func, ast.Name) or not self.is_global(func.id, scope):
            return None
        args = node.args
        if func.id == "getattr" and len(args) >= 2:
            base, name = self.path(args[0], scope), _literal(args[1])
            if base is not None:
                return f"{base}.{name}" if name else f"{base}.<computed>"
        elif func.id == "type" and len(args) == 1:
            return _short(node)
        elif func.id == "vars" and len(args) == 1:
            base = self.path(args[0], scope)
            return f"{base}.__dict__" if base else None
        elif func.id == "__import__" and args:
            return _literal(args[0])
        return None

    # -------------------------------------------------------------------------- phase 3
    def add(self, unit: _Unit, node: ast.AST, rule: str, reason: str) -> None:
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
                self.add(unit, unit.tree, DYNAMIC, _TOO_DEEP)

    def _shadowed(self, magic: str) -> bool:
        """IPython runs a one-line cell as Python, not as magic, if the name is a variable."""
        return bool(magic) and magic in self.module.locals and magic not in self.deleted

    def _check(self, node: ast.AST, scope: _Scope, loops: frozenset[str], unit: _Unit) -> None:
        if isinstance(node, ast.Name):
            self._check_name(node, scope, loops, unit)
        elif isinstance(node, ast.Attribute):
            self._check_attribute(node, scope, unit)
        elif isinstance(node, ast.Subscript) and not isinstance(node.ctx, ast.Load):
            self._check_item_write(node, scope, unit)
        elif isinstance(node, ast.Call):
            self._check_call(node, scope, unit)

    def _check_path(self, node: ast.AST, scope: _Scope, unit: _Unit) -> None:
        path = self.path(node, scope)
        hit = _lookup(path) if path else None
        if hit is not None and hit[0] not in self.imported_flags:
            key, (rule, what) = hit
            self.add(unit, node, rule, f"uses {key} ({what})")

    def _check_name(
        self, node: ast.Name, scope: _Scope, loops: frozenset[str], unit: _Unit
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
        elif _HISTORY.match(name) and (name not in loops or isinstance(node.ctx, ast.Del)):
            verb = "deletes" if isinstance(node.ctx, ast.Del) else "reads"
            self.add(unit, node, IPYTHON, f"{verb} IPython's input/output history ({name})")
        elif name in _RUN_CODE:
            self.add(unit, node, DYNAMIC, _RUN_CODE[name])
        elif name == "globals":
            self.add(unit, node, DYNAMIC, "uses globals() (the notebook's namespace as a mapping)")
        elif name in ("exit", "quit"):
            self.add(unit, node, PROCESS, f"ends the kernel ({name})")
        elif isinstance(node.ctx, ast.Load):
            self._check_path(node, scope, unit)

    def _check_attribute(self, node: ast.Attribute, scope: _Scope, unit: _Unit) -> None:
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
        if attr in _FRAME_ATTRS:
            self.add(unit, node, INTERNALS, f"reaches frame or code internals (.{attr})")
        if attr in _DUNDER_READS:
            self.add(unit, node, INTERNALS, f"reaches {attr} (interpreter internals)")
        base = self.path(inner, scope)
        if attr == "__dict__" and base is not None:
            self.add(unit, node, INTERNALS, f"reaches the __dict__ of {_short(inner)} ({base})")
        if isinstance(node.ctx, ast.Load):
            self._check_path(node, scope, unit)
            return
        verb = "deletes" if isinstance(node.ctx, ast.Del) else "replaces"
        if base is not None:
            full = f"{base}.{attr}"
            if base.split(".")[-1] == "sys":
                self.add(unit, node, INTERNALS, f"{verb} {_short(node)} (an interpreter setting)")
            elif not full.startswith(_CONFIG_WRITES):
                self.add(unit, node, PATCH, f"{verb} {_short(node)}{_of(full, node)}")
        elif attr.startswith("__") and attr.endswith("__") and attr not in _DUNDER_WRITES_OK:
            self.add(unit, node, INTERNALS, f"{verb} {_short(node)} (a special attribute)")

    def _check_item_write(self, node: ast.Subscript, scope: _Scope, unit: _Unit) -> None:
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
        if base is not None and not _CONFIG_ITEMS.search(base):
            verb = "deletes from" if isinstance(node.ctx, ast.Del) else "writes into"
            self.add(unit, node, PATCH, f"{verb} {_short(value)}[...]{_of(base, value)}")

    def _check_call(self, node: ast.Call, scope: _Scope, unit: _Unit) -> None:
        magic = _magic_call(node)
        if magic is not None and self.is_global("get_ipython", scope):
            self._check_magic(magic[0], node, unit)
        func = node.func
        if isinstance(func, ast.Attribute):
            if func.attr in ("__setattr__", "__delattr__"):
                targets = [func.value, *node.args[:1]]
                base = next((p for t in targets if (p := self.path(t, scope))), None)
                if base is not None:
                    self.add(unit, node, PATCH, f"calls {func.attr} on {base}")
            elif func.attr in _MAPPING_WRITES and isinstance(func.value, ast.Call):
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
            attr = _literal(args[1]) if len(args) > 1 else None
            if base is not None:
                self.add(unit, node, PATCH, f"{name}() on {_short(args[0])}{_of(base, args[0])}")
            elif attr and attr.startswith("__") and attr.endswith("__"):
                self.add(unit, node, INTERNALS, f"{name}() of the special attribute {attr}")
        elif name in ("getattr", "hasattr") and len(args) >= 2:
            attr = _literal(args[1])
            base = self.path(args[0], scope)
            if attr is None and base is not None:
                self.add(unit, node, DYNAMIC,
                         f"{name}() of a computed name on {_short(args[0])}{_of(base, args[0])}")
            elif attr in _FRAME_ATTRS or attr in _DUNDER_READS:
                self.add(unit, node, INTERNALS, f"{name}() of {attr} (interpreter internals)")
            elif attr is not None and base is not None:
                self._check_path(node, scope, unit)
        elif name in ("locals", "vars") and not args and not scope.function_like:
            self.add(unit, node, DYNAMIC, f"uses {name}() (the notebook's namespace as a mapping)")
        elif name == "vars" and args:
            base = self.path(args[0], scope)
            if base is not None:
                self.add(unit, node, INTERNALS, f"reads the namespace of {base} through vars()")

    def _check_magic(self, method: str, node: ast.Call, unit: _Unit) -> None:
        self.magic_names.add(id(node.func.value.func))
        args = node.args
        first = _literal(args[0]) if args else None
        if method in ("system", "getoutput"):
            command = first if first is not None else "..."
            self.add(unit, node, MAGIC, f"runs a shell command (!{command[:40]})")
        elif method == "run_line_magic" and first is not None:
            argument = _literal(args[1]) if len(args) > 1 else ""
            if first not in _LINE_MAGICS_OK or (
                first.startswith("pinfo") and not _DOTTED.match(argument or "")
            ):
                self.add(unit, node, MAGIC, f"runs the IPython magic %{first}")
        elif method == "run_cell_magic" and first is not None:
            if first not in _CELL_MAGICS_OK:
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
    return "" if path == _short(node) else f" ({path})"


# ------------------------------------------------------------------------------ public API
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


def scan_notebook(nb: NotebookNode, locked: Collection[str] = ()) -> list[Finding]:
    """Findings in the student-controlled code cells of ``nb``, in notebook order.

    Cells whose grade_id is in ``locked`` are not scanned (nbgrader restores them), but their
    imports are read: ``np`` bound by a read-only setup cell is numpy in every other cell.
    """
    locked = set(locked)
    units: list[_Unit] = []
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
    scan = _Scan(units)
    scan.collect()
    try:
        scan.propagate()
    except RecursionError:
        pass  # the aliases found so far; the deep expression is reported by check()
    scan.check()
    return scan.result()


def scan_submission(path: str | Path, source_path: str | Path) -> list[Finding]:
    """Findings in a submitted notebook, read as nbgrader will grade it.

    As nbgrader's ``OverwriteCells`` does, every cell the source notebook tracks gets its cell
    type back (a solution cell turned into markdown runs as code) and the locked cells get
    their source back (so that their imports are the instructor's). A file that is not a
    notebook gives no findings: other code reports it.
    """
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception:  # noqa: BLE001 - not JSON, not a notebook, unreadable: reported elsewhere
        return []
    if not isinstance(nb, NotebookNode) or not isinstance(nb.get("cells"), list):
        return []
    source_nb = nbformat.read(str(source_path), as_version=4)
    locked = locked_ids(source_nb)
    tracked = {grade_id(c): c for c in source_nb.cells if grade_id(c)}
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        original = tracked.get(grade_id(cell))
        if original is None:
            continue
        cell.cell_type = original.cell_type
        if grade_id(cell) in locked:
            cell.source = original.source
    return scan_notebook(nb, locked)
