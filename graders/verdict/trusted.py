"""Test cells run here, in the trusted process, never in the student's kernel.

:class:`TrustedRunner` keeps one namespace per notebook for the test cells (visible and hidden
parts, taken from the instructor's source notebook). It starts with the notebook's setup cell(s)
replayed here (imports, seeds, ``DEVICE``; IPython magics dropped), so that ``np``, ``torch``,
``checks`` and the rest are the trusted process's own modules. A name the test code reads that is
neither defined here nor a builtin is looked up in the student's namespace through the bridge
(:mod:`graders.verdict.remote`): data by value, other objects as proxies. Lookups are lazy and
cached for one test cell only, so each test sees the student's current state and nothing the
student defines can replace a trusted name.

A test cell passes when its code raises nothing. Its outputs are made here: what the test code
printed, and on failure one ``error`` output whose traceback says what failed and where (a line of
the visible test, or "a hidden check"), never a line of test source. A cell whose last statement
is a number (``points.total()`` of :class:`dlworkshop.checks.Points`) gives that number as an
``execute_result``, which nbgrader scores as partial credit, as IPython would show it.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from nbformat import NotebookNode
from nbformat.v4 import new_output

from graders import syntax
from graders.verdict.remote import Bridge, BridgeBroken, KernelTimeout, StudentCodeError

MAX_PRINTED = 100_000  # characters of test output kept per cell
BEGIN_HIDDEN = "BEGIN HIDDEN TESTS"  # nbgrader's default delimiters (ClearHiddenTests)
END_HIDDEN = "END HIDDEN TESTS"


class GradingNamespace(dict):
    """The test cells' globals: trusted names first, then the student's (see the module
    docstring)."""

    def __init__(self) -> None:
        super().__init__(__name__="__grading__", __builtins__=builtins)
        self.bridge: Bridge | None = None
        self.fetched: dict[str, object] = {}

    def __missing__(self, name: str) -> object:
        if name in self.fetched:
            return self.fetched[name]
        if self.bridge is None or hasattr(builtins, name):
            raise KeyError(name)
        found = self.bridge.request("names", names=[name])
        if not isinstance(found, dict) or name not in found:
            raise KeyError(name)
        self.fetched[name] = found[name]
        return found[name]


@dataclass
class TestResult:
    """What one test cell gave: its outputs, and the failure (``"Type: message"``) if any."""

    grade_id: str
    outputs: list[NotebookNode] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0
    points: float | None = None  # the score the cell's last value gives (partial credit)

    @property
    def passed(self) -> bool:
        return not self.error


def hidden_lines(source: str, begin: str = BEGIN_HIDDEN, end: str = END_HIDDEN) -> set[int]:
    """1-based numbers of the lines nbgrader removes from a test cell (delimiters included)."""
    hidden, inside = set(), False
    for number, line in enumerate(source.splitlines(), start=1):
        if begin in line:
            inside = True
        if inside:
            hidden.add(number)
        if end in line:
            inside = False
    return hidden


def visible_line(lineno: int, hidden: set[int]) -> int:
    """The number line ``lineno`` of the full test has in the students' (release) version."""
    return lineno - sum(1 for h in hidden if h < lineno)


def strip_magics(source: str) -> str:
    """A cell's source without IPython magics and shell escapes (lines starting ``%``/``!``)."""
    return "".join(
        line for line in source.splitlines(True) if not line.lstrip().startswith(("%", "!"))
    )


def _split_last_expression(source: str, filename: str) -> tuple[object, object]:
    """The cell compiled as (everything but a final expression, that expression or None), as
    IPython runs a cell whose last value it shows."""
    import ast

    tree = syntax.parse(source, filename)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
        last = compile(last, filename, "eval")
    return compile(tree, filename, "exec"), last


def _is_points(value: object) -> bool:
    """Whether a test cell's last value is a score (a real number, not a bool)."""
    import numbers

    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class SetupError(RuntimeError):
    """A setup cell failed on the trusted side (a bug in the course, not the student's)."""


