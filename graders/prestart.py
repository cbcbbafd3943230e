"""Kernels started ahead: the next submission's sandboxed kernel starts (and imports what the
assignment's setup cell imports) while the current submission is graded.

Per notebook, a kernel start and ``import torch``, numpy, matplotlib and the course package cost
about 3.5 s (2 cores), before any of the student's code runs. :class:`Ahead` takes that off each
notebook's path: when a worker begins a submission, the batch's launcher thread launches the
kernel of the first submission in the queue that has none yet (:meth:`Ahead.start_next_soon`:
the launch is off that notebook's path too, once its run is past its own start), in the
sandbox exactly as nbgrader's
executor would (:func:`graders.sandbox.sandboxed_kernel_command`, the same environment and
limits), with the setup cell's modules imported by ``importlib`` in a namespace of their own
(no name appears in the student's namespace; ``import torch`` in the setup cell then finds the
module loaded).

Isolation is unchanged, by construction:

* a kernel is made for **one** submission: its ``/tmp/work`` holds that submission's files
  (and the assignment's), it runs no student code before that submission's grading process
  adopts it, and it is killed when that grading ends (adopted or not);
* the grading process (:class:`graders.verdict.execute.VerdictExecute`) adopts it only when the
  folder nbgrader made for the notebook has exactly the files the kernel was given (same names,
  kinds and SHA-256 of every file: :func:`fingerprint`), the kernel name matches and the
  kernel's environment is the one the grading process would give it (nbgrader and the course
  configuration add variables: :meth:`Ahead.learn` takes them from the batch's first finished
  run, and no kernel starts ahead before); otherwise it stops that kernel, says why in its log
  and starts a fresh one as before;
* while it grades, the kernel's processes count against that submission's limits (memory,
  processes, disk, wall clock: :func:`graders.runner.run_limited` watches them), and any of
  them left afterwards is killed.

Memory: each waiting kernel holds its imports (about 0.4 GiB with torch), one per worker at most.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from graders import submitted, syntax
from graders.verdict.execute import ENV_PROGRESS

#: Environment variable naming the record of the kernel started for the grading process.
ENV_PRESTARTED = "GRADERS_PRESTARTED"
RECORD = "prestarted.json"
#: Submissions bigger than this are not given a kernel ahead (their files would be hashed).
MAX_WORK_BYTES = 64 * 2**20
HISTORY = "--HistoryManager.hist_file=:memory:"  # what nbclient gives an IPython kernel
#: How long a launch waits for the run that asked for it to be past its start, and how often
#: it looks (:meth:`Ahead.start_next_soon`).
LAUNCH_WAIT_S = 5.0
LAUNCH_POLL_S = 0.02


# ------------------------------------------------------------------------ what goes in ahead
def setup_modules(sources: Iterable[str]) -> list[str]:
    """The modules the setup cells import, in order: ``import a.b`` gives ``a.b``;
    ``from a import b`` gives ``a`` and ``a.b`` (which may not be a module: importing it is
    then skipped in the kernel). IPython magics and shell lines are ignored."""
    found: list[str] = []
    for source in sources:
        code = "\n".join(line for line in source.splitlines()
                         if not line.lstrip().startswith(("%", "!")))
        try:
            tree = syntax.parse(code)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                found += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append(node.module)
                found += [f"{node.module}.{alias.name}" for alias in node.names
                          if alias.name != "*"]
    return list(dict.fromkeys(found))


def preload_argument(modules: Sequence[str]) -> str:
    """The kernel option that imports ``modules`` at start, in a throw-away namespace."""
    code = ("import importlib\n"
            f"for name in {tuple(modules)!r}:\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except Exception:\n"
            "        pass\n")
    return f"--IPKernelApp.exec_lines=exec({code!r}, {{}})"


def fingerprint(folder: Path) -> list[list[Any]]:
    """What a sandboxed kernel in ``folder`` is shown (:func:`graders.sandbox.work_files`):
    every file and folder below those entries, as [relative path, kind, SHA-256 or link
    target]."""
    from graders.sandbox import work_files

    folder = Path(folder)
    rows: list[list[Any]] = []

    def add(path: Path) -> None:
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            rows.append([rel, "link", os.readlink(path)])
        elif path.is_dir():
            rows.append([rel, "dir", ""])
            for child in sorted(path.iterdir()):
                add(child)
        elif path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            rows.append([rel, "file", digest.hexdigest()])
        else:
            rows.append([rel, "other", ""])

    for entry in work_files(folder):
        add(entry)
    return rows


def environment_digest(env: Mapping[str, str]) -> dict[str, str]:
    """A kernel's environment, each value as a digest (the record names what differs without
    holding the grader's values): the variables a grading run passes to its kernel, but for
    the two that name this run's own files."""
    return {k: hashlib.sha256(v.encode()).hexdigest()[:16] for k, v in sorted(env.items())
            if k not in (ENV_PRESTARTED, ENV_PROGRESS)}


