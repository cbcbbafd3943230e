"""Run grading kernels in a bubblewrap (``bwrap``) sandbox.

A student's notebook is untrusted code. :class:`SandboxKernelManager` starts each Jupyter kernel
that ``nbgrader autograde`` runs inside ``bwrap`` with these properties:

What the kernel sees
    * Of the host's file system only the system folders (:data:`SYSTEM_ROOTS`: ``/usr``,
      ``/etc``, ``/sys``, ...) read-only, a fresh ``/dev`` (no host devices but ``/dev/nvidia*``,
      see below) and a ``/proc`` of its own PID namespace. Everything else (``/home``, ``/srv``,
      ``/opt``, ``/var``, ...: wherever a class's submissions were unpacked) is not there.
    * **Hidden** (an empty tmpfs over them): every folder in ``GRADERS_SANDBOX_HIDE`` (the
      caller passes the course root, the repository root and the scratch course) plus, always,
      the repository root of this package and the host ``$HOME``. So ``gradebook.db`` (which
      holds the hidden tests), ``source/``, other students' submissions and the grader's
      credentials cannot be read.
    * **Read-only**, at their paths, even inside a hidden folder: the Python installation
      (``sys.prefix``, ``sys.base_prefix``, the interpreter's folder), the folders of editable
      installs (``.pth`` paths, setuptools editable-finder mappings: ``src/`` for ``dlworkshop``),
      those of ``LD_LIBRARY_PATH`` and ``GRADERS_SANDBOX_READONLY``. The data caches of
      ``sandbox_env.SHARED_CACHES`` (``$DLWORKSHOP_CACHE``, default ``~/.cache/dlworkshop``, and
      ``$TORCH_HOME``, default ``~/.cache/torch``) are shown read-only too when they exist, and
      the kernel's variables point at them (MNIST then loads in milliseconds, not 4 s).
    * **Writable**: only a private tmpfs ``/tmp`` of ``disk_mb`` MiB (the kernel's working folder
      is ``/tmp/work``; ``$HOME`` is ``/tmp/home``, with ``IPYTHONDIR`` and ``MPLCONFIGDIR`` in
      it) and a private ``/dev/shm`` of the same size. Writes anywhere else fail (read-only file
      system); everything written vanishes with the kernel. The folder nbgrader runs the kernel
      in (``autograded/<student>/<a>/``) is **not** mounted: it holds the notebook being graded,
      hidden tests included. Its other files (data files an assignment ships) appear read-only
      in ``/tmp/work`` under their names, so relative paths in a notebook work as before.
    * No network: a new network namespace holds only a down loopback, so neither the host's
      127.0.0.1 nor the outside world (DNS included) can be reached. The kernel talks to the
      grader over Jupyter's ``ipc`` transport: unix sockets in a private folder bound writable
      (on the host's disk: more than ``disk_mb`` written there kills the kernel).
    * Own PID, IPC and UTS namespaces, a new session (no terminal injection), killed with its
      parent (``--die-with-parent``), all capabilities dropped, ``no_new_privs`` set. When the
      kernel dies or is killed, every process it started dies with its PID namespace.
    * A cleared environment: only the variables a kernel needs to run (:data:`KERNEL_ENV`), never
      the grader's others (a database password or a token its feedback could print).
    * Interrupts (``Execute.interrupt_on_timeout``) go as ``interrupt_request`` messages: a
      SIGINT would hit ``bwrap`` (and kill the sandbox), not the kernel inside.

Limits (:class:`Limits`; environment variable, default)
    * ``memory_mb`` (``GRADERS_SANDBOX_MEMORY_MB``, 8192): the kernel's address space
      (``RLIMIT_AS``), so a memory bomb gets ``MemoryError`` (or the kernel dies) long before
      the host suffers. **GPU rule:** when ``/dev/nvidia*`` devices exist they are bound into
      the sandbox (CUDA needs them; not for a kernel whose ``CUDA_VISIBLE_DEVICES`` hides every
      GPU, a CPU worker's on a GPU machine, which stays on the CPU even if it unsets the
      variable) and the limit becomes ``RLIMIT_DATA`` instead, because the
      CUDA driver reserves tens of GiB of virtual address space that ``RLIMIT_AS`` would refuse.
      Measured on an H200 (torch 2.11): under ``RLIMIT_AS`` 8 GiB CUDA fails to initialise
      ("out of memory"); sandboxed with ``RLIMIT_DATA`` 8 GiB a matmul on the GPU ran (VmPeak
      17.4 GiB, VmData 1.5 GiB) and a host-memory bomb stopped at 6.5 GiB. GPU memory itself
      is not limited. On the CPU, ``import torch`` alone takes about 4.3 GiB of address space.
    * ``max_processes`` (``GRADERS_SANDBOX_MAX_PROCESSES``, 256): ``RLIMIT_NPROC``, which the
      kernel counts per *user* and does not apply to root. When grading as root the kernel
      therefore runs as its own unused uid (``1_000_000_000 + 512 * grader pid + n``, one no
      process runs as, via ``setpriv``), so the count covers exactly this kernel's processes: a
      fork bomb is bounded and cannot starve another student's kernel. The working folder is
      handed to that uid while the kernel runs and given back to its owner afterwards. As a
      normal user the limit is added to the processes that user already runs (the count is
      that user's, system-wide).
    * ``file_size_mb`` (``GRADERS_SANDBOX_FILE_SIZE_MB``, 1024): ``RLIMIT_FSIZE``, the largest
      file the kernel may write.
    * ``disk_mb`` (``GRADERS_SANDBOX_DISK_MB``, 512): size of each of the tmpfs ``/tmp`` and
      ``/dev/shm`` (they live in the host's memory): what a submission may write. A full ``/tmp``
      makes writes fail with "No space left on device"; the grading watchdog
      (``graders.runner``) sees it and stops the kernel with a reason.
    Core dumps are off. CPU: each kernel, with all it starts, joins a CPU group of its own
    weighted by its worker's threads where the grader may make one (:mod:`graders.cpushare`).

Using it with nbgrader
    nbgrader's ``Execute`` preprocessor passes ``kernel_manager_class`` to nbclient as a
    keyword argument, which beats configuration: ``--Execute.kernel_manager_class=...`` is
    silently ignored (measured with nbgrader 0.9.6). The course's executor
    (:class:`graders.verdict.execute.VerdictExecute`, set in ``nbgrader_config.py``) therefore
    chooses this manager itself (its ``sandbox`` option), and binds its channel to the kernel
    into :attr:`SandboxKernelManager.agent_folder`. :func:`sandbox_settings` returns the
    command-line arguments and the environment that make an ``nbgrader autograde`` require the
    sandbox with given hidden folders and limits.

If ``bwrap`` is missing or cannot create namespaces here, :func:`sandbox_status` says why, and
the manager refuses to start a kernel (it never falls back to running one unsandboxed); callers
check the status first and warn loudly when they grade without the sandbox.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from traitlets import default

from graders import cpushare
from graders.resources import cuda_hidden
from graders.sandbox_env import (  # noqa: F401 (KERNEL_ENV, ENV_RUN_ROOT, kernel_environment: re-exported)
    ENV_RUN_ROOT,
    KERNEL_ENV,
    KERNEL_ENV_PREFIXES,
    SANDBOX_HOME,
    editable_paths,
    environment_args,
    kernel_environment,
    library_folders,
    run_folder,
    shared_caches,
    split_paths,
)
from graders.sandbox_watch import kill_sandbox, watch_run_folder

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_HIDE = "GRADERS_SANDBOX_HIDE"
ENV_READONLY = "GRADERS_SANDBOX_READONLY"
ENV_PREFIX = "GRADERS_SANDBOX_"
SANDBOX_WORK = "/tmp/work"  # the kernel's working folder inside the sandbox
UID_BASE = 1_000_000_000
UIDS_PER_PROCESS = 512  # UID_BASE + 512 * pid_max (2**22) stays below 2**32 - 1
#: How often a stopping kernel is looked at (jupyter_client: every 0.1 s; a killed kernel is gone
#: in milliseconds, and every notebook waited out one whole interval).
STOP_POLL_S = 0.005
_uid_counter = itertools.count()


class SandboxUnavailable(RuntimeError):
    """bubblewrap cannot run here; the message says why."""


@dataclass(frozen=True)
class SandboxStatus:
    """Whether kernels can be sandboxed on this machine, and why not."""

    available: bool
    reason: str


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed kernel (see the module docstring)."""

    memory_mb: int = 8192
    max_processes: int = 256
    file_size_mb: int = 1024
    disk_mb: int = 512

    def to_env(self) -> dict[str, str]:
        """The environment variables that carry these limits to the kernel manager."""
        return {f"{ENV_PREFIX}{f.name.upper()}": str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ = os.environ) -> Limits:
        """Limits from ``GRADERS_SANDBOX_*`` variables; defaults for the missing ones."""
        values = {}
        for f in fields(cls):
            name = f"{ENV_PREFIX}{f.name.upper()}"
            if env.get(name):
                try:
                    values[f.name] = int(env[name])
                except ValueError:
                    raise ValueError(f"{name} must be a whole number, not {env[name]!r}") from None
        return cls(**values)


