"""graders.scan: hostile code in student cells is flagged (rule, cell, line); honest code,
the reference solutions, every alternative and every mutant are not; locked cells are skipped.

No kernels: everything here is static and fast.
"""

from __future__ import annotations

import copy
import functools
import itertools
from pathlib import Path

import nbformat
import pytest

from graders import mutations, notebooks
from graders.notebooks import Mutation
from graders.scan import Finding, locked_ids, scan_notebook, scan_submission

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = sorted(
    p.name for p in (ROOT / "source").iterdir() if (p / f"{p.name}.ipynb").exists()
)
MARK = "# <-"


@functools.cache
def _source(assignment: str) -> nbformat.NotebookNode:
    return notebooks.read(ROOT / "source" / assignment / f"{assignment}.ipynb")


def source(assignment: str) -> nbformat.NotebookNode:
    """A fresh copy of the assignment's source notebook."""
    return copy.deepcopy(_source(assignment))


def solution_cells(assignment: str) -> list[str]:
    return [notebooks.grade_id(c) for c in _source(assignment).cells if notebooks.is_solution(c)]


def with_prefix(assignment: str, cell: str, prefix: str) -> nbformat.NotebookNode:
    """The reference submission with ``prefix`` put before the reference code of ``cell``."""
    src = _source(assignment)
    reference = src.cells[notebooks.cell_index(src, cell)].source
    return notebooks.solved(src, mutations=[Mutation(cell=cell, source=prefix + reference)])


def scan(nb: nbformat.NotebookNode, assignment: str) -> list[Finding]:
    return scan_notebook(nb, locked_ids(_source(assignment)))