class TrustedRunner:
    """Runs one notebook's test cells against one student kernel (through ``bridge``)."""

    def __init__(
        self,
        bridge: Bridge | None,
        setup_sources: Iterable[str] = (),
        delimiters: tuple[str, str] = (BEGIN_HIDDEN, END_HIDDEN),
    ) -> None:
        self.bridge = bridge
        self.delimiters = delimiters
        self.namespace = GradingNamespace()
        for source in setup_sources:
            try:
                with _quiet():
                    exec(compile(strip_magics(source), "<setup>", "exec"), self.namespace)
            except Exception as err:
                raise SetupError(f"the notebook's setup cell failed here: {err!r}") from err
        self.namespace.bridge = bridge
        #: name -> why it may be missing (the cell that defines it and how that cell ended):
        #: makes a NameError say which task to fix first; set by the executor.
        self.explain_missing: Callable[[str], str] = lambda name: ""

    def run(self, grade_id: str, source: str) -> TestResult:
        """Run one test cell's code (the bridge session must be open); never raises for a
        failing test."""
        filename = f"<test {grade_id}>"
        result = TestResult(grade_id)
        printed = io.StringIO()
        start = time.monotonic()
        self.namespace.fetched = {}
        value = None
        try:
            body, last = _split_last_expression(source, filename)
            with _quiet(printed), _bridge_active(self.bridge):
                exec(body, self.namespace)
                if last is not None:
                    value = eval(last, self.namespace)
        except Exception as err:  # the test failed (or could not reach the student's code)
            ename, evalue, lines = self._describe(err, filename, source)
            result.error = f"{ename}: {evalue}" if evalue else ename
            result.outputs.append(new_output("error", ename=ename, evalue=evalue, traceback=lines))
        finally:
            self.namespace.fetched = {}
            result.seconds = time.monotonic() - start
        text = printed.getvalue()
        if text:
            if len(text) > MAX_PRINTED:
                text = text[:MAX_PRINTED] + "\n[... output cut ...]\n"
            result.outputs.insert(0, new_output("stream", name="stdout", text=text))
        if not result.error and _is_points(value):
            # partial credit: like IPython showing the cell's last value, which nbgrader reads
            # as the cell's score (capped at its points)
            result.points = float(value)
            result.outputs.append(new_output("execute_result", data={"text/plain": repr(
                float(value))}, execution_count=None))
        return result

    def failed_result(self, grade_id: str, ename: str, message: str) -> TestResult:
        """A test that could not run at all (the kernel is gone, ...)."""
        line = f"{ename}: {message}"
        out = new_output("error", ename=ename, evalue=message, traceback=[line])
        return TestResult(grade_id, [out], line)

    def _describe(self, err: Exception, filename: str, source: str) -> tuple[str, str, list[str]]:
        where = self._where(err, filename, source)
        if isinstance(err, StudentCodeError):
            ename, evalue = err.type_name, err.message
            lines = [line for line in err.traceback_text.splitlines() if line.strip()]
            lines = ["Traceback in your code (most recent call last):", *lines] if lines else []
            lines += [f"{ename}: {evalue}" if evalue else ename,
                      f"(raised by your code, called {where})"]
            return ename, evalue, lines
        if isinstance(err, KernelTimeout):
            ename = "TimeoutError"
        elif isinstance(err, BridgeBroken):
            ename = "KernelUnavailable"
        else:
            ename = type(err).__name__
        evalue = _message(err)
        if isinstance(err, NameError) and getattr(err, "name", None):
            hint = self.explain_missing(err.name)
            evalue = f"{evalue}: {hint}" if hint else evalue
        head = f"{ename}: {evalue}" if evalue else ename
        return ename, evalue, [head, f"(failed {where})"]

    def _where(self, err: BaseException, filename: str, source: str) -> str:
        lineno = None
        for frame, line in traceback.walk_tb(err.__traceback__):
            if frame.f_code.co_filename == filename:
                lineno = line
        if lineno is None:
            return "by the test"
        hidden = hidden_lines(source, *self.delimiters)
        if lineno in hidden:
            return "in a hidden check of this test"
        return f"at line {visible_line(lineno, hidden)} of the test cell"


def _message(err: BaseException) -> str:
    try:
        text = str(err)
    except Exception:  # noqa: BLE001
        text = ""
    return text[:4000]


@contextlib.contextmanager
def _quiet(stdout: io.StringIO | None = None):
    """Capture what the code prints (stdout into ``stdout``, stderr and warnings dropped)."""
    with contextlib.redirect_stdout(stdout or io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _bridge_active(bridge: Bridge | None):
    """Make ``dlworkshop.testing.student_side`` reach the student's kernel while a test runs."""
    try:
        from dlworkshop import testing
    except ImportError:  # a course without the helper library
        yield
        return
    previous = testing.set_student_kernel(bridge)
    try:
        yield
    finally:
        testing.set_student_kernel(previous)