def differences(record: Mapping[str, Any], kernel_name: str, env: Mapping[str, str],
                cwd: Path) -> list[str]:
    """Why a kernel started with ``record`` does not fit a notebook run in ``cwd`` with this
    kernel name and environment (nothing: it fits)."""
    why = []
    if record["kernel_name"] != kernel_name:
        why.append(f"kernel {record['kernel_name']} is not {kernel_name}")
    want, have = environment_digest(env), record["environment"]
    names = sorted(k for k in {*want, *have} if want.get(k) != have.get(k))
    if names:
        why.append("environment differs in " + ", ".join(names[:8]))
    if record["fingerprint"] != fingerprint(cwd):
        why.append("the notebook's folder holds other files")
    return why


# ------------------------------------------------------------------------- the parent's side
@dataclass
class Prestarted:
    """A kernel started for one submission (the grading parent holds it)."""

    km: Any  # graders.sandbox.SandboxKernelManager
    folder: Path  # its work folder and record
    env: dict[str, str]  # the environment its worker grades with (see Ahead.take)

    @property
    def record(self) -> Path:
        return self.folder / RECORD

    @property
    def pid(self) -> int:
        return int(self.km.provisioner.pid)

    def discard(self) -> None:
        """Kill the kernel (whether or not it was adopted), reap it, remove its files."""
        from jupyter_core.utils import run_sync

        from graders.sandbox_watch import kill_sandbox

        process = getattr(self.km.provisioner, "process", None)
        if process is not None and process.poll() is None:  # never a pid reaped already
            kill_sandbox(process.pid)
            with contextlib.suppress(Exception):
                process.wait(timeout=10)
        with contextlib.suppress(Exception):  # not km.cleanup_resources: jupyter_client binds
            run_sync(self.km._async_cleanup_resources)()  # it to its own, not the sandbox's
        shutil.rmtree(self.folder, ignore_errors=True)


def start(
    folder: Path, files: Sequence[Path], kernel_name: str, env: dict[str, str],
    modules: Sequence[str],
) -> Prestarted:
    """Start a sandboxed kernel whose ``/tmp/work`` shows copies of ``files`` (later ones win
    over earlier ones of the same name), with ``modules`` imported; its record goes in
    ``folder``."""
    from jupyter_core.utils import run_sync

    from graders.sandbox import SandboxKernelManager

    work = folder / "work"
    work.mkdir(parents=True)
    for path in files:
        target = work / path.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        if path.is_dir():  # as the grading's own copy: without links and special files
            submitted.copy_folder(path, target)
        else:
            shutil.copy2(path, target, follow_symlinks=False)
    km = SandboxKernelManager(kernel_name=kernel_name)
    with (folder / "kernel.log").open("wb") as log:
        run_sync(km.start_kernel)(cwd=str(work), env=env, stdout=log, stderr=subprocess.STDOUT,
                                  extra_arguments=[HISTORY, preload_argument(modules)])
    kernel = Prestarted(km, folder, dict(env))
    info = km.get_connection_info()
    info["key"] = info["key"].decode() if isinstance(info["key"], bytes) else info["key"]
    kernel.record.write_text(json.dumps({
        "pid": kernel.pid, "connection_file": km.connection_file, "connection": info,
        "run_dir": str(km.agent_folder), "kernel_name": kernel_name,
        "fingerprint": fingerprint(work), "environment": environment_digest(env),
    }))
    return kernel