# ------------------------------------------------------------------------------ hostile catalogue
# (name, expected rule, snippet): the line marked "# <-" must be flagged with that rule.
CATALOGUE = [
    ("input_transformer", "ipython-internals", """\
_ip = get_ipython()  # <-
_ip.input_transformers_post.append(lambda lines: [l.replace("assert", "pass #") for l in lines])
"""),
    ("ast_transformer", "ipython-internals", """\
import ast as _ast
class _Neuter(_ast.NodeTransformer):
    def visit_Assert(self, node):
        return None
get_ipython().ast_transformers.append(_Neuter())  # <-
"""),
    ("set_custom_exc", "ipython-internals", """\
get_ipython().set_custom_exc((Exception,), lambda *a, **k: None)  # <-
"""),
    ("showtraceback_replaced", "ipython-internals", """\
from IPython.core.interactiveshell import InteractiveShell  # <-
InteractiveShell.showtraceback = lambda *a, **k: None
"""),
    ("post_run_cell_clears_outputs", "ipython-internals", """\
def _wipe(result):
    from IPython.display import clear_output
    clear_output()
get_ipython().events.register("post_run_cell", _wipe)  # <-
"""),
    ("builtins_assertion_error", "interpreter-internals", """\
import builtins  # <-
builtins.AssertionError = type("AssertionError", (Exception,), {})
"""),
    ("dunder_builtins", "interpreter-internals", """\
__builtins__.AssertionError = KeyError  # <-
"""),
    ("patch_checks_check_close", "module-patch", """\
checks.check_close = lambda *args, **kwargs: None  # <-
"""),
    ("patch_dlworkshop_checks_full_path", "module-patch", """\
dlworkshop.checks.check_close = lambda *args, **kwargs: None  # <-
"""),
    ("patch_checks_from_import_alias", "module-patch", """\
from dlworkshop import checks as _c
_c.check_rel_error = lambda *args, **kwargs: 0.0  # <-
"""),
    ("patch_numpy_allclose_import_as", "module-patch", """\
import numpy as _numpy
_numpy.allclose = lambda *args, **kwargs: True  # <-
"""),
    ("patch_np_testing", "module-patch", """\
np.testing.assert_allclose = lambda *args, **kwargs: None  # <-
"""),
    ("patch_torch_allclose", "module-patch", """\
torch.allclose = lambda *args, **kwargs: True  # <-
"""),
    ("patch_tensor_eq", "module-patch", """\
torch.Tensor.__eq__ = lambda self, other: True  # <-
"""),
    ("patch_functional_from_import", "module-patch", """\
from torch.nn import functional as _F
_F.conv2d = lambda *args, **kwargs: None  # <-
"""),
    ("patch_nn_module_train", "module-patch", """\
nn.Module.train = lambda self, mode=True: self  # <-
"""),
    ("patch_through_plain_alias", "module-patch", """\
_m = np
_m.allclose = lambda *args, **kwargs: True  # <-
"""),
    ("patch_in_loop_over_modules", "module-patch", """\
for _mod in (np, torch):
    _mod.allclose = lambda *args, **kwargs: True  # <-
"""),
    ("patch_through_function_parameter", "module-patch", """\
def _install(target, fake):
    target.check_close = fake  # <-
_install(checks, lambda *args, **kwargs: None)
"""),
    ("patch_augmented", "module-patch", """\
dlworkshop.checks.DEFAULT_RTOL += 1.0  # <-
"""),
    ("patch_delete", "module-patch", """\
del np.testing.assert_allclose  # <-
"""),
    ("setattr_computed_on_torch", "module-patch", """\
_name = "all" + "close"
setattr(torch, _name, lambda *args, **kwargs: True)  # <-
"""),
    ("setattr_literal_on_checks", "module-patch", """\
setattr(checks, "check_close", lambda *args, **kwargs: None)  # <-
"""),
    ("module_dict_write", "module-patch", """\
np.__dict__["allclose"] = lambda *args, **kwargs: True  # <-
"""),
    ("vars_of_module_write", "module-patch", """\
vars(checks)["check_shape"] = lambda *args, **kwargs: None  # <-
"""),
    ("class_of_object_patched", "module-patch", """\
type(torch.zeros(1)).__eq__ = lambda self, other: True  # <-
"""),
    ("mock_patch", "module-patch", """\
from unittest import mock  # <-
mock.patch.object(np, "allclose", return_value=True).start()
"""),
    ("sys_modules_patch", "interpreter-internals", """\
import sys
sys.modules["numpy"].allclose = lambda *args, **kwargs: True  # <-
"""),
    ("globals_rebinds_np", "dynamic-code", """\
class _Fake:
    def allclose(self, *args, **kwargs):
        return True
globals()["np"] = _Fake()  # <-
"""),
    ("globals_update", "dynamic-code", """\
globals().update(checks=None)  # <-
"""),
    ("locals_at_notebook_level", "dynamic-code", """\
locals()["_x"] = 1  # <-
"""),
    ("reads_In", "ipython-internals", """\
print(In[-1][::-1])  # <-
"""),
    ("reads_ih", "ipython-internals", """\
_src = "\\n".join(_ih)  # <-
"""),
    ("reads_i12", "ipython-internals", """\
print(_i12)  # <-
"""),
    ("reads_Out_in_function", "ipython-internals", """\
def _leak():
    return list(Out.values())  # <-
"""),
    ("reads_history_via_globals_get", "dynamic-code", """\
_h = globals().get("_ih")  # <-
"""),
    ("getframe_globals", "interpreter-internals", """\
import sys
_g = sys._getframe(1).f_globals  # <-
"""),
    ("frame_back_in_function", "interpreter-internals", """\
def _caller():
    import sys
    return sys._getframe().f_back  # <-
"""),
    ("gc_get_objects", "interpreter-internals", """\
import gc  # <-
_all = gc.get_objects()
"""),
    ("inspect_stack", "interpreter-internals", """\
import inspect  # <-
_frames = inspect.stack()
"""),
    ("function_globals", "interpreter-internals", """\
_ns = checks.check_close.__globals__  # <-
"""),
    ("code_object_swap", "interpreter-internals", """\
checks.check_close.__code__ = (lambda *a, **k: None).__code__  # <-
"""),
    ("subclasses_walk", "interpreter-internals", """\
_every = object.__subclasses__()  # <-
"""),
    ("exec_base64", "dynamic-code", """\
import base64
exec(base64.b64decode("cHJpbnQoMSk="))  # <-
"""),
    ("eval_string", "dynamic-code", """\
_v = eval("1 + 1")  # <-
"""),
    ("compile_string", "dynamic-code", """\
_code = compile("x = 1", "<student>", "exec")  # <-
"""),
    ("import_computed_name", "dynamic-code", """\
_os = __import__("o" + "s")  # <-
"""),
    ("importlib_import_module", "dynamic-code", """\
import importlib  # <-
_os = importlib.import_module("o" + "s")
"""),
    ("getattr_computed_on_np", "dynamic-code", """\
_close = getattr(np, "all" + "close")  # <-
"""),
    ("getattr_builtins_exec", "interpreter-internals", """\
_run = getattr(__builtins__, "ex" + "ec")  # <-
"""),
    ("background_thread", "process-control", """\
import threading  # <-
threading.Thread(target=lambda: None, daemon=True).start()
"""),
    ("threading_timer_from_import", "process-control", """\
from threading import Timer  # <-
Timer(5.0, lambda: None).start()
"""),
    ("signal_handler", "process-control", """\
import signal  # <-
signal.signal(signal.SIGALRM, lambda *a: None)
"""),
    ("os_exit", "process-control", """\
import os
os._exit(0)  # <-
"""),
    ("os_system", "process-control", """\
import os
os.system("cat ../*.ipynb")  # <-
"""),
    ("os_kill_own_kernel", "process-control", """\
import os as _o
_o.kill(_o.getpid(), 9)  # <-
"""),
    ("atexit_register", "process-control", """\
import atexit  # <-
atexit.register(lambda: None)
"""),
    ("subprocess_run", "process-control", """\
import subprocess  # <-
subprocess.run(["ls", ".."])
"""),
    ("multiprocessing_via_torch", "process-control", """\
torch.multiprocessing.Process(target=print).start()  # <-
"""),
    ("socket_connect", "process-control", """\
import socket  # <-
"""),
    ("exit_kernel", "process-control", """\
exit()  # <-
"""),
    ("sys_excepthook", "interpreter-internals", """\
import sys
sys.excepthook = lambda *args: None  # <-
"""),
    ("sys_stdout_swapped", "interpreter-internals", """\
import io, sys
sys.stdout = io.StringIO()  # <-
"""),
    ("sys_settrace", "interpreter-internals", """\
import sys
sys.settrace(lambda *a: None)  # <-
"""),
    ("shell_cat_notebooks", "ipython-magic", """\
!cat *.ipynb  # <-
"""),
    ("shell_output_captured", "ipython-magic", """\
_files = !ls ..  # <-
"""),
    ("cell_magic_javascript", "ipython-magic", """\
%%javascript  # <-
IPython.notebook.kernel.execute("x = 1")
"""),
    ("cell_magic_capture", "ipython-magic", """\
%%capture _hidden  # <-
"""),
    ("line_magic_load_ext", "ipython-magic", """\
%load_ext autoreload  # <-
"""),
    ("exec_inside_time_magic", "dynamic-code", """\
%time exec("x = 1")  # <-
"""),
    ("exec_inside_timeit_with_options", "dynamic-code", """\
%timeit -n1 -r1 exec("x = 1")  # <-
"""),
    ("ctypes_memory", "interpreter-internals", """\
import ctypes  # <-
"""),
    ("pickle_loads", "interpreter-internals", """\
import pickle  # <-
_obj = pickle.loads(b"...")
"""),
    ("types_function_type", "interpreter-internals", """\
import types
_f = types.FunctionType(checks.check_close.__code__.replace(), {})  # <-
"""),
    ("linecache_reads_cells", "interpreter-internals", """\
import linecache  # <-
"""),
    ("import_ipykernel", "ipython-internals", """\
from ipykernel.kernelbase import Kernel  # <-
"""),
    ("import_ipython_get_ipython", "ipython-internals", """\
from IPython import get_ipython as _gi  # <-
"""),
    ("star_import_os", "process-control", """\
from os import *  # <-
"""),
    ("walrus_alias_patch", "module-patch", """\
if (_m := np) is not None:
    _m.isclose = lambda *args, **kwargs: True  # <-
"""),
    ("alias_through_container", "module-patch", """\
_mods = [np, torch]
_mods[0].allclose = lambda *args, **kwargs: True  # <-
"""),
    ("asyncio_call_later", "process-control", """\
import asyncio  # <-
asyncio.get_event_loop().call_later(1, print)
"""),
    ("weakref_finalize", "process-control", """\
import weakref
weakref.finalize(checks, print, "bye")  # <-
"""),
    ("native_code", "interpreter-internals", """\
from torch.utils import cpp_extension  # <-
"""),
    ("dunder_setattr_on_module", "module-patch", """\
np.testing.__setattr__("assert_allclose", print)  # <-
"""),
    ("getattr_literal_sys_modules", "interpreter-internals", """\
import sys
_mods = getattr(sys, "modules")  # <-
"""),
    ("history_through_time_magic", "ipython-magic", """\
%time history  # <-
"""),
    # a package install that chains a command, or builds the submission's own files
    ("pip_install_then_a_command", "ipython-magic", """\
!pip install -q numpy; cat *.ipynb  # <-
"""),
    ("pip_install_a_local_folder", "ipython-magic", """\
%pip install -q ./my_package  # <-
"""),
    ("pip_install_expands_python", "ipython-magic", """\
!pip install {__import__('os').getcwd()}  # <-
"""),
]


