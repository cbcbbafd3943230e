"""What the scan flags: the rule ids, the dotted names, attributes and magics that are flagged,
and the :class:`Finding` a flag becomes.

Data only (and :func:`lookup` into it); :mod:`graders.scan.checks` applies it to the code. The
instructor-facing list of rules is the docstring of :mod:`graders.scan`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One place in a student-controlled cell that reaches into the grading machinery."""

    rule: str  # short id: see graders.scan's docstring
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
STAR_FLAGGED = {
    "os": (PROCESS, "system, kill, fork, ..."),
    "sys": (INTERNALS, "modules, settrace, excepthook, ..."),
    "builtins": (INTERNALS, "exec, eval, __import__, ..."),
}
_OS_EXEC = re.compile(r"^(exec|spawn)[lv]p?e?$")

HISTORY = re.compile(r"^(In|Out|_ih|_oh|_dh|_i|_ii|_iii|_i\d+|_\d+|__|___)$")
RUN_CODE = {
    "exec": "runs code built at run time (exec)",
    "eval": "runs code built at run time (eval)",
    "compile": "compiles code built at run time (compile)",
    "__import__": "imports a module by computed name (__import__)",
}
FRAME_ATTRS = frozenset({
    "f_back", "f_globals", "f_locals", "f_code", "f_builtins", "f_trace", "gi_frame", "gi_code",
    "cr_frame", "cr_code", "ag_frame", "ag_code", "tb_frame", "co_code", "co_consts", "co_names",
})
DUNDER_READS = frozenset({
    "__globals__", "__code__", "__closure__", "__builtins__", "__subclasses__",
})
DUNDER_WRITES_OK = frozenset({"__doc__", "__name__", "__qualname__", "__module__"})
#: Configuration that honest notebooks set by assignment (dotted-path prefixes).
CONFIG_WRITES = ("torch.backends.", "pandas.options.")
CONFIG_ITEMS = re.compile(r"(^|\.)(rcParams|environ)(\[\])?$")
MAPPING_WRITES = frozenset({
    "update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__delitem__",
})

#: Magics allowed by name; ``time``/``timeit`` statements are scanned like any other code.
LINE_MAGICS_OK = frozenset({"time", "timeit", "matplotlib", "pinfo", "pinfo2"})
CELL_MAGICS_OK = frozenset({"time", "timeit"})
#: Shell commands a Colab student is told to run (install the course's packages) or runs to see
#: the GPU, and ``%pip`` lines (:func:`installs_packages`).
_PIP = r"(?:pip3?|python3?\s+-m\s+pip)\s+"
_PACKAGES = re.compile(rf"^\s*(?:{_PIP})?(?:install|list|show|freeze)\b[^;&|`$(){{}}<>\n]*$")
_GPU = re.compile(r"^\s*nvidia-smi(?:\s+-L)?\s*$")
_LOCAL = ("-e", "--editable", "-r", "--requirement", "-c", "--constraint", "-f",
          "--find-links", "-i", "--index-url", "--extra-index-url", "--target", "-t",
          "--prefix", "--root", "--src")


def installs_packages(command: str, magic: bool = False) -> bool:
    """Whether ``command`` (``!command``, or ``%pip command`` with ``magic``) only installs or
    lists packages by name, or shows the GPU: it chains, redirects or expands nothing (no
    ``; & | ` $ ( ) { } < >`` or line break: IPython expands ``{...}`` and ``$name`` as Python)
    and builds nothing from a path (``.``, ``/``, ``~``, ``file:``, ``-e``, ``-r`` ...): a
    package built from the submission's own files would run code the scan never read."""
    if not magic and _GPU.match(command):
        return True
    if not _PACKAGES.match(command) or (not magic and not re.match(rf"\s*{_PIP}", command)):
        return False
    words = command.split()
    return not any(w.startswith((".", "/", "~")) or "file:" in w or w.split("=")[0] in _LOCAL
                   for w in words)
TOO_DEEP = "code nested too deeply for the scan to read"
DOTTED = re.compile(r"^[A-Za-z_][\w.]*$")


def lookup(path: str) -> tuple[str, tuple[str, str]] | None:
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

