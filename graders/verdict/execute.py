"""Executing a notebook with its test cells on the trusted side.

:func:`run_cells` is the loop both entry points share: every cell that is not a test runs in the
student's kernel as nbclient runs it; every test cell runs in a :class:`TrustedRunner` that
reaches the kernel through a :class:`~graders.verdict.remote.Bridge` (see the package docstring).

* :class:`VerdictExecute` is nbgrader's ``Execute`` preprocessor with that loop. The course
  configuration puts it in ``Autograde.autograde_preprocessors``, so that ``nbgrader autograde``
  (command line, formgrader, ``python -m graders autograde``) grades this way. It takes the test
  cells' code and the setup cells from the gradebook (nbgrader's own copy of the source, hidden
  tests included), never from the submission.
* :func:`execute` runs a notebook that carries its tests itself (a source notebook, as the
  mutation proofs use it) the same way, without nbgrader.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Enum, List, Unicode, default

from graders import syntax
from graders.verdict.outputs import MAX_MESSAGE_BYTES, BoundedOutputs
from graders.verdict.remote import HELLO_TIMEOUT_S, Bridge, BridgeBroken
from graders.verdict.trusted import BEGIN_HIDDEN, END_HIDDEN, TestResult, TrustedRunner

INSTALL_TIMEOUT_S = 60.0
END_TIMEOUT_S = 15.0
PROBE_TIMEOUT_S = 5.0
#: How a kernel is stopped once its notebook has run: killed. Its grades are in by then, and a
#: graceful shutdown of a kernel that has loaded PyTorch (interpreter teardown) took 1.5-2.5 s
#: per notebook on 2 cores, measured (``scripts/bench_class.py``).
IMMEDIATE = "immediate"
#: Environment variable naming the progress file of a grading run (see :class:`ProgressLog`).
ENV_PROGRESS = "GRADERS_PROGRESS"


def _grade_id(cell: NotebookNode) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _warm_up() -> None:
    """Pay the trusted side's one-off lazy imports here too, off the critical path: PyTorch's
    first optimizer step imports ``torch._dynamo`` (about 1 s on 2 cores), which a test that
    compares with ``torch.optim`` would otherwise wait for."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    with contextlib.suppress(Exception):
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0).step()