# ------------------------------------------------------------------------------ availability
def _is_root() -> bool:
    return os.geteuid() == 0


def _required_tools() -> list[str]:
    return ["bwrap", "prlimit", "setpriv"] if _is_root() else ["bwrap", "prlimit"]


@functools.lru_cache(maxsize=1)
def sandbox_status() -> SandboxStatus:
    """Try a trivial sandbox (``bwrap ... true``) with the options kernels get."""
    missing = [tool for tool in _required_tools() if shutil.which(tool) is None]
    if missing:
        return SandboxStatus(False, f"not installed: {', '.join(missing)} (Debian: bubblewrap)")
    uid = _kernel_uid() if _is_root() else None
    with tempfile.TemporaryDirectory(prefix="sandbox-probe-") as work:
        if uid is not None:
            os.chown(work, uid, uid)
        cmd = bwrap_command(["true"], cwd=Path(work), run_dir=Path(work), hide=[], readonly=[],
                            limits=Limits(), uid=uid)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as err:
            return SandboxStatus(False, f"bwrap did not run: {err}")
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or [f"exit {proc.returncode}"]
        return SandboxStatus(False, f"bwrap failed: {lines[-1]}")
    return SandboxStatus(True, f"bwrap works ({shutil.which('bwrap')})")


# ------------------------------------------------------------------------------ what to mount
def _existing(paths: Iterable[Path | str]) -> list[Path]:
    """Absolute, resolved, existing, de-duplicated paths, shallowest first."""
    found = {Path(p).resolve() for p in paths if str(p) and Path(p).exists()}
    return sorted(found, key=lambda p: (len(p.parts), str(p)))


