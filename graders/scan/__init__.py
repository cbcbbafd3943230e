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
        ``%%timeit`` (whose statements are scanned like any other code), ``%matplotlib``,
        ``name?`` / ``name??`` help on a plain name, and installing or listing packages by name
        (``!pip install -q "dlworkshop @ git+..."``, as a Colab student is told to, ``%pip
        install``, ``!nvidia-smi``: nothing chained, expanded or built from a path).
        ``%%javascript``, ``%%capture``, ``%env``, ``%config``, ``%load_ext``, ``%autoreload``,
        ``%pip install ./folder``, ``!pip install x; cat *.ipynb``, ``!cat *.ipynb`` are
        flagged, and so is a one-line cell that IPython's automagic runs as one (``history``,
        ``run x.py``, ``cat *.ipynb``), also inside ``%time``.
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

import copy
from collections.abc import Collection
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from graders.notebooks import grade_id
from graders.scan.catalogue import Finding
from graders.scan.cells import locked_ids, notebook_units
from graders.scan.checks import Scan

__all__ = ["Finding", "locked_ids", "scan_notebook", "scan_submission"]


def scan_notebook(nb: NotebookNode, locked: Collection[str] = ()) -> list[Finding]:
    """Findings in the student-controlled code cells of ``nb``, in notebook order.

    Cells whose grade_id is in ``locked`` are not scanned (nbgrader restores them), but their
    imports are read: ``np`` bound by a read-only setup cell is numpy in every other cell.
    """
    scan = Scan(notebook_units(nb, locked))
    scan.collect()
    try:
        scan.propagate()
    except RecursionError:
        pass  # the aliases found so far; the deep expression is reported by check()
    scan.check()
    return scan.result()


def scan_submission(
    path: str | Path | NotebookNode, source_path: str | Path | NotebookNode
) -> list[Finding]:
    """Findings in a submitted notebook (a path, or the notebook read), read as nbgrader will
    grade it; ``source_path``: the instructor's notebook (a path, or the notebook read).

    As nbgrader's ``OverwriteCells`` does, every cell the source notebook tracks gets its cell
    type back (a solution cell turned into markdown runs as code) and the locked cells get
    their source back (so that their imports are the instructor's). A file that is not a
    notebook gives no findings: other code reports it.
    """
    try:
        nb = path if isinstance(path, NotebookNode) else nbformat.read(str(path), as_version=4)
    except Exception:  # noqa: BLE001 - not JSON, not a notebook, unreadable: reported elsewhere
        return []
    if not isinstance(nb, NotebookNode) or not isinstance(nb.get("cells"), list):
        return []
    source_nb = (source_path if isinstance(source_path, NotebookNode)
                 else nbformat.read(str(source_path), as_version=4))
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