def _torch_threads() -> int | None:
    """The threads torch gives an operation in this thread, the one the test cells run in on
    the trusted side (None: torch is not loaded here)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


class GradingSession:
    """The agent in one student kernel, a bridge to it and the trusted runner."""

    def __init__(
        self,
        client: NotebookClient,
        setup: Sequence[str],
        delimiters: tuple[str, str],
        cell_timeout: float | None,
    ) -> None:
        self.client = client
        self.cell_timeout = cell_timeout or 3600.0
        km = client.km
        folder = getattr(km, "agent_folder", None)
        self._own_folder = None
        if folder is None:
            folder = self._own_folder = Path(tempfile.mkdtemp(prefix="graders-agent-"))
        self.bridge = Bridge(Path(folder), interrupt=self._interrupt, alive=self._alive)
        self.kc = km.blocking_client()
        self.kc.context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)  # (a kernel's error text)
        self.kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        self._install()
        #: name -> why it may be missing (see TrustedRunner.explain_missing)
        self.explain_missing: Callable[[str], str] = lambda name: ""
        # The setup cells' replay here (imports of torch, scikit-learn, the course: seconds)
        # overlaps the student's cells in the kernel; the first test cell waits for it.
        self._runner: TrustedRunner | None = None
        self._runner_error: BaseException | None = None
        self._setup = threading.Thread(target=self._make_runner, args=(list(setup), delimiters),
                                       name="trusted-setup", daemon=True)
        self._setup.start()

    def _make_runner(self, setup: list[str], delimiters: tuple[str, str]) -> None:
        try:
            self._runner = TrustedRunner(self.bridge, setup, delimiters)
        except BaseException as err:  # noqa: BLE001 (raised again where the runner is used)
            self._runner_error = err
            return
        _warm_up()

    @property
    def runner(self) -> TrustedRunner:
        """The trusted runner, once the setup cells' replay is done (its error, if it failed)."""
        self._setup.join()
        if self._runner_error is not None:
            raise self._runner_error
        assert self._runner is not None
        self._runner.explain_missing = self.explain_missing
        return self._runner

    def _interrupt(self) -> None:
        with contextlib.suppress(Exception):
            run_sync(self.client.km.interrupt_kernel)()

    def _install(self) -> None:
        msg_id = self.kc.execute(self.bridge.install_code(), silent=True, store_history=False,
                                 allow_stdin=False, stop_on_error=False)
        reply = self._shell_reply(msg_id, INSTALL_TIMEOUT_S)
        if reply is None:
            self.bridge.dead = "the grading agent could not be started in the kernel (no reply)"
        elif reply["content"].get("status") != "ok":
            content = reply["content"]
            self.bridge.dead = (
                "the grading agent could not be started in the kernel: "
                f"{str(content.get('ename'))[:200]}: {str(content.get('evalue'))[:1000]}"
            )

    def _shell_reply(self, msg_id: str, timeout: float) -> dict | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                msg = self.kc.get_shell_msg(timeout=min(0.5, max(0.01, end - time.monotonic())))
            except Exception:  # noqa: BLE001 (queue.Empty, or the channel closed)
                if not self._alive():
                    return None
                continue
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return msg
        return None

    def _alive(self) -> bool:
        try:
            return bool(run_sync(self.client.km.is_alive)())
        except Exception:  # noqa: BLE001
            return False

    def run_test(self, grade_id: str, source: str) -> TestResult:
        """Run one test cell on the trusted side against the kernel's current state."""
        bridge, runner = self.bridge, self.runner
        if bridge.dead is not None:
            return runner.failed_result(grade_id, "KernelUnavailable", bridge.dead)
        token = secrets.token_hex(8)
        msg_id = self.kc.execute(bridge.serve_code(token), silent=True, store_history=False,
                                 allow_stdin=False, stop_on_error=False)
        deadline = time.monotonic() + self.cell_timeout
        answered: list[dict] = []

        def stop() -> str | None:
            if not answered:
                try:
                    msg = self.kc.get_shell_msg(timeout=0)
                except Exception:  # noqa: BLE001 (nothing yet)
                    msg = None
                if msg and msg.get("parent_header", {}).get("msg_id") == msg_id:
                    answered.append(msg)
            if answered:
                c = answered[0]["content"]
                return ("the kernel could not run the test: "  # (its text is the kernel's)
                        f"{str(c.get('ename', 'error'))[:200]}: "
                        f"{str(c.get('evalue', ''))[:1000]}".strip())
            if not self._alive():
                bridge.dead = "the kernel died"
                return bridge.dead
            return None

        try:
            bridge.wait_hello(token, min(HELLO_TIMEOUT_S, self.cell_timeout), stop)
        except BridgeBroken as err:
            return runner.failed_result(grade_id, "KernelUnavailable", str(err))
        bridge.begin_session(deadline)
        try:
            result = runner.run(grade_id, source)
        finally:
            bridge.end_session()
        if not answered and bridge.dead is None:
            if self._shell_reply(msg_id, END_TIMEOUT_S) is None:
                bridge.dead = "the kernel stopped answering after a test"
        return result

    def close(self) -> None:
        self._setup.join()
        with contextlib.suppress(Exception):
            self.kc.stop_channels()
        self.bridge.close()
        if self._own_folder is not None:
            shutil.rmtree(self._own_folder, ignore_errors=True)