def python_paths() -> list[Path]:
    """What the kernel needs to run this Python: its installation and editable installs."""
    exe_dir = Path(os.path.realpath(sys.executable)).parent
    return _existing([sys.prefix, sys.base_prefix, exe_dir, *editable_paths()])


def default_grader_hidden(kernel_cwd: Path) -> list[Path]:
    """Folders hidden from every kernel on top of :func:`default_hidden`: the grading process's
    folder (a course root: gradebook, source, submissions) and the kernel's nominal folder (the
    autograded notebook). A Python installation inside (``.venv``) is shown again read-only."""
    keep = python_paths()
    found = []
    for folder in {Path.cwd().resolve(), Path(kernel_cwd).resolve()}:
        if folder != Path("/") and not any(folder.is_relative_to(p) for p in keep):
            found.append(folder)
    return sorted(found)


def default_hidden() -> list[Path]:
    """Folders always hidden: this repository, the host ``$HOME`` and its control groups (the
    other kernels' CPU groups, :mod:`graders.cpushare`, list their processes)."""
    home = Path.home()
    return _existing([REPO_ROOT, Path("/sys/fs/cgroup")] + ([home] if home != Path("/") else []))


def gpu_devices() -> list[Path]:
    """NVIDIA device nodes (``/dev/nvidia0``, ``/dev/nvidiactl``, ``/dev/nvidia-uvm``, ...)."""
    return [Path(p) for p in sorted(glob.glob("/dev/nvidia*"))]


#: The host's top-level folders a kernel sees (read-only): programs, libraries, configuration
#: and ``/sys`` (CPU facts that torch and OpenMP read). Nothing else of the host's root is there:
#: not ``/home``, ``/srv``, ``/var``, ``/opt``, ``/mnt``, ``/media``, wherever an instructor
#: unpacked a class's submissions. Links among them (``/bin -> usr/bin``) are kept as links.
SYSTEM_ROOTS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "sys")