class Ahead:
    """Kernels started ahead for the next submissions of a batch, at most ``most`` waiting.

    ``plan(job)`` says what a job's kernel needs (folder for its record, its files, kernel name,
    modules) or None when it gets none; ``env`` is the worker's kernel environment. Thread-safe:
    the batch's workers call it."""

    def __init__(self, plan: Callable[[object], tuple | None], most: int,
                 jobs: Sequence[object] = ()) -> None:
        self._upcoming = list(jobs)
        self._plan = plan
        self._most = most
        self._ready: dict[object, Prestarted] = {}
        self._starting: dict[object, dict[str, str]] = {}  # job -> the worker's environment
        self._learned: tuple[dict[str, str], set[str]] | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._launches: queue.SimpleQueue[
            tuple[dict[str, str], Callable[[], bool] | None] | None] = queue.SimpleQueue()
        self._launcher: threading.Thread | None = None

    def expect(self, job: object) -> None:
        """``job`` is queued (after the ones expected before it)."""
        with self._cond:
            self._upcoming.append(job)

    def learn(self, env: dict[str, str], seen: Path) -> None:
        """What a grading process run with ``env`` gave its kernel (``seen``, written by
        :func:`note_environment`; nbgrader and the course's configuration add variables):
        kernels started from now on get the same. Until a run has said, none is started."""
        with self._cond:
            if self._learned is not None:
                return
            try:
                kernel_env = json.loads(seen.read_text())
            except (OSError, ValueError):
                return
            if isinstance(kernel_env, dict):
                added = {k: v for k, v in kernel_env.items() if env.get(k) != v}
                gone = {k for k in env if k not in kernel_env} - {ENV_PRESTARTED, ENV_PROGRESS}
                self._learned = added, gone

    def kernel_env(self, env: dict[str, str]) -> dict[str, str] | None:
        """The environment a grading process run with ``env`` gives its kernel (None: not known
        yet)."""
        with self._cond:
            if self._learned is None:
                return None
            added, gone = self._learned
        return {**{k: v for k, v in env.items() if k not in gone}, **added}

    def pick(self, jobs: Sequence[object], env: dict[str, str]) -> int:
        """Which of the queued ``jobs`` (in order) a worker with ``env`` grades next: the first
        whose kernel was started (or is starting) with ``env``, else the first with no kernel
        ahead, else the first. With workers of several kinds (GPU and CPU slots, several GPUs)
        a kernel is adopted by a worker of its own kind instead of discarded."""
        with self._cond:
            for i, job in enumerate(jobs):
                kernel = self._ready.get(job)
                if (kernel.env if kernel is not None else self._starting.get(job)) == env:
                    return i
            for i, job in enumerate(jobs):
                if job not in self._ready and job not in self._starting:
                    return i
        return 0

    def take(self, job: object, env: dict[str, str]) -> Prestarted | None:
        """The kernel started for ``job`` (None if there is none, or it was started with
        another environment, e.g. another GPU: then it is discarded)."""
        with self._cond:
            if job in self._upcoming:
                self._upcoming.remove(job)
            while job in self._starting:  # being launched right now: a fraction of a second
                self._cond.wait()
            kernel = self._ready.pop(job, None)
        if kernel is not None and kernel.env != env:
            kernel.discard()
            return None
        return kernel

    def start_next(self, env: dict[str, str]) -> None:
        """Start the kernel of the first upcoming job (if fewer than ``most`` wait). Never
        raises: a kernel that cannot start ahead starts in its own grading, as without this."""
        kernel_env = self.kernel_env(env)
        if kernel_env is None:
            return
        with self._cond:
            if self._closed or len(self._ready) + len(self._starting) >= self._most \
                    or not self._upcoming:
                return
            job = self._upcoming.pop(0)
            self._starting[job] = dict(env)
        kernel = None
        try:
            plan = self._plan(job)
            if plan is not None:
                folder, files, kernel_name, modules = plan
                from graders.sandbox_watch import folder_usage

                size = sum(folder_usage(p, max_entries=2**62)[0] if p.is_dir()
                           else p.stat().st_size for p in files)
                if size <= MAX_WORK_BYTES:
                    kernel = start(folder, files, kernel_name, kernel_env, modules)
                    kernel.env = dict(env)
        except Exception:  # noqa: BLE001 (the job's grading starts its own kernel)
            kernel = None
        with self._cond:
            self._starting.pop(job, None)
            if kernel is not None and not self._closed:
                self._ready[job], kernel = kernel, None
            self._cond.notify_all()
        if kernel is not None:  # closed meanwhile
            kernel.discard()

    def start_next_soon(self, env: dict[str, str],
                        after: Callable[[], bool] | None = None) -> None:
        """:meth:`start_next` in the background: copying the next submission's files and
        launching its kernel (0.05 to 0.35 s measured on 2 cores) are then not on the path of
        the notebook that asked. With ``after``, the launch waits until ``after()`` is true (at
        most :data:`LAUNCH_WAIT_S` once the kernels' environment is learnt, see :meth:`learn`):
        the grading run that asked is past its own start, so that the new kernel's imports
        (seconds of CPU) do not compete with it.

        One launcher thread does every launch, and lives until :meth:`close`: a sandboxed
        kernel dies with the *thread* that launched it (bubblewrap's ``--die-with-parent`` is
        the thread's parent-death signal), so a thread per launch would take its kernel with
        it."""
        with self._cond:
            if self._closed:
                return
            if self._launcher is None:
                self._launcher = threading.Thread(target=self._launch_loop, name="kernel-ahead",
                                                  daemon=True)
                self._launcher.start()
        self._launches.put((dict(env), after))

    def _launch_loop(self) -> None:
        while (request := self._launches.get()) is not None:
            env, after = request
            end = time.monotonic() + LAUNCH_WAIT_S
            # until a run has said what its kernel's environment is, no kernel can start ahead:
            # the batch's first run is waited for however long its start takes (the forkserver
            # warms up then)
            while after is not None and not self._closed and (
                    time.monotonic() < end or self._learned is None):
                try:
                    if after():
                        break
                except Exception:  # noqa: BLE001 (a condition that fails waits no more)
                    break
                time.sleep(LAUNCH_POLL_S)
            with contextlib.suppress(Exception):  # never the launcher's end: later launches
                self.start_next(env)

    def close(self) -> None:
        """Discard every kernel still waiting (after the launch under way)."""
        with self._cond:
            self._closed = True
            launcher = self._launcher
        if launcher is not None:
            self._launches.put(None)
            launcher.join()
        with self._cond:
            waiting, self._ready = list(self._ready.values()), {}
        for kernel in waiting:
            kernel.discard()