class ProgressLog:
    """What the grading run has done so far, one JSON line per event, in a file the grader
    reads when the run is stopped before nbgrader could save anything (a wall-clock limit):
    ``{"running": label}`` before a cell, ``{"test": grade_id, "points": p, "max": m, ...}``
    after a test cell, ``{"done": label, "seconds": s}`` after any other code cell,
    ``{"timeout": label, "seconds": s}`` for a cell past its limit, and
    ``{"stopped": reason, "at": label, "kind": "timeout" | "crash"}`` when the kernel died or
    stopped answering (after a time limit, or not). The phases of the run are marked too, for
    benchmarks: ``{"phase": "begin"}`` when the executor starts (nbgrader is up),
    ``"kernel"`` once the kernel answers (``"adopted"``: a kernel started ahead), ``"agent"``
    once the grading agent is in it, ``"end"`` after the last cell, ``"shutdown"`` once the
    kernel is shut down; ``"begin"`` also says how many threads torch uses on the trusted side
    (``"threads"``). Every event carries ``"t"``, the wall-clock time it was written.

    No path (``GRADERS_PROGRESS`` unset), no file: plain ``nbgrader autograde`` needs none."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None

    def write(self, **event: object) -> None:
        if self.path is not None:
            event["t"] = round(time.time(), 3)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(event) + "\n")

    @staticmethod
    def read(path: Path) -> list[dict]:
        """The events of a progress file (none if there is no file); torn lines are skipped."""
        events = []
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    events.append(event)
        return events


LABEL_CHARS = 40  # of a cell's first line in a reason


def _label(cell: NotebookNode, index: int) -> str:
    """How reasons name a cell: its grade_id, else its position (counted from 1, as a reader
    of the notebook counts) and the start of its first line of code."""
    gid = _grade_id(cell)
    if gid:
        return gid
    source = cell.get("source", "")
    line = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    line = "".join(ch if ch.isprintable() else " " for ch in line)
    line = line if len(line) <= LABEL_CHARS else line[: LABEL_CHARS - 3].rstrip() + "..."
    return f"#{index + 1} ({line!r})" if line else f"#{index + 1}"


def _points(cell: NotebookNode) -> float:
    return float(cell.get("metadata", {}).get("nbgrader", {}).get("points", 0) or 0)


def _cut(client: NotebookClient, cell: NotebookNode, index: int) -> dict[str, Any]:
    report = getattr(client, "output_report", None)  # (BoundedOutputs)
    return report(cell, index) if report else {}


def _timed_out(cell: NotebookNode) -> bool:
    return any(o.get("output_type") == "error" and o.get("ename") == "CellTimeoutError"
               for o in cell.get("outputs", []))


def _responsive(client: NotebookClient, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the kernel answers a ``kernel_info`` request within ``timeout`` seconds (after a
    cell ran past its limit and was interrupted, a kernel that ignored the interrupt does not)."""

    async def probe() -> bool:
        msg_id = client.kc.kernel_info()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                msg = await client.kc.shell_channel.get_msg(timeout=0.5)
            except Exception:  # noqa: BLE001 (queue.Empty)
                continue
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return True
        return False

    try:
        return bool(run_sync(probe)())
    except Exception:  # noqa: BLE001
        return False


def _defined_names(source: str) -> set[str]:
    """Names a cell defines at its top level (assignments, ``def``, ``class``, imports)."""
    import ast

    try:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 (IPython missing, or a cell it cannot transform)
        pass
    try:
        tree = syntax.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _explainer(nb: NotebookNode, tests: Mapping[str, str]) -> Callable[[str], str]:
    """A function saying, for a name a test could not find, which cell defines it and how that
    cell ended (so the student knows which task to fix first)."""
    definers: dict[str, tuple[int, NotebookNode]] = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and _grade_id(cell) not in tests:
            for name in _defined_names(cell.source):
                definers.setdefault(name, (index, cell))

    def explain(name: str) -> str:
        if name not in definers:
            return "no cell of your notebook defines it"
        index, cell = definers[name]
        label = _label(cell, index)
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            return (f"it is defined by cell {label}, which failed with {errors[0].get('ename')}: "
                    "fix that first")
        if cell.get("execution_count") is None and not cell.get("outputs"):
            return f"it is defined by cell {label}, which did not run"
        return f"cell {label} should define it"

    return explain