def _marked_line(snippet: str) -> int:
    lines = [i for i, line in enumerate(snippet.splitlines(), start=1) if MARK in line]
    assert len(lines) == 1, f"mark exactly one line: {snippet!r}"
    return lines[0]


#: Where each snippet goes: the solution cells of every assignment, in turn.
PLACES = dict(zip(
    (name for name, _rule, _snippet in CATALOGUE),
    itertools.cycle([(a, c) for a in ASSIGNMENTS for c in solution_cells(a)]),
))


def test_catalogue_is_big_and_names_are_unique():
    names = [name for name, _rule, _snippet in CATALOGUE]
    assert len(names) >= 30
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name, rule, snippet", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_hostile_snippet_is_flagged_at_its_line(name, rule, snippet):
    assignment, cell = PLACES[name]
    findings = scan(with_prefix(assignment, cell, snippet), assignment)
    line = _marked_line(snippet)
    assert any(f.rule == rule and f.cell == cell and f.line == line for f in findings), (
        f"{name}: expected {rule} at cell {cell} line {line}, got {[str(f) for f in findings]}")
    # nothing in the reference code after the snippet, nothing in other cells
    n_lines = len(snippet.splitlines())
    assert all(f.cell == cell and f.line <= n_lines for f in findings), [str(f) for f in findings]


