"""Run one ``nbgrader`` process under limits, and say how it ended.

:func:`run_limited` starts the command (``nbgrader`` itself is forked from a forkserver that
imported it once, see :class:`ForkedNbgrader`) and watches its whole process tree, the
grading process included, every :data:`POLL_S` seconds. It kills the tree (every process and
its process group: Jupyter starts each kernel in a session of its own) when the limits below are
broken: at once for the wall clock and an interrupted batch; for memory, processes and disk it
kills the kernel first and gives nbgrader :data:`KERNEL_KILL_GRACE_S` to save the points earned
so far (the course's executor fails the remaining tests; see :mod:`graders.partial`):

- the wall clock passes ``wall_s``: ``timed out``;
- the tree's memory passes ``memory_mb``: ``crashed``. Memory is the *proportional set size*
  (PSS; resident size where PSS cannot be read): a page that ``n`` processes share counts
  ``1/n`` in each, so forked workers that share their parent's pages are not counted ``n``
  times (summed resident sizes made 300 idle forks read as 3177 MiB). The kernel computes PSS
  by walking page tables (about 10 ms for a 500 MiB process), so :class:`MemoryWatch` reads
  the cheap resident sizes on every poll and PSS only when they pass the limit;
- the tree holds more than ``max_processes`` processes: ``crashed``;
- the sandbox's disk is full (``disk_mb`` set): a sandboxed kernel's ``/tmp`` is a tmpfs of
  that size, and the watchdog looks at it from outside (:func:`full_sandbox_disk`): ``crashed``;
- ``stop()`` turns true (the batch was interrupted): ``crashed``.

:func:`classify` turns the facts of a finished run into a status and a one-line reason: the
kill above, nbgrader's exit code, whether the autograded notebook was written, and the first
exception nbgrader met while converting, which the forked nbgrader records in a marker file
(:data:`MARKER`). Only a run without that marker (a command that is not a forked nbgrader) is
classified from its log text.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import psutil

from graders.status import CRASHED, GRADED, REFUSED, TIMED_OUT

POLL_S = 0.1
#: After a memory, process or disk limit killed the kernel, how long nbgrader may take to save
#: what was earned before it is killed too.
KERNEL_KILL_GRACE_S = 30.0
INTERRUPTED = "grading was interrupted"
#: What the forkserver imports once, so that no forked nbgrader pays for it: nbgrader, and what
#: the trusted side of the course's test cells imports (their setup cells and checks). A module
#: that is not installed is skipped. ``graders.forkwarm`` comes last: it finds the thread pools
#: of the libraries loaded before it.
FORKSERVER_PRELOAD = [
    "nbgrader.apps.nbgraderapp", "graders.runner", "graders.verdict.execute", "graders.restore",
    "numpy", "torch", "torchvision.models", "matplotlib.pyplot", "sklearn.linear_model",
    "sklearn.neural_network", "dlworkshop.checks", "dlworkshop.data", "dlworkshop.train",
    "dlworkshop.plot", "dlworkshop.introspect", "dlworkshop.transfer", "dlworkshop.testing",
    "dlworkshop.instruments", "dlworkshop.recorders", "dlworkshop.gradcheck",
    "dlworkshop.grading", "dlworkshop.device",
    # what each forked nbgrader still imported (measured: 79 modules, 30 ms): jupyter_client's
    # kernel spec lookup (IPython, ipykernel), the gradebook's SQLite driver, the executor's
    # kernel client and the trusted side's helpers
    "IPython", "ipykernel.kernelspec", "ipykernel.connect", "sqlite3", "codeop", "graders.ready",
    "zmq.utils.garbage", "torch.utils.serialization", "graders.forkwarm",
]
#: Free space under which a sandbox's tmpfs counts as full.
DISK_FULL_BYTES = 1 << 20
#: The file (in the run's folder) where the forked nbgrader records the exception it met.
MARKER = "runner.json"
#: Fork ``nbgrader`` from a process that imported it once (Linux) instead of starting Python.
FORK_NBGRADER = sys.platform == "linux"
NBGRADER = [sys.executable, "-m", "nbgrader"]

#: exception class names (anywhere in the exception's MRO) -> (status, reason)
EXCEPTIONS: dict[str, tuple[str, str]] = {
    "CellTimeoutError": (TIMED_OUT, "a cell ran past the per-cell limit and ignored the interrupt"),
    "UnresponsiveKernelError": (TIMED_OUT, "the kernel stopped answering (an endless cell?)"),
    "DeadKernelError": (CRASHED, "the kernel died (killed, e.g. out of memory, or it exited)"),
}


@dataclass(frozen=True)
class Limits:
    """What one grading run may use (see the module docstring); ``disk_mb`` None: unwatched."""

    wall_s: float
    memory_mb: float
    max_processes: int = 256
    disk_mb: int | None = None


@dataclass
class Run:
    """How one process ended: exit code, its output, the limit that killed it (status,
    reason), seconds, and the exception a forked nbgrader recorded (MRO names, message)."""

    returncode: int | None
    log: str
    killed: tuple[str, str] | None = None
    seconds: float = 0.0
    error: tuple[list[str], str] | None = None


# ----------------------------------------------------------------------- the forked nbgrader
class ForkedNbgrader:
    """``python -m nbgrader ARGV`` without paying nbgrader's start-up (about 3 s of CPU, mostly
    imports) per notebook: forked from a forkserver that has imported nbgrader once. The child
    runs nbgrader's own command-line app, in its own session, cwd and environment, with its
    output in ``log`` and the first exception of a conversion in ``marker``. Same interface as
    :class:`subprocess.Popen` for :func:`run_limited`.

    As with any multiprocessing forkserver, a *script* that grades needs the
    ``if __name__ == "__main__":`` guard (``python -m graders`` and pytest need nothing)."""

    _context = None

    def __init__(
        self, argv: list[str], cwd: Path, env: dict[str, str], log: Path, marker: Path
    ) -> None:
        context = self.context()
        alive, self._alive = context.Pipe(duplex=False)  # the child reads, this end stays open
        self._proc = context.Process(
            target=nbgrader_main, args=(argv, str(cwd), env, str(log), str(marker), alive),
            daemon=False,
        )
        self._proc.start()
        alive.close()
        self.pid = self._proc.pid

    @classmethod
    def context(cls):  # noqa: ANN206 (a multiprocessing context)
        """The forkserver context (started on first use, once per process)."""
        if cls._context is None:
            import multiprocessing

            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(FORKSERVER_PRELOAD)
            cls._context = context
        return cls._context

    @classmethod
    def warm_up(cls) -> float:
        """Start the forkserver now and wait until it has imported its modules (benchmarks
        time this once-per-process cost apart from the notebooks'); its seconds."""
        start = time.monotonic()
        proc = cls.context().Process(target=int)
        proc.start()
        proc.join()
        return time.monotonic() - start

    def poll(self) -> int | None:
        return None if self._proc.is_alive() else self._ended()

    def wait(self, timeout: float | None = None) -> int | None:
        self._proc.join(timeout)
        return self._ended()

    def _ended(self) -> int | None:
        code = self._proc.exitcode
        if code is not None:
            self._alive.close()
        return code

    @property
    def returncode(self) -> int | None:
        return self._proc.exitcode


def _record_first_error(marker: str) -> None:
    """Make nbgrader's converters write the first exception they raise to ``marker`` (nbgrader
    catches it, logs it and exits 1; the marker keeps its type for :func:`classify`)."""
    from nbgrader.converters.autograde import Autograde
    from nbgrader.converters.base import BaseConverter

    def recorded(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: object, **kwargs: object) -> object:
            try:
                return func(*args, **kwargs)
            except BaseException as err:
                if not os.path.exists(marker):
                    names = [cls.__name__ for cls in type(err).__mro__]
                    with open(marker, "w") as fh:
                        json.dump({"exception": names, "message": str(err)[:2000]}, fh)
                raise

        return wrapper

    for cls in (BaseConverter, Autograde):
        for name in ("init_assignment", "convert_single_notebook"):
            if name in vars(cls):
                setattr(cls, name, recorded(vars(cls)[name]))


def exit_with(alive: Connection) -> None:
    """Kill this process (SIGKILL) once ``alive`` (the read end of a pipe whose only write end
    the grading parent holds, and never writes to) reads end of file: when the parent exits.

    A forked nbgrader runs in a session of its own (so that a limit kills its whole tree) and
    is the child of the forkserver, which lives as long as any of its children does: when the
    grading parent was killed (SIGKILL, a job engine's time limit), nothing ended it, and it
    and its kernel ran on to the end of the notebook with no watchdog (seen on a GPU machine,
    where a killed benchmark's notebooks loaded the next run for minutes). Its kernel's
    ``bwrap`` dies with it (``--die-with-parent``)."""

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            alive.recv_bytes()
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def limit_threads(env: dict[str, str]) -> None:
    """Give the libraries the forkserver loaded (torch, NumPy's BLAS) the thread count of this
    run (``OMP_NUM_THREADS`` in ``env``), in the calling thread, the forked nbgrader's main
    thread, where the test cells run on the trusted side. They read their count when loaded,
    in the forkserver, from its environment: every core. And the setup cell's
    ``dlworkshop.set_num_threads()``, replayed on the trusted side in a thread of its own, does
    not reach the main thread (OpenMP's count is per thread). Measured on 16 cores with 16
    workers: 16 processes x 16 threads made the test cells 4.7 times slower than on 2 cores."""
    raw = env.get("OMP_NUM_THREADS", "").strip()
    if not raw.isdigit() or int(raw) < 1:
        return
    threads = int(raw)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    # Every thread pool, OpenMP ones included (scikit-learn's): what OMP_NUM_THREADS does for a
    # process that reads it at start, as the kernel does. (dlworkshop.set_num_threads caps BLAS
    # only, since in the kernel the variable has done the rest.)
    if "numpy" in sys.modules:
        with contextlib.suppress(Exception), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. two OpenMP runtimes: not the grading log's
            thread_pools().limit(limits=threads)


@functools.cache
def thread_pools():  # noqa: ANN201 (a threadpoolctl.ThreadpoolController)
    """threadpoolctl's view of the thread pools loaded in this process, made once: finding them
    walks every loaded library (about 20 ms). The forkserver makes it (:mod:`graders.forkwarm`)
    and its forks inherit it, with the same libraries at the same addresses."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. two OpenMP runtimes: not the grading log's
        from threadpoolctl import ThreadpoolController

        return ThreadpoolController()


def nbgrader_main(argv: list[str], cwd: str, env: dict[str, str], log: str, marker: str,
                  alive: Connection | None = None) -> None:
    """The forked child: become ``nbgrader ARGV`` run in ``cwd`` with ``env``; with ``alive``,
    die with the grading parent (:func:`exit_with`)."""
    os.setsid()
    if alive is not None:
        exit_with(alive)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    limit_threads(env)
    forkwarm = sys.modules.get("graders.forkwarm")  # preloaded by the forkserver
    if forkwarm is not None:
        forkwarm.open_gradebooks_once()
    from nbgrader.apps.nbgraderapp import NbGraderApp

    _record_first_error(marker)
    sys.argv = ["nbgrader", *argv]
    NbGraderApp.launch_instance(argv=argv)


# --------------------------------------------------------------------------- the watchdog
def tree(root: psutil.Process) -> list[psutil.Process]:
    """``root`` and all its descendants (what is left of them)."""
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def memory_mb(procs: Iterable[psutil.Process]) -> float:
    """The processes' memory in MiB: proportional set size, resident size where PSS cannot be
    read (another user's process, a kernel without ``smaps_rollup``)."""
    total = 0
    for p in procs:
        try:
            total += p.memory_full_info().pss
        except (psutil.AccessDenied, AttributeError):
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        except psutil.Error:  # gone, or a zombie
            pass
    return total / 2**20


def resident_mb(procs: Iterable[psutil.Process]) -> float:
    """The processes' summed resident sizes in MiB (shared pages counted in each: an upper
    bound of :func:`memory_mb`, read in microseconds)."""
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


class MemoryWatch:
    """Whether a process tree uses more than a limit, as PSS, without paying for PSS on every
    poll. Resident sizes bound PSS from above: under the limit, nothing more is read. Over it,
    PSS is measured, and until the next measurement it is estimated as the last PSS plus what
    the resident sizes grew since (re-measured when that estimate passes the limit, at most
    every ``min_interval`` seconds, and every ``refresh`` seconds anyway)."""

    def __init__(
        self,
        limit_mb: float,
        rss: Callable[[list[psutil.Process]], float] = resident_mb,
        pss: Callable[[list[psutil.Process]], float] = memory_mb,
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = 0.5,
        refresh: float = 5.0,
    ) -> None:
        self.limit_mb = limit_mb
        self._rss, self._pss, self._clock = rss, pss, clock
        self._min_interval, self._refresh = min_interval, refresh
        self._last: tuple[float, float, float] | None = None  # (pss, rss, when)

    def over(self, procs: list[psutil.Process]) -> float | None:
        """The tree's PSS in MiB when it is over the limit, else None."""
        rss = self._rss(procs)
        if rss <= self.limit_mb:
            self._last = None
            return None
        now = self._clock()
        if self._last is not None:
            pss, then_rss, when = self._last
            estimate = pss + max(0.0, rss - then_rss)
            stale = now - when >= self._refresh
            if not stale and (estimate <= self.limit_mb or now - when < self._min_interval):
                return None
        pss = self._pss(procs)
        self._last = (pss, rss, now)
        return pss if pss > self.limit_mb else None


def full_sandbox_disk(
    pids: Iterable[int],
    statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
    readlink: Callable[[str], str] = os.readlink,
    min_free: int = DISK_FULL_BYTES,
) -> int | None:
    """A process among ``pids`` in another mount namespace than this one (a sandboxed
    kernel) whose ``/tmp`` has less than ``min_free`` bytes free, or None. Each namespace is
    looked at once, through ``/proc/<pid>/root/tmp``."""
    try:
        own = readlink("/proc/self/ns/mnt")
    except OSError:
        return None
    seen = {own}
    for pid in pids:
        try:
            namespace = readlink(f"/proc/{pid}/ns/mnt")
            if namespace in seen:
                continue
            seen.add(namespace)
            st = statvfs(f"/proc/{pid}/root/tmp")
        except OSError:  # gone, or not ours to look into
            continue
        if st.f_blocks and st.f_bavail * st.f_frsize < min_free:
            return pid
    return None


def kill_tree(procs: Iterable[psutil.Process]) -> None:
    """SIGKILL these processes and their process groups (jupyter starts each kernel in a new
    session, so killing nbgrader's group alone would leave the kernel running)."""
    for p in procs:
        try:
            if p.is_running():
                os.killpg(os.getpgid(p.pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
        try:
            p.kill()
        except psutil.Error:
            pass


def over_limit(
    procs: list[psutil.Process], limits: Limits, elapsed: float, memory: MemoryWatch | None = None
) -> tuple[str, str] | None:
    """``(status, reason)`` when the tree ``procs`` broke a limit, else None (``memory``
    carries the memory measurements from one poll to the next)."""
    if elapsed > limits.wall_s:
        return TIMED_OUT, f"ran past the {limits.wall_s:g} s notebook limit: killed"
    if len(procs) > limits.max_processes:
        return CRASHED, (
            f"ran {len(procs)} processes, over the limit of {limits.max_processes}: killed"
        )
    used = (memory or MemoryWatch(limits.memory_mb)).over(procs)
    if used is not None:
        return CRASHED, (
            f"kernel and grader used {used:.0f} MiB, over the {limits.memory_mb:g} MiB limit"
        )
    if limits.disk_mb is not None and full_sandbox_disk(p.pid for p in procs) is not None:
        return CRASHED, f"wrote more than {limits.disk_mb} MiB (disk limit)"
    return None


def _kill_kernel_then_wait(
    root: psutil.Process, popen, grace: float, kernels: Sequence[psutil.Process] = ()
) -> None:
    """Kill the kernel (every descendant of the grading process ``root``, and the trees of
    ``kernels``: a kernel started ahead), give the grading process ``grace`` seconds to finish
    (the course's executor then fails the remaining tests and nbgrader saves what was earned),
    then kill whatever is left."""
    end = time.monotonic() + grace
    while time.monotonic() < end and popen.poll() is None:
        kill_tree([q for k in kernels for q in tree(k)])
        try:
            kill_tree(root.children(recursive=True))
        except psutil.Error:
            break
        time.sleep(POLL_S)
    if popen.poll() is None:
        kill_tree(tree(root))


def run_limited(
    cmd: list[str],
    cwd: Path,
    env: dict[str, str],
    limits: Limits,
    log: Path,
    stop: Callable[[], bool] = lambda: False,
    watch: Sequence[int] = (),
) -> Run:
    """Run ``cmd`` in ``cwd`` (its output to ``log``) under ``limits``; when it breaks one, kill
    the kernel first and the grading process after a grace (memory, processes, disk: nbgrader
    can still save the points earned so far), or the whole tree at once (wall clock, or
    ``stop()`` turning true); see the module docstring. The process trees of ``watch`` (a
    kernel started ahead for this run, :mod:`graders.prestart`) count as part of the run's."""
    start = time.monotonic()
    kernels = []
    for pid in watch:
        with contextlib.suppress(psutil.Error):
            kernels.append(psutil.Process(pid))
    marker = log.parent / MARKER
    marker.unlink(missing_ok=True)
    if cmd[:3] == NBGRADER and FORK_NBGRADER:
        popen = ForkedNbgrader(cmd[3:], cwd, env, log, marker)
    else:
        with log.open("wb") as out:
            popen = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
    try:
        root = psutil.Process(popen.pid)
    except psutil.NoSuchProcess:  # ended, and reaped by the forkserver, before the first look
        root = None
    seen: dict[int, psutil.Process] = {}
    memory = MemoryWatch(limits.memory_mb)
    killed = None
    while root is not None and popen.poll() is None:
        procs = tree(root) + [p for k in kernels for p in tree(k) if p.pid != root.pid]
        seen.update((p.pid, p) for p in procs)
        killed = over_limit(procs, limits, time.monotonic() - start, memory)
        if killed is None and stop():
            killed = CRASHED, INTERRUPTED
        if killed:
            if killed[0] == TIMED_OUT or killed[1] == INTERRUPTED:
                kill_tree(procs)
            else:  # memory, processes, disk: the kernel goes; nbgrader may still save grades
                _kill_kernel_then_wait(root, popen, KERNEL_KILL_GRACE_S, kernels)
            popen.wait()
            break
        with contextlib.suppress(subprocess.TimeoutExpired):  # back at once when it exits
            popen.wait(timeout=POLL_S)
    popen.wait()
    # kernels nbgrader left behind
    kill_tree(p for p in [*seen.values(), *kernels] if p.is_running())
    error = None
    if marker.is_file():
        facts = json.loads(marker.read_text())
        error = (facts["exception"], facts["message"])
    return Run(popen.returncode, read_log(log), killed, time.monotonic() - start, error)


def read_log(log: Path, head: int = 256 << 10, tail: int = 1 << 20) -> str:
    """The run's log, its start and end only when it is long (a kernel writing to its file
    descriptors directly fills it, up to the sandbox's file size limit: once read whole, a
    gigabyte per run in the grading process)."""
    try:
        with log.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(0)
            if size <= head + tail:
                return f.read().decode(errors="replace")
            start = f.read(head)
            f.seek(size - tail)
            end = f.read(tail)
    except OSError:
        return ""
    cut = f"\n[... {size - head - tail} bytes of the log left out ...]\n"
    return start.decode(errors="replace") + cut + end.decode(errors="replace")


# ---------------------------------------------------------------------------- how it ended
def one_line(err: object, limit: int = 160) -> str:
    """``err`` as one line of at most ``limit`` characters."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_TRACE_END = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Interrupt)): (.*)$", re.M)


def _from_log(log: str, returncode: int | None) -> tuple[str, str]:
    """The status of a run that left no marker, from what it logged."""
    if "Timeout waiting for execute reply" in log or "CellTimeoutError" in log:
        return EXCEPTIONS["CellTimeoutError"]
    if "DeadKernelError" in log or "Kernel died" in log:
        return EXCEPTIONS["DeadKernelError"]
    ends = _TRACE_END.findall(log)
    if ends:
        name, message = ends[-1]
        return CRASHED, one_line(f"{name.rsplit('.', 1)[-1]}: {message}")
    errors = [line for line in log.splitlines() if "| ERROR]" in line]
    reason = errors[0].split("]", 1)[1] if errors else f"nbgrader exited {returncode}"
    return CRASHED, one_line(reason)


def classify(run: Run, notebook_written: bool, refused: str = "") -> tuple[str, str]:
    """``(status, reason)`` of a finished run: the limit that killed it; ``graded`` when
    nbgrader exited 0 and wrote the notebook; ``refused`` when the file was no notebook
    (``refused`` says why); else from the exception nbgrader recorded, the signal that killed
    it, or (no marker) its log."""
    if run.killed:
        return run.killed
    if run.returncode == 0 and notebook_written:
        return GRADED, ""
    if refused:
        return REFUSED, refused
    if run.error is not None:
        names, message = run.error
        for name in names:
            if name in EXCEPTIONS:
                return EXCEPTIONS[name]
        return CRASHED, one_line(f"{names[0]}: {message}" if message else names[0])
    if run.returncode is not None and run.returncode < 0:
        try:
            name = signal.Signals(-run.returncode).name
        except ValueError:
            name = f"signal {-run.returncode}"
        return CRASHED, f"the grading process was killed ({name})"
    return _from_log(run.log, run.returncode)