def run_cells(
    client: NotebookClient,
    tests: Mapping[str, str],
    setup: Sequence[str] = (),
    delimiters: tuple[str, str] = (BEGIN_HIDDEN, END_HIDDEN),
    execute_cell: Any = None,
    progress: ProgressLog | None = None,
) -> dict[str, TestResult]:
    """Run ``client.nb`` in ``client``'s (started) kernel: test cells (``grade_id`` in ``tests``,
    with that code) on the trusted side, every other cell in the kernel. Returns the test
    results by grade_id; the cells' outputs are filled in as nbclient would.

    A kernel that dies, or does not answer after a cell ran past its limit, ends the run here:
    the test cells after that point fail with the reason, the ones before keep their results
    (nbgrader then saves what was earned), and ``progress`` says where it stopped."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from nbformat.v4 import new_output

    execute_cell = execute_cell or (lambda cell, index: client.execute_cell(cell, index))
    progress = progress or ProgressLog(None)
    timeout = client.timeout if client.timeout and client.timeout > 0 else None
    session = GradingSession(client, setup, delimiters, timeout)
    progress.write(phase="agent")
    session.explain_missing = _explainer(client.nb, tests)
    results: dict[str, TestResult] = {}
    stopped, kind = "", ""  # why the kernel is given up, and whether a time limit did it
    try:
        for index, cell in enumerate(client.nb.cells):
            gid, label = _grade_id(cell), _label(cell, index)
            is_test = cell.cell_type == "code" and gid in tests
            if stopped:
                if is_test:
                    result = session.runner.failed_result(gid, "KernelUnavailable", stopped)
                    cell.outputs, cell.execution_count, results[gid] = result.outputs, None, result
                continue
            if cell.cell_type == "code":
                progress.write(running=label)
            start = time.monotonic()
            if is_test:
                result = session.run_test(gid, tests[gid])
                cell.outputs = result.outputs
                cell.execution_count = None
                results[gid] = result
                most = _points(cell)
                earned = 0.0 if not result.passed else (
                    most if result.points is None else min(most, max(0.0, result.points)))
                progress.write(test=gid, points=earned, max=most, error=result.error[:300],
                               seconds=round(result.seconds, 3))
                if session.bridge.dead:
                    stopped = f"{session.bridge.dead} (at {label})"
                    kind = "timeout" if session.bridge.timed_out else "crash"
            else:
                try:
                    execute_cell(cell, index)
                except DeadKernelError:
                    stopped, kind = f"the kernel died while running cell {label}", "crash"
                except CellTimeoutError:  # no answer after the interrupt (nbclient gives up)
                    cell.setdefault("outputs", []).append(new_output(
                        "error", ename="CellTimeoutError", evalue=f"ran past {timeout:g} s",
                        traceback=[f"CellTimeoutError: the cell ran past {timeout:g} s"]))
                if cell.cell_type == "code":
                    progress.write(done=label, seconds=round(time.monotonic() - start, 3),
                                   **_cut(client, cell, index))
                if not stopped and _timed_out(cell):
                    progress.write(timeout=label, seconds=round(time.monotonic() - start, 1))
                    if not _responsive(client):
                        kind = "timeout"
                        stopped = (f"cell {label} ran past the {timeout:g} s per-cell limit and "
                                   "the kernel did not stop when interrupted")
            if stopped:
                session.bridge.dead = session.bridge.dead or stopped
                progress.write(stopped=stopped, at=label, kind=kind)
                client.shutdown_kernel = IMMEDIATE  # no graceful goodbye from a stuck kernel
    finally:
        session.close()
        progress.write(phase="end")
    return results


# ---------------------------------------------------------------------------------- nbgrader
def _forget_kept_status(resources: Any) -> None:
    """A status the tool kept for this submission (timed out, crashed, ...) is stale once plain
    ``nbgrader autograde`` grades it again; never let that stop the grading."""
    from graders import kept_status
    from graders.status import GRADED

    info = (resources or {}).get("nbgrader", {})
    if {"db_url", "assignment", "student"} <= info.keys():
        with contextlib.suppress(Exception):  # graded: nothing kept, what was kept goes
            kept_status.set_status(info["db_url"], info["assignment"], info["student"], GRADED)


class VerdictExecute(BoundedOutputs, Execute):
    """nbgrader's ``Execute`` with test cells run on the trusted side (see the module
    docstring). Test code and setup cells come from the gradebook."""

    sandbox = Enum(
        ["auto", "on", "off"],
        default_value="auto",
        help="run student kernels in the bubblewrap sandbox (graders.sandbox): 'on' requires it, "
        "'auto' uses it when it works here (and logs a warning when it does not), 'off' never",
    ).tag(config=True)

    setup_cells = List(
        Unicode(),
        default_value=["setup"],
        help="grade_ids of read-only cells replayed on the trusted side before the tests "
        "(imports, seeds, DEVICE), so that test code uses the grader's own modules",
    ).tag(config=True)

    @default("shutdown_kernel")
    def _immediate(self) -> str:
        return IMMEDIATE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "kernel_manager_class" not in kwargs:
            self.kernel_manager_class = self._manager_class()

    def _manager_class(self) -> type:
        from graders import sandbox

        if self.sandbox == "off":
            return AsyncKernelManager
        status = sandbox.sandbox_status()
        if status.available:
            return sandbox.SandboxKernelManager
        if self.sandbox == "on":
            raise sandbox.SandboxUnavailable(f"cannot sandbox the kernels: {status.reason}")
        self.log.warning("UNSANDBOXED: student code runs with your rights (%s)", status.reason)
        return AsyncKernelManager

    def preprocess(self, nb: NotebookNode, resources: Any = None, km: Any = None):
        if not os.environ.get(ENV_PROGRESS):  # plain nbgrader: `graders` records its own
            _forget_kept_status(resources)
        progress = ProgressLog(os.environ.get(ENV_PROGRESS))
        progress.write(phase="begin", threads=_torch_threads())
        from graders import submitted  # plain nbgrader copied a submission's links: undo that

        submitted.leave_out_of_kernel_folder(self.config, resources, self.log)
        tests, setup = self._definitions(resources)
        adopted = km is None and self._adopt(nb, resources)
        NotebookClient.__init__(self, nb, adopted or km)
        if adopted:  # ours to shut down, as a kernel nbclient started
            self.owns_km = True
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        with self.setup_kernel():
            assert self.kc
            info_msg = self.wait_for_reply(self.kc.kernel_info())
            assert info_msg
            self.nb.metadata["language_info"] = info_msg["content"]["language_info"]
            progress.write(phase="kernel", adopted=bool(adopted))
            run_cells(self, tests, setup, self._delimiters(),
                      execute_cell=lambda cell, index: self.preprocess_cell(cell, resources, index),
                      progress=progress)
        progress.write(phase="shutdown")
        self.set_widgets_metadata()
        return self.nb, self.resources

    def _adopt(self, nb: NotebookNode, resources: Any) -> Any | None:
        """The sandboxed kernel started ahead for this notebook (:mod:`graders.prestart`), when
        the grading parent offers one that fits; None starts a kernel as usual."""
        from graders import prestart, sandbox

        if self.kernel_manager_class is not sandbox.SandboxKernelManager:
            return None
        prestart.note_environment(os.environ)
        record = os.environ.get(prestart.ENV_PRESTARTED)
        if not record:
            return None
        kernel_name = self.kernel_name or nb.metadata.get("kernelspec", {}).get("name", "python")
        cwd = ((resources or {}).get("metadata", {}).get("path")) or os.getcwd()
        return prestart.adopt(record, cwd, kernel_name, log=self.log.warning)

    def _delimiters(self) -> tuple[str, str]:
        config = self.config.get("ClearHiddenTests", {})
        return (config.get("begin_test_delimeter", BEGIN_HIDDEN),
                config.get("end_test_delimeter", END_HIDDEN))

    def _definitions(self, resources: Any) -> tuple[dict[str, str], list[str]]:
        """The test cells' code and the setup cells' code, from the gradebook."""
        from nbgrader.api import Gradebook

        info = (resources or {}).get("nbgrader", {})
        with Gradebook(info["db_url"]) as gb:
            notebook = gb.find_notebook(info["notebook"], info["assignment"])
            code_tests = {c.name for c in notebook.grade_cells if c.cell_type == "code"}
            sources = {c.name: c.source for c in notebook.source_cells}
        tests = {name: sources[name] for name in code_tests if name in sources}
        setup = [sources[name] for name in self.setup_cells if name in sources]
        return tests, setup


# ---------------------------------------------------------------------------------- direct
def execute(
    nb: NotebookNode,
    cwd: str | Path = ".",
    timeout: int = 300,
    env: Mapping[str, str] | None = None,
    setup_cells: Sequence[str] = ("setup",),
    kernel_manager_class: type = AsyncKernelManager,
) -> tuple[NotebookNode, dict[str, TestResult]]:
    """Run ``nb`` (test cells carrying their full code, e.g. a source notebook) with the test
    cells on the trusted side, in a fresh kernel; errors allowed. Returns the executed notebook
    and the test results."""
    tests = {
        _grade_id(c): c.source
        for c in nb.cells
        if c.cell_type == "code" and c.get("metadata", {}).get("nbgrader", {}).get("grade")
    }
    setup = [c.source for c in nb.cells if _grade_id(c) in setup_cells]
    client = BoundedOutputs(
        nb,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(cwd)}},
        kernel_manager_class=kernel_manager_class,
        shutdown_kernel=IMMEDIATE,
    )
    results: dict[str, TestResult] = {}
    with client.setup_kernel(env={**os.environ, **(env or {})}):
        results = run_cells(client, tests, setup)
    return client.nb, results