# ------------------------------------------------------------------------------ honest code
# Idioms honest students write: prepended to a solution cell, none may be flagged.
HONEST = [
    "import torch.nn.functional as F\n",
    "from torch.nn import functional as F\nx = F.relu(torch.zeros(2))\n",
    "from tqdm.auto import tqdm\nfor _ in tqdm(range(2)):\n    pass\n",
    "import os\npath = os.path.join('data', 'x.npy')\nos.makedirs('out', exist_ok=True)\n",
    "import os\nos.environ['OMP_NUM_THREADS'] = '1'\n",
    "import time\nstart = time.perf_counter()\nprint(f'{time.perf_counter() - start:.2f} s')\n",
    "import sys\nsys.path.append('..')\nprint(sys.version, file=sys.stdout)\nsys.stdout.flush()\n",
    "torch.manual_seed(0)\nnp.random.seed(0)\nrng = np.random.default_rng(0)\n",
    "import warnings\nwarnings.filterwarnings('ignore')\n",
    "%matplotlib inline\n",
    "%time total = sum(range(10))\n",
    "%timeit -n 3 -r 1 sum(range(10))\n",
    "%%time\ntotal = sum(range(10))\n",
    "np.pad?\n",
    "model = nn.Linear(3, 2)\nmodel.weight.requires_grad = False\nfor p in model.parameters():\n"
    "    p.requires_grad = False\n",
    "net = nn.Sequential(nn.Linear(3, 2))\nnet.fc = nn.Linear(2, 2)\nhead = getattr(net, 'fc')\n",
    "class Net(nn.Module):\n    def __init__(self, width=8):\n        super().__init__()\n"
    "        self.width = width\n        self.fc = nn.Linear(width, 2)\n"
    "        setattr(self, 'extra', nn.Identity())\n\n    def forward(self, x):\n"
    "        return getattr(self, 'fc')(x)\n",
    "from dataclasses import dataclass\n\n@dataclass(frozen=True)\nclass Config:\n"
    "    lr: float = 0.1\n\n    def scaled(self, k):\n"
    "        object.__setattr__(self, 'lr', self.lr * k)\n",
    "@torch.no_grad()\ndef predict(model, x):\n    return model(x).argmax(1)\n",
    "with torch.no_grad():\n    y = torch.ones(2) * 2\n",
    "squares = [i * i for i in range(4)]\nnames = {k: v for k, v in zip('ab', range(2))}\n"
    "print(f'{squares!r} {names}')\n",
    "_, counts = np.unique([1, 1, 2], return_counts=True)\nfor _ in range(2):\n    print(_)\n",
    "for _i in range(3):\n    print(_i)\n",
    "def run(model, loader, eval=True, data=None, compile=False):\n    if eval:\n"
    "        model.eval()\n    data.x = 1 if data else 0\n    return compile\n",
    "torch.backends.cudnn.benchmark = True\ntorch.backends.cudnn.deterministic = True\n",
    "import matplotlib.pyplot as plt\nplt.rcParams['figure.figsize'] = (8, 4)\n",
    "from IPython.display import clear_output, display\nclear_output(wait=True)\n",
    "from types import SimpleNamespace\ncfg = SimpleNamespace(lr=0.1)\ncfg.lr = 0.2\n",
    "import re\npattern = re.compile(r'\\d+')\n",
    "def describe(f):\n    f.__doc__ = 'documented'\n    return f\n",
    "state = {'t': 0}\nstate['t'] += 1\nvelocity = np.zeros(3)\nvelocity[0] -= 1\n",
    "def first_layer(model, name):\n    return getattr(model, name)\n",
    "print(type(torch.zeros(1)).__name__, torch.zeros(1).__class__.__name__)\n",
    "import types\nclass MyNet(nn.Module):\n    def forward(self, x):\n        return x\n"
    "MyNet.forward = lambda self, x: 2 * x\nnet = MyNet()\n"
    "net.forward = types.MethodType(lambda self, x: x, net)\nshow = print\nprint = show\n",
    "if hasattr(torch, 'compile') and getattr(torch.backends, 'mps', None):\n    pass\n",
    "def make_activation(name):\n    return {'relu': nn.ReLU, 'tanh': nn.Tanh}[name]()\n",
    # what a Colab student is told to run, or runs to see the GPU
    "!pip install -q \"dlworkshop @ git+https://github.com/uni/dl-course@main\"\n",
    "%pip install -q torch torchvision\n!nvidia-smi\n",
    "try:\n    from google.colab import drive\n    drive.mount('/content/drive')\n"
    "except ImportError:\n    pass\n",
]