# ------------------------------------------------------------------ the grading process's side
ENVIRONMENT = "kernel-environment.json"


def note_environment(env: Mapping[str, str]) -> None:
    """Write the environment this grading process gives its kernel next to its progress file
    (the batch's scratch course, which no kernel sees), for :meth:`Ahead.learn`."""
    progress = env.get(ENV_PROGRESS)
    if progress:
        kept = {k: v for k, v in env.items() if k not in (ENV_PRESTARTED, ENV_PROGRESS)}
        target = Path(progress).with_name(ENVIRONMENT)
        partial_file = target.with_name(f".{ENVIRONMENT}.part")
        with contextlib.suppress(OSError):  # whole or not at all: the parent may read it now
            partial_file.write_text(json.dumps(kept))
            os.replace(partial_file, target)


class _Process:
    """The started kernel's process, as a :class:`subprocess.Popen` for jupyter_client's
    provisioner (the grading parent started it and reaps it)."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._proc = psutil.Process(pid)

    def poll(self) -> int | None:
        try:
            running = self._proc.is_running() and self._proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            running = False
        return None if running else -signal.SIGKILL

    def wait(self, timeout: float | None = None) -> int | None:
        # polled: the process is not our child (a zombie until its parent reaps it)
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None and (end is None or time.monotonic() < end):
            time.sleep(0.05)
        return self.poll()

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def kill(self) -> None:
        from graders.sandbox_watch import kill_sandbox

        if self.poll() is None:  # still this kernel (psutil checks the start time)
            kill_sandbox(self.pid)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def adopt(
    record: str | Path | None, cwd: str | Path, kernel_name: str,
    env: Mapping[str, str] | None = None, log: Callable[..., None] = lambda *args: None,
) -> Any | None:
    """A kernel manager for the kernel started ahead for this notebook, or None (no record, a
    kernel gone, another kernel name, files in ``cwd`` that differ from the kernel's, or an
    environment ``env``, default this process's, other than the one it was started with). A
    kernel that does not fit is stopped here (it would only hold memory the run is charged for)
    and ``log`` says why."""
    if not record:
        return None
    try:
        facts = json.loads(Path(record).read_text())
        process = _Process(int(facts["pid"]))
        why = differences(facts, kernel_name, os.environ if env is None else env, Path(cwd))
        if why:
            log("the kernel started ahead does not fit this notebook (%s): starting one",
                "; ".join(why))
            with contextlib.suppress(OSError):
                process.kill()
            return None
        if process.poll() is not None:
            return None
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return None
    from jupyter_client.provisioning import LocalProvisioner

    from graders.sandbox import SandboxKernelManager

    # the connection from the record, never from the kernel's folder: the kernel may rewrite
    # its own file there (its folder is writable for its sockets)
    km = SandboxKernelManager(kernel_name=kernel_name)
    km.load_connection_info(facts["connection"])
    km._run_dir = Path(facts["run_dir"])
    provisioner = LocalProvisioner(kernel_id=km.kernel_id or "prestarted",
                                   kernel_spec=km.kernel_spec, parent=km)
    provisioner.process, provisioner.pid = process, process.pid
    provisioner.connection_info = km.get_connection_info()
    km.provisioner = provisioner
    return km


# ------------------------------------------------------------------------------- a course's
def course_plan(
    course: Any, scratch_root: Path, setup_cells: Sequence[str] = ("setup",)
) -> Callable[[Any], tuple | None]:
    """``plan`` for :class:`Ahead` over a course's jobs (:class:`graders.parallel.Job`): the
    kernel's files are the submission's and then the assignment's source files (as nbgrader
    overwrites them), its kernel name and modules those of the source notebook."""
    import fnmatch

    from graders import notebooks
    from graders.course import GRADING_FOLDER
    from graders.sandbox import work_files

    per_assignment: dict[str, tuple[str, list[str]]] = {}

    def plan(job: Any) -> tuple | None:
        a = job.assignment
        if a not in per_assignment:
            nb = notebooks.read(course.source_path(a))
            sources = [c.source for c in nb.cells
                       if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") in setup_cells]
            name = nb.metadata.get("kernelspec", {}).get("name", "python3")
            per_assignment[a] = (name, setup_modules(sources))
        kernel_name, modules = per_assignment[a]
        source = [p for p in work_files(course.folder("source", ".", a))
                  if p.name != GRADING_FOLDER
                  and not any(fnmatch.fnmatch(p.name, pat) for pat in course.settings.ignore)]
        files = [*work_files(course.submission_path(job.student, a).parent), *source]
        return scratch_root / "ahead" / f"{a}--{job.student}", files, kernel_name, modules

    return plan