def system_root_args() -> list[str]:
    """bwrap options that show the :data:`SYSTEM_ROOTS` this host has."""
    args: list[str] = []
    for name in SYSTEM_ROOTS:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def _below_hidden(paths: list[Path], hidden: list[Path]) -> list[Path]:
    """``paths`` that do not hold a hidden folder (showing one would show what it hides)."""
    return [p for p in _existing(paths) if not any(h.is_relative_to(p) for h in hidden)]


# ------------------------------------------------------------------------------ the command
def _kernel_uid() -> int:
    """An unused uid for one kernel: grader processes have ranges of their own
    (:data:`UIDS_PER_PROCESS` from ``UID_BASE + UIDS_PER_PROCESS * pid``), and within its range
    a grader skips the uids a process still runs as. Two kernels sharing a uid shared its
    process limit: one holding it made the other's threads fail (a coordinator starting
    kernels ahead reused a uid after 16)."""
    base = UID_BASE + UIDS_PER_PROCESS * os.getpid()
    busy = _uids_running()
    for _ in range(UIDS_PER_PROCESS):
        uid = base + next(_uid_counter) % UIDS_PER_PROCESS
        if uid not in busy:
            return uid
    raise SandboxUnavailable(f"all {UIDS_PER_PROCESS} kernel uids of this process are in use")


def _uids_running() -> set[int]:
    """The uids of the processes running now (the owners of ``/proc/<pid>``)."""
    uids = set()
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    uids.add(entry.stat().st_uid)
    return uids


def _user_process_count() -> int:
    """How many processes this (non-root) user already runs, system-wide."""
    uid, count = os.getuid(), 0
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            text = Path(status).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Uid:"):
                count += int(line.split()[1]) == uid
                break
    return count


def limit_command(limits: Limits, uid: int | None, gpu: bool) -> list[str]:
    """``prlimit`` (and, for root, ``setpriv`` to the kernel's own uid) before the kernel."""
    memory = f"--{'data' if gpu else 'as'}={limits.memory_mb * 2**20}"
    nproc = limits.max_processes if uid is not None else (
        limits.max_processes + _user_process_count())
    cmd = ["prlimit", memory, f"--nproc={nproc}", f"--fsize={limits.file_size_mb * 2**20}",
           "--core=0", "--"]
    if uid is not None:
        cmd += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"]
    return cmd


def bwrap_command(
    kernel_cmd: list[str],
    *,
    cwd: Path,
    run_dir: Path,
    hide: Iterable[Path],
    readonly: Iterable[Path],
    limits: Limits,
    uid: int | None,
    kernel_env: dict[str, str] | None = None,
) -> list[str]:
    """The full command line that runs ``kernel_cmd`` sandboxed (see the module docstring).

    Mount order matters: hidden folders (tmpfs) first, then read-only re-binds inside them,
    then the writable folders.
    """
    kernel_env = dict(os.environ if kernel_env is None else kernel_env)
    # a kernel whose CUDA is hidden (a CPU worker on a GPU machine) gets no GPU device either
    devices = [] if cuda_hidden(kernel_env) else gpu_devices()
    tmp_size = str(limits.disk_mb * 2**20)
    cmd = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net",
           "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
           *system_root_args(), "--dev", "/dev", "--proc", "/proc",
           "--size", tmp_size, "--perms", "1777", "--tmpfs", "/tmp",
           "--perms", "1777", "--dir", SANDBOX_HOME, "--perms", "1777", "--dir", SANDBOX_WORK,
           "--size", tmp_size, "--perms", "1777", "--tmpfs", "/dev/shm"]
    caches = shared_caches(kernel_env)
    hidden = _existing([*default_hidden(), *hide])
    shown = _existing([*python_paths(), *caches.values(), *readonly,
                       *_below_hidden(library_folders(kernel_env), hidden)])
    writable = _existing([run_dir])
    if uid is not None:
        hidden = _existing([*hidden, *_closed_ancestors([*shown, *writable], hidden)])
    tmpfs_roots = [Path("/"), Path("/tmp"), Path("/dev/shm")]  # "/": bwrap's own new root
    for path in hidden:
        cmd += [*_mount_point_args(path, tmpfs_roots), "--tmpfs", str(path)]
        tmpfs_roots.append(path)
    for path in shown:
        cmd += [*_mount_point_args(path, tmpfs_roots), "--ro-bind", str(path), str(path)]
    for device in devices:
        cmd += ["--dev-bind", str(device), str(device)]
    for path in writable:
        cmd += [*_mount_point_args(path, tmpfs_roots), "--bind", str(path), str(path)]
    for path in work_files(cwd):
        cmd += ["--ro-bind", str(path), f"{SANDBOX_WORK}/{path.name}"]
    # bwrap changes folder after dropping capabilities, when root may no longer enter a folder
    # handed to the kernel's uid; `env --chdir` does it as that uid, at the end.
    cmd += ["--chdir", "/", "--cap-drop", "ALL"]
    if uid is not None:
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    cmd += environment_args(kernel_env, REPO_ROOT)
    for name, path in caches.items():
        cmd += ["--setenv", name, str(path)]
    return [*cmd, "--", *limit_command(limits, uid, gpu=bool(devices)),
            "env", f"--chdir={SANDBOX_WORK}", "--", *kernel_cmd]