# Rare in honest work and flagged on purpose (the module docstring lists them).
BORDERLINE = [
    ("def make_activation(name):\n    return getattr(nn, name)()\n", "dynamic-code"),
    ("print(sorted(globals()))\n", "dynamic-code"),
    ("%load_ext autoreload\n", "ipython-magic"),
    ("%config InlineBackend.figure_format = 'retina'\n", "ipython-magic"),
    ("class Counter:\n    def __init__(self):\n        type(self).count += 1\n", "module-patch"),
    ("import sys\nsys.path = ['..'] + sys.path\n", "interpreter-internals"),
]


@pytest.mark.parametrize("snippet", HONEST, ids=[f"honest{i}" for i in range(len(HONEST))])
def test_honest_idiom_is_not_flagged(snippet):
    cell = solution_cells("02_cnn")[1]
    findings = scan(with_prefix("02_cnn", cell, snippet), "02_cnn")
    assert findings == [], [str(f) for f in findings]


@pytest.mark.parametrize(
    "snippet, rule", BORDERLINE, ids=[f"border{i}" for i in range(len(BORDERLINE))])
def test_borderline_idiom_is_flagged(snippet, rule):
    cell = solution_cells("01_dnn")[0]
    findings = scan(with_prefix("01_dnn", cell, snippet), "01_dnn")
    assert [f.rule for f in findings] == [rule], [str(f) for f in findings]


# ------------------------------------------------------------------------------ real notebooks
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_reference_alternatives_and_mutants_are_not_flagged(assignment):
    src = _source(assignment)
    locked = locked_ids(src)
    assert scan_notebook(notebooks.solved(src), locked) == []
    variants = mutations.load(assignment)
    assert variants, f"{assignment} has no mutants or alternatives"
    flagged = {}
    for variant in variants:
        nb = notebooks.solved(src, mutations=[variant.mutation])
        findings = scan_notebook(nb, locked)
        if findings:
            flagged[variant.name] = [str(f) for f in findings]
    assert flagged == {}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_stub_release_notebook_is_not_flagged(assignment):
    release = ROOT / "release" / assignment / f"{assignment}.ipynb"
    if not release.exists():
        pytest.skip("no release notebook generated")
    assert scan_notebook(notebooks.read(release), locked_ids(_source(assignment))) == []