def work_files(folder: Path) -> list[Path]:
    """What of the folder nbgrader runs the kernel in the kernel sees (read-only, in
    ``/tmp/work``): regular files and folders, but no notebook (the one being graded holds the
    hidden tests) and no links."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir()
        if not p.is_symlink() and (p.is_dir() or (p.is_file() and p.suffix != ".ipynb"))
        and not p.name.startswith(".")
    )


def _closed_ancestors(paths: list[Path], hidden: list[Path]) -> list[Path]:
    """Folders above ``paths`` that other users may not pass through (no ``o+x``).

    A kernel under its own uid could not reach its working folder or Python through them, so
    they are hidden too (a tmpfs whose path to the mounts inside is open): nothing in them was
    readable by that uid anyway.
    """
    covered = [Path("/tmp"), Path("/dev/shm"), *hidden]
    closed: list[Path] = []
    for path in paths:
        for folder in reversed(path.parents):
            if any(folder.is_relative_to(c) for c in [*covered, *closed]):
                break
            if not folder.stat().st_mode & 0o001:
                closed.append(folder)
                break
    return closed


def _mount_point_args(path: Path, tmpfs_roots: list[Path]) -> list[str]:
    """Create the folders leading to ``path`` inside the deepest tmpfs that holds it as 0755
    (bwrap would use 0700, which a kernel running under its own uid could not pass through);
    nothing for a path inside a folder bound from the host (it exists there)."""
    if any(path.is_relative_to(f"/{name}") for name in SYSTEM_ROOTS):
        return []
    roots = [root for root in tmpfs_roots if path.is_relative_to(root) and path != root]
    if not roots:
        return []
    root = max(roots, key=lambda r: len(r.parts))
    inner = [q for q in path.relative_to(root).parents if q != Path(".")]
    args: list[str] = []
    for folder in reversed(inner):
        args += ["--perms", "0755", "--dir", str(root / folder)]
    return args


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give ``root`` and everything below it to ``uid:gid`` (symlinks themselves, not targets)."""
    os.chown(root, uid, gid, follow_symlinks=False)
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            try:
                os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)
            except FileNotFoundError:
                pass


def sandboxed_kernel_command(
    kernel_cmd: list[str], cwd: Path, run_dir: Path, env: dict[str, str]
) -> list[str]:
    """The command that runs ``kernel_cmd`` sandboxed as a grading kernel: nominal folder
    ``cwd`` (its files shown in ``/tmp/work``), connection files in ``run_dir``, hidden folders
    and limits from ``env`` (the variables of :func:`sandbox_settings`)."""
    uid = _kernel_uid() if _is_root() else None
    if uid is not None:  # the kernel's uid reads its connection file, makes its sockets
        _chown_tree(run_dir, uid, uid)
    return bwrap_command(
        kernel_cmd,
        cwd=cwd,
        run_dir=run_dir,
        hide=[*default_grader_hidden(cwd), *split_paths(env.get(ENV_HIDE, ""))],
        readonly=split_paths(env.get(ENV_READONLY, "")),
        limits=Limits.from_env(env),
        uid=uid,
        kernel_env=env,
    )


# ------------------------------------------------------------------------------ jupyter side
class SandboxKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` whose kernels run in the bubblewrap sandbox.

    Configured by environment variables (read when the kernel starts): ``GRADERS_SANDBOX_HIDE``
    and ``GRADERS_SANDBOX_READONLY`` (``os.pathsep``-separated folders) and the
    ``GRADERS_SANDBOX_*`` limits of :class:`Limits`. Uses the ``ipc`` transport with the
    connection file and sockets in a private folder that is bound into the sandbox.
    """

    _run_dir: Path | None = None
    _cpu_group: Path | None = None  # its CPU share (graders.cpushare), None where there is none

    @default("transport")
    def _default_transport(self) -> str:
        return "ipc"

    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        await super()._async_wait(pollinterval=min(pollinterval, STOP_POLL_S))

    async def _async_kill_kernel(self, restart: bool = False) -> None:
        """Kill the whole sandbox (:func:`kill_sandbox`): the provisioner kills the outer
        ``bwrap`` and its group only, which leaves a young sandbox's kernel running."""
        process = getattr(self.provisioner, "process", None)
        if process is not None and process.poll() is None:
            kill_sandbox(process.pid)
        await super()._async_kill_kernel(restart=restart)

    @default("client_factory")
    def _ready_client(self) -> type:
        from graders.ready import ReadyClient  # ready without jupyter_client's 0.2 s wait

        return ReadyClient

    @property
    def agent_folder(self) -> Path | None:
        """A private folder the kernel can reach (bound writable into the sandbox): where the
        trusted test runner opens its channel to the kernel."""
        return self._run_dir

    @property
    def kernel_spec(self) -> KernelSpec | None:
        """The kernel's spec, interrupted by message: a SIGINT would reach ``bwrap`` (which it
        kills, and the kernel with it), not the kernel inside."""
        spec = super().kernel_spec
        if spec is not None:
            spec.interrupt_mode = "message"
        return spec

    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        status = sandbox_status()
        if not status.available:
            raise SandboxUnavailable(f"cannot sandbox the kernel: {status.reason}")
        if self._run_dir is None:
            self._run_dir = run_folder()
            self.connection_file = str(self._run_dir / "kernel.json")
            self.ip = str(self._run_dir / "kernel-ipc")
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        assert self._run_dir is not None
        cwd = Path(kw.get("cwd") or os.getcwd()).resolve()
        env = dict(kw.get("env") or os.environ)
        self._cpu_group = cpushare.create(cpushare.cpus_of(env))
        cmd = cpushare.join_command(self._cpu_group,
                                    sandboxed_kernel_command(kernel_cmd, cwd, self._run_dir, env))
        self.log.debug("sandboxed kernel: %s", cmd)
        await super()._async_launch_kernel(cmd, **kw)
        limit = Limits.from_env(dict(kw.get("env") or os.environ)).disk_mb << 20
        process = getattr(self.provisioner, "process", None)
        if process is not None:
            threading.Thread(target=watch_run_folder, args=(process, self._run_dir, limit,
                             self.log), daemon=True, name="run-folder-watch").start()

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        try:
            await super()._async_cleanup_resources(restart=restart)
        finally:  # jupyter_client's part fails for a kernel killed from outside
            cpushare.remove(self._cpu_group)
            self._cpu_group = None
            if not restart and self._run_dir is not None:
                shutil.rmtree(self._run_dir, ignore_errors=True)
                self._run_dir = None


def sandbox_settings(
    hide: list[Path], readonly: list[Path], limits: Limits
) -> tuple[list[str], dict[str, str]]:
    """Extra ``nbgrader autograde`` arguments and environment that sandbox its kernels.

    ``hide``: folders the kernel must not see (course root, repo root, scratch course);
    ``readonly``: folders inside them it still needs (beyond the Python installation and
    editable installs, which are always kept). The arguments make the course's executor
    (:class:`graders.verdict.execute.VerdictExecute`, set in ``nbgrader_config.py``) require
    the sandbox; merge the environment over the current one.
    """
    args = ["--VerdictExecute.sandbox=on"]
    pythonpath = os.pathsep.join(
        p for p in [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")] if p
    )
    env = {
        ENV_HIDE: os.pathsep.join(str(Path(p).resolve()) for p in hide),
        ENV_READONLY: os.pathsep.join(str(Path(p).resolve()) for p in readonly),
        "PYTHONPATH": pythonpath,
        **limits.to_env(),
    }
    return args, env