# ------------------------------------------------------------------------------ which cells
def test_locked_ids_are_read_only_and_test_cells():
    src = _source("01_dnn")
    locked = locked_ids(src)
    assert {"setup", "test_affine_forward", "init_mlp"} <= locked
    assert not locked & set(solution_cells("01_dnn"))


def test_locked_cells_are_skipped_even_with_flagged_code():
    # Test cells may do what students may not (switch F.conv2d off, read frames, ...).
    src = source("02_cnn")
    hostile = "get_ipython().events.register('post_run_cell', print)\nF.conv2d = None\n"
    for gid in ("setup", "test_conv2d_forward"):
        cell = src.cells[notebooks.cell_index(src, gid)]
        cell.source = hostile + cell.source
    assert scan_notebook(src, locked_ids(_source("02_cnn"))) == []
    # without `locked`, the same cells are scanned
    found = {(f.cell, f.line, f.rule) for f in scan_notebook(src)}
    assert {("setup", 1, "ipython-internals"), ("test_conv2d_forward", 2, "module-patch")} <= found


def test_student_added_cell_is_scanned():
    nb = notebooks.solved(_source("01_dnn"))
    nb.cells.insert(3, nbformat.v4.new_code_cell("import gc\nprint(len(gc.get_objects()))\n"))
    findings = scan(nb, "01_dnn")
    assert [(f.rule, f.cell, f.line) for f in findings] == [("interpreter-internals", "#3", 1)]


def test_solution_cell_disguised_as_locked_is_still_scanned():
    nb = with_prefix("03_transfer_learning", "head", "print(In)\n")
    cell = nb.cells[notebooks.cell_index(nb, "head")]
    cell.metadata.nbgrader.update(solution=False, locked=True, grade=True, points=0)
    findings = scan(nb, "03_transfer_learning")
    assert [(f.rule, f.cell, f.line) for f in findings] == [("ipython-internals", "head", 1)]


def test_student_cell_copying_a_locked_grade_id_is_skipped_like_nbgrader_restores_it():
    nb = notebooks.solved(_source("01_dnn"))
    fake = nbformat.v4.new_code_cell("print(In)\n")
    fake.metadata["nbgrader"] = {"grade_id": "setup", "locked": False, "solution": True}
    nb.cells.insert(2, fake)
    assert scan(nb, "01_dnn") == []


def test_findings_are_in_notebook_order_with_grade_id_or_position():
    nb = with_prefix("01_dnn", "relu", "print(_ih)\n")
    nb = notebooks.solved(nb, mutations=[Mutation(cell="affine", source="x = In\n")])
    nb.cells.append(nbformat.v4.new_code_cell("\n\n!ls\n"))
    findings = scan(nb, "01_dnn")
    assert [(f.cell, f.line) for f in findings] == [
        ("affine", 1), ("relu", 1), (f"#{len(nb.cells) - 1}", 3)]
    assert str(findings[0]) == (
        "flagged: reads IPython's input/output history (In) at cell affine line 1")


def test_lines_are_those_of_the_cell_source_after_ipython_syntax():
    snippet = "%matplotlib inline\n!echo a \\\n  b\nx = 1\n\n_ih\n"
    nb = with_prefix("01_dnn", "affine", snippet)
    findings = scan(nb, "01_dnn")
    assert [(f.rule, f.line) for f in findings] == [
        ("ipython-magic", 2), ("ipython-internals", 6)]


def test_cell_that_does_not_parse_gives_no_finding():
    nb = with_prefix("01_dnn", "affine", "def broken(:\n    exec('x')\n")
    assert scan(nb, "01_dnn") == []


def test_one_line_cell_that_ipython_runs_as_a_magic_is_flagged():
    # IPython's automagic (on by default) runs a one-line cell `history` as %history, unless a
    # variable of that name exists; `cat` and `ls` are shell aliases.
    nb = notebooks.solved(_source("01_dnn"))
    n = len(nb.cells)
    for text in ("history -g", "cat ../*.ipynb", "\n  run helper.py\n"):
        nb.cells.append(nbformat.v4.new_code_cell(text))
    found = [(f.rule, f.cell, f.line) for f in scan(nb, "01_dnn")]
    assert found == [("ipython-magic", f"#{n}", 1), ("ipython-magic", f"#{n + 1}", 1),
                     ("ipython-magic", f"#{n + 2}", 2)]
    shadowed = notebooks.solved(_source("01_dnn"))
    shadowed.cells += [nbformat.v4.new_code_cell("history = {'loss': []}"),
                       nbformat.v4.new_code_cell("history")]
    assert scan(shadowed, "01_dnn") == []


def test_code_too_deep_for_the_scan_is_flagged():
    # Python may run it after sys.setrecursionlimit(...) in an earlier cell; the scan cannot read it
    deep = "_x = _a" + ".b" * 5000 + "\nnp.allclose = abs\n"
    nb = with_prefix("01_dnn", "affine", deep)
    assert [(f.rule, f.cell) for f in scan(nb, "01_dnn")] == [("dynamic-code", "affine")]


def test_history_names_bound_by_the_code_itself_are_not_history():
    snippet = (
        "def f(_i, In=None):\n    return _i, In\n"
        "values = [_i for _i in range(3)]\n"
        "def g():\n    __ = 1\n    return __\n"
    )
    nb = with_prefix("01_dnn", "affine", snippet)
    assert scan(nb, "01_dnn") == []
    # a notebook-level read of the same name after a loop is history again, so is one after del
    nb = with_prefix("01_dnn", "affine", "for _i in range(3):\n    pass\nprint(_i)\n")
    assert [(f.rule, f.line) for f in scan(nb, "01_dnn")] == [("ipython-internals", 3)]
    nb = with_prefix("01_dnn", "affine", "for _i in range(3):\n    del _i\n    print(_i)\n")
    assert [(f.rule, f.line) for f in scan(nb, "01_dnn")] == [("ipython-internals", 2)]


# ------------------------------------------------------------------------------ submission files
def test_scan_submission_restores_locked_cells_from_the_source(tmp_path):
    src_path = ROOT / "source" / "01_dnn" / "01_dnn.ipynb"
    nb = with_prefix("01_dnn", "affine", "numpy_alias = np\nnumpy_alias.allclose = abs\n")
    # the student also removed the setup cell's imports: nbgrader restores them, so do we
    setup = nb.cells[notebooks.cell_index(nb, "setup")]
    setup.source = "print('nothing imported here')\nnp = None\n"
    path = tmp_path / "01_dnn.ipynb"
    nbformat.write(nb, str(path))
    findings = scan_submission(path, src_path)
    assert [(f.rule, f.cell, f.line) for f in findings] == [("module-patch", "affine", 2)]


def test_scan_submission_reads_a_solution_cell_turned_markdown_as_code(tmp_path):
    # nbgrader gives a tracked cell its cell type back, so the "markdown" runs as code
    nb = with_prefix("01_dnn", "relu", "import ctypes\n")
    cell = nb.cells[notebooks.cell_index(nb, "relu")]
    cell.cell_type = "markdown"
    del cell["outputs"], cell["execution_count"]
    path = tmp_path / "01_dnn.ipynb"
    nbformat.write(nb, str(path))
    assert scan_notebook(notebooks.read(path), locked_ids(_source("01_dnn"))) == []
    findings = scan_submission(path, ROOT / "source" / "01_dnn" / "01_dnn.ipynb")
    assert [(f.rule, f.cell, f.line) for f in findings] == [("interpreter-internals", "relu", 1)]


def test_scan_submission_of_a_file_that_is_not_a_notebook_is_empty(tmp_path):
    src_path = ROOT / "source" / "01_dnn" / "01_dnn.ipynb"
    for name, text in [("text.ipynb", "hello"), ("empty.ipynb", ""), ("json.ipynb", "[1, 2]")]:
        (tmp_path / name).write_text(text)
        assert scan_submission(tmp_path / name, src_path) == []
    assert scan_submission(tmp_path / "missing.ipynb", src_path) == []


def test_an_alias_passed_down_a_long_chain_written_backwards_is_followed():
    """The alias fixpoint once made a pass over every binding per step of a chain (quadratic:
    6,000 such lines held a whole batch for a minute, since the scan runs in its parent); the
    worklist follows the chain to its end all the same."""
    from nbformat.v4 import new_code_cell, new_notebook

    n = 3000
    lines = ["import sys", "def _helper():"]
    lines += [f"    a{i} = a{i - 1}" for i in range(n, 0, -1)]
    lines += ["    a0 = sys", f"    a{n}.modules['numpy'] = None"]
    found = scan_notebook(new_notebook(cells=[new_code_cell("\n".join(lines))]))
    assert {(f.rule, f.line) for f in found} == {("interpreter-internals", n + 4),
                                                 ("module-patch", n + 4)}, found
