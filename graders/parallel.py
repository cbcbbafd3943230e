"""Parallel, isolated batch autograding: ``python -m graders autograde``.

nbgrader grades one student after another, and its SQLite gradebook locks under concurrent
writers. Here **workers never write the main gradebook**: each (assignment, student) is graded
by the real ``nbgrader autograde <a> --student=<s>`` in a *private scratch course* (a copy of
``nbgrader_config.py``, ``source/<a>/``, the student's submission and a private SQLite gradebook
holding only the assignment's definition). The parent process alone then copies the autograded
folder into the main course and merges that student's rows into the main gradebook
(:func:`graders.gradebook_sync.copy_submission`), one submission at a time.

Each submission ends with one status (:data:`STATUSES`) and a one-line reason:

``graded``      nbgrader graded it (tests may still have failed: see the score)
``timed out``   a cell ignored nbgrader's per-cell interrupt, or the notebook ran past the
                wall-clock limit (the grading process and the kernel were killed)
``crashed``     the kernel died (e.g. killed at the memory limit) or nbgrader failed
``missing``     the student's folder has no notebook for the assignment (nothing is run)
``refused``     the file is not a notebook (corrupt JSON, ...)

A submission nbgrader started on keeps the gradebook row nbgrader made (score 0 when it
failed); nothing about one submission ever touches another student's rows or files.

Kernels run in a bubblewrap sandbox (:mod:`graders.sandbox`) when it is available: the course,
the repository and the scratch course are hidden, except the notebook's own folder, and the
virtual environment and ``src/`` are read-only. Without it student code runs with the
instructor's rights, and every report says so loudly.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import psutil

from graders import gradebook_sync
from graders.course import REPO_ROOT, Course

GRADED, TIMED_OUT, CRASHED = "graded", "timed out", "crashed"
MISSING, REFUSED = "missing", "refused"
STATUSES = (GRADED, TIMED_OUT, CRASHED, MISSING, REFUSED)
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "DLWORKSHOP_THREADS")
#: Workers per GPU when GPUs exist: one notebook computes while the other loads data or starts.
WORKERS_PER_GPU = 2
#: Notebook wall-clock limit, as a multiple of the per-cell limit, unless given.
NOTEBOOK_TIMEOUT_CELLS = 3
#: Per-cell limit of nbclient when the course configuration sets none.
NBCLIENT_DEFAULT_CELL_TIMEOUT = 30.0
_POLL_S = 0.1
#: Fork ``nbgrader`` from a process that imported it once (Linux) instead of starting Python.
FORK_NBGRADER = sys.platform == "linux"


# ------------------------------------------------------------------------------ data types
@dataclass(frozen=True)
class Job:
    """One student's submission of one assignment."""

    assignment: str
    student: str


def job_fields(job: Job) -> tuple[str, str]:
    """``(assignment, student)``: the first fields of a :class:`Result`."""
    return job.assignment, job.student


@dataclass
class Result:
    """How grading one submission ended."""

    assignment: str
    student: str
    status: str
    reason: str = ""
    score: float | None = None
    max_score: float | None = None
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def graded(self) -> bool:
        return self.status == GRADED


@dataclass(frozen=True)
class Slot:
    """What one worker may use: BLAS/torch threads and, if any, one GPU."""

    index: int
    threads: int
    gpu: str | None = None

    def env(self) -> dict[str, str]:
        """Environment variables for the worker's nbgrader process (its kernels inherit them)."""
        env = {var: str(self.threads) for var in THREAD_VARS}
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        return env


@dataclass
class Settings:
    """How to grade: pool size, limits, sandbox, gradebook.

    ``cell_timeout`` None keeps the course's ``Execute.timeout``; ``notebook_timeout`` None is
    :data:`NOTEBOOK_TIMEOUT_CELLS` times the per-cell limit; ``memory_mb`` None is an equal
    share of 80% of the machine's memory per worker.
    """

    workers: int | None = None
    cell_timeout: float | None = None
    notebook_timeout: float | None = None
    memory_mb: int | None = None
    sandbox: bool = True
    progress: bool = True
    keep_scratch: bool = False


# ------------------------------------------------------------------------ machine resources
def gpu_ids(env: dict[str, str] | None = None) -> list[str]:
    """The GPUs grading may use: ``CUDA_VISIBLE_DEVICES`` if set, else those ``nvidia-smi -L``
    lists (none without an NVIDIA driver)."""
    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        return [] if ids in ([], ["-1"]) else ids
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(re.findall(r"^GPU \d+", out, re.M))]


def default_workers(cores: int, gpus: int) -> int:
    """Pool size: one worker per core, or :data:`WORKERS_PER_GPU` per GPU when GPUs exist (never
    more workers than cores)."""
    cores = max(1, cores)
    return min(cores, WORKERS_PER_GPU * gpus) if gpus else cores


def make_slots(workers: int, cores: int, gpus: Sequence[str]) -> list[Slot]:
    """One :class:`Slot` per worker: an equal share of the cores (at least one thread each) and,
    with GPUs, GPU ``i % len(gpus)`` for worker ``i``."""
    threads = max(1, cores // max(1, workers))
    return [
        Slot(i, threads, gpus[i % len(gpus)] if gpus else None) for i in range(max(1, workers))
    ]


def default_memory_mb(workers: int) -> int:
    """An equal share of 80% of the machine's memory per worker, in MiB."""
    return max(256, int(psutil.virtual_memory().total * 0.8 / max(1, workers)) >> 20)


def course_cell_timeout(course: Course) -> float:
    """``Execute.timeout`` as the course's ``nbgrader_config.py`` sets it."""
    from traitlets.config.loader import PyFileConfigLoader

    try:
        config = PyFileConfigLoader("nbgrader_config.py", path=str(course.root)).load_config()
        return float(config.Execute.timeout)
    except Exception:  # no config, or no timeout set in it
        return NBCLIENT_DEFAULT_CELL_TIMEOUT


# ------------------------------------------------------------------------------ selection
def course_students(course: Course) -> list[str]:
    """Every student with a folder in ``submitted/``, sorted."""
    folder = course.root / "submitted"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def select_jobs(
    course: Course,
    assignments: Iterable[str],
    students: Iterable[str] | None = None,
    shard: tuple[int, int] | None = None,
) -> list[Job]:
    """The submissions to grade: every (assignment, student) with a folder in ``submitted/``
    (or the ``students`` given), restricted to shard ``(k, n)`` if given."""
    chosen = list(students) if students is not None else course_students(course)
    if shard is not None:
        chosen = gradebook_sync.select_shard(chosen, *shard)
    return [Job(a, s) for a in assignments for s in chosen]


def precheck(course: Course, job: Job) -> tuple[str, str] | None:
    """``(status, reason)`` for a submission nbgrader cannot grade (missing or not a
    notebook), else None."""
    path = course.submission_path(job.student, job.assignment)
    if not path.is_file():
        folder = path.parent
        if not folder.is_dir():
            return MISSING, f"nothing submitted: no folder submitted/{job.student}/{job.assignment}"
        others = sorted(p.name for p in folder.iterdir())[:3]
        found = f" (found: {', '.join(others)})" if others else " (folder empty)"
        return MISSING, f"no {path.name} in submitted/{job.student}/{job.assignment}{found}"
    try:
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # any reason the file is not a notebook
        return REFUSED, f"not a notebook: {_one_line(err)}"
    return None


# ----------------------------------------------------------------------------- scratch course
def prepare_scratch(course: Course, job: Job, template_db: Path, scratch: Path) -> Path:
    """A private course at ``scratch`` for grading ``job``: config, ``source/<a>/``, the
    submission and a copy of ``template_db`` (the assignment's definition only)."""
    scratch.mkdir(parents=True)
    shutil.copy2(course.root / "nbgrader_config.py", scratch / "nbgrader_config.py")
    shutil.copytree(
        course.root / "source" / job.assignment,
        scratch / "source" / job.assignment,
        ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"),
    )
    shutil.copytree(
        course.submission_path(job.student, job.assignment).parent,
        scratch / "submitted" / job.student / job.assignment,
        symlinks=True,
    )
    shutil.copy2(template_db, scratch / "gradebook.db")
    return scratch


def force_rmtree(path: Path) -> None:
    """Remove a folder even where nbgrader made files and folders read-only."""

    def make_writable_and_retry(func: Callable, target: str, _exc: object) -> None:
        parent = os.path.dirname(target)
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        if os.path.isdir(target) and not os.path.islink(target):
            os.chmod(target, os.stat(target).st_mode | stat.S_IRWXU)
        func(target)

    if path.exists() or path.is_symlink():
        shutil.rmtree(path, onerror=make_writable_and_retry)


# ----------------------------------------------------------------------------- sandboxing
@dataclass(frozen=True)
class SandboxPlan:
    """Whether kernels run sandboxed, and the note every report carries."""

    active: bool
    note: str


def plan_sandbox(wanted: bool) -> SandboxPlan:
    """Use :mod:`graders.sandbox` when wanted and available; otherwise say why not."""
    if not wanted:
        return SandboxPlan(False, "UNSANDBOXED (--no-sandbox): student code ran with your rights")
    try:
        from graders import sandbox
    except ImportError:
        reason = "graders.sandbox is not installed"
    else:
        status = sandbox.sandbox_status()
        if status.available:
            return SandboxPlan(True, "kernels sandboxed (bubblewrap)")
        reason = status.reason
    return SandboxPlan(
        False, f"UNSANDBOXED: student code ran with the instructor's rights ({reason})"
    )


def sandbox_arguments(
    course: Course, scratch_root: Path, memory_mb: int
) -> tuple[list[str], dict[str, str]]:
    """nbgrader arguments and environment that run the kernels in the sandbox: the course, the
    repository and all scratch courses hidden, the interpreter and ``src/`` read-only."""
    from graders import sandbox

    hide = list(dict.fromkeys([course.root, REPO_ROOT, scratch_root]))
    readonly = [Path(sys.prefix).resolve(), REPO_ROOT / "src"]
    limits = sandbox.Limits(memory_mb=address_space_mb(memory_mb))
    return sandbox.sandbox_settings(hide, readonly, limits)


def address_space_mb(memory_mb: int) -> int:
    """The sandbox's hard address-space cap behind the ``memory_mb`` watchdog: twice the limit
    plus 2 GiB, so that libraries' virtual reservations fit and the watchdog (which kills the
    kernel: status crashed) acts first, while a bomb faster than its polling still stops."""
    return 2 * memory_mb + 2048


# ------------------------------------------------------------------------- running nbgrader
@dataclass
class Run:
    """How one ``nbgrader autograde`` process ended."""

    returncode: int | None
    log: str
    killed: tuple[str, str] | None = None  # (status, reason) when a limit killed it
    seconds: float = 0.0


def _descendants(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def _rss_mb(procs: Iterable[psutil.Process]) -> float:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


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


class _ForkedNbgrader:
    """``python -m nbgrader ARGV`` without paying nbgrader's start-up (about 3 s of CPU, mostly
    imports) per notebook: forked from a forkserver that has imported nbgrader once. The child
    runs nbgrader's own command-line app, in its own session, cwd and environment, with its
    output in ``log``. Same interface as :class:`subprocess.Popen` for :func:`run_limited`.

    As with any multiprocessing forkserver, a *script* that calls :func:`autograde` needs the
    ``if __name__ == "__main__":`` guard (``python -m graders`` and pytest need nothing)."""

    _context = None

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        if _ForkedNbgrader._context is None:
            import multiprocessing

            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["nbgrader.apps.nbgraderapp", "graders.parallel"])
            _ForkedNbgrader._context = context
        self._proc = self._context.Process(
            target=_nbgrader_main, args=(argv, str(cwd), env, str(log)), daemon=False
        )
        self._proc.start()
        self.pid = self._proc.pid

    def poll(self) -> int | None:
        return None if self._proc.is_alive() else self._proc.exitcode

    def wait(self) -> int | None:
        self._proc.join()
        return self._proc.exitcode

    @property
    def returncode(self) -> int | None:
        return self._proc.exitcode


def _nbgrader_main(argv: list[str], cwd: str, env: dict[str, str], log: str) -> None:
    """The forked child: become ``nbgrader ARGV`` run in ``cwd`` with ``env``."""
    os.setsid()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    from nbgrader.apps.nbgraderapp import NbGraderApp

    sys.argv = ["nbgrader", *argv]
    NbGraderApp.launch_instance(argv=argv)


def run_limited(
    cmd: list[str],
    cwd: Path,
    env: dict[str, str],
    wall_s: float,
    memory_mb: float,
    log: Path,
    stop: Callable[[], bool] = lambda: False,
) -> Run:
    """Run ``cmd`` (its output to ``log``), killing it with all its descendants when it runs
    past ``wall_s`` seconds, its descendants (the kernel) hold more than ``memory_mb`` MiB, or
    ``stop()`` turns true."""
    start = time.monotonic()
    nbgrader = [sys.executable, "-m", "nbgrader"]
    if cmd[:3] == nbgrader and FORK_NBGRADER:
        popen = _ForkedNbgrader(cmd[3:], cwd, env, log)
    else:
        with log.open("wb") as out:
            popen = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
    root = psutil.Process(popen.pid)
    seen: dict[int, psutil.Process] = {}
    killed = None
    while popen.poll() is None:
        kids = _descendants(root)
        seen.update((p.pid, p) for p in kids)
        if time.monotonic() - start > wall_s:
            killed = TIMED_OUT, f"ran past the {wall_s:g} s notebook limit: killed"
        elif (used := _rss_mb(kids)) > memory_mb:
            killed = CRASHED, f"kernel used {used:.0f} MiB, over the {memory_mb:g} MiB limit"
        elif stop():
            killed = CRASHED, "grading was interrupted"
        if killed:
            kill_tree([*kids, root])
            popen.wait()
            break
        time.sleep(_POLL_S)
    kill_tree(p for p in seen.values() if p.is_running())  # kernels nbgrader left behind
    text = log.read_text(errors="replace")
    return Run(popen.returncode, text, killed, time.monotonic() - start)


def _one_line(err: object, limit: int = 160) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_TRACE_END = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Interrupt)): (.*)$", re.M)


def classify(run: Run, notebook_written: bool, refused: str = "") -> tuple[str, str]:
    """``(status, reason)`` of a finished nbgrader run, from how it ended and what it logged."""
    if run.killed:
        return run.killed
    if run.returncode == 0 and notebook_written:
        return GRADED, ""
    if refused:
        return REFUSED, refused
    log = run.log
    if "Timeout waiting for execute reply" in log or "CellTimeoutError" in log:
        return TIMED_OUT, "a cell ran past the per-cell limit and ignored the interrupt"
    if "DeadKernelError" in log or "Kernel died" in log:
        return CRASHED, "the kernel died (killed, e.g. out of memory, or it exited)"
    ends = _TRACE_END.findall(log)
    if ends:
        name, message = ends[-1]
        return CRASHED, _one_line(f"{name.rsplit('.', 1)[-1]}: {message}")
    errors = [line for line in log.splitlines() if "| ERROR]" in line]
    reason = errors[0].split("]", 1)[1] if errors else f"nbgrader exited {run.returncode}"
    return CRASHED, _one_line(reason)


# ---------------------------------------------------------------------------- one submission
@dataclass
class _Context:
    """What every worker needs, fixed for one batch."""

    course: Course
    scratch_root: Path
    templates: dict[str, Path]
    cell_timeout: int
    notebook_timeout: float
    memory_mb: int
    extra_args: list[str]
    extra_env: dict[str, str]
    stop: Callable[[], bool]


def autograde_command(ctx: _Context, job: Job, scratch: Path) -> list[str]:
    """The ``nbgrader autograde`` command line for ``job`` in its scratch course."""
    return [
        sys.executable,
        "-m",
        "nbgrader",
        "autograde",
        job.assignment,
        f"--student={job.student}",
        "--force",
        f"--CourseDirectory.root={scratch}",
        f"--CourseDirectory.db_url=sqlite:///{scratch / 'gradebook.db'}",
        f"--Execute.timeout={ctx.cell_timeout}",
        *ctx.extra_args,
    ]


def grade_in_scratch(ctx: _Context, job: Job, slot: Slot, refused: str = "") -> tuple[Result, Path]:
    """Grade ``job`` with the real ``nbgrader autograde`` in a private scratch course, with
    ``slot``'s threads and GPU; returns its result (no score yet) and the scratch course.

    A run that crashed on its own (not killed by a limit) is graded once more from scratch: on
    a busy machine a kernel can fail to start or answer in time, which is not the student's
    doing. A second crash is final (the reason says it happened twice).
    """
    scratch = ctx.scratch_root / f"{job.assignment}--{job.student}"
    seconds = 0.0
    for attempt in (1, 2):
        if attempt == 2:
            force_rmtree(scratch)
        prepare_scratch(ctx.course, job, ctx.templates[job.assignment], scratch)
        env = Course._env({**slot.env(), **ctx.extra_env})
        run = run_limited(
            autograde_command(ctx, job, scratch),
            scratch,
            env,
            ctx.notebook_timeout,
            ctx.memory_mb,
            scratch / "nbgrader.log",
            ctx.stop,
        )
        seconds += run.seconds
        written = (scratch / "autograded" / job.student / job.assignment).is_dir()
        status, reason = classify(run, written, refused)
        if status != CRASHED or run.killed or ctx.stop():
            break
    if attempt == 2 and status == CRASHED:
        reason = f"{reason} (crashed twice)"
    return Result(job.assignment, job.student, status, reason, seconds=seconds), scratch


def submission_scores(url: str, job: Job) -> tuple[float, float, list[str]] | None:
    """``(score, max_score, failed test cells)`` of ``job``'s submission in the gradebook at
    ``url``, or None if it has none."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(url) as gb:
        try:
            submission = gb.find_submission(job.assignment, job.student)
        except MissingEntry:
            return None
        score = max_score = 0.0
        failed = []
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                score += float(grade.score or 0)
                max_score += float(grade.max_score or 0)
                if grade.cell_type == "code" and (grade.score or 0) < grade.max_score:
                    failed.append(grade.name)
    return score, max_score, failed


def record(course: Course, result: Result, scratch: Path) -> None:
    """The parent's step (the only writer): copy the student's autograded folder and gradebook
    rows from the scratch course into the main course, and fill in the result's score.

    Like ``nbgrader autograde`` itself, a failed submission keeps nbgrader's row (score 0) and
    loses any autograded folder an earlier run left.
    """
    job = Job(result.assignment, result.student)
    private = f"sqlite:///{scratch / 'gradebook.db'}"
    if submission_scores(private, job) is not None:
        gradebook_sync.copy_submission(private, course.db_url, job.assignment, job.student)
    src = scratch / "autograded" / job.student / job.assignment
    dst = course.root / "autograded" / job.student / job.assignment
    force_rmtree(dst)
    if result.graded:
        shutil.copytree(src, dst)
    scores = submission_scores(course.db_url, job)
    if scores is not None:
        result.score, result.max_score, result.failed = scores


# ------------------------------------------------------------------------------- the batch
def _template_gradebooks(
    course: Course, assignments: Iterable[str], folder: Path
) -> tuple[dict[str, Path], dict[str, str]]:
    """Per assignment, a worker gradebook to copy for each job, or why none could be made."""
    templates, errors = {}, {}
    for assignment in dict.fromkeys(assignments):
        path = folder / f"{assignment}.template.db"
        try:
            gradebook_sync.make_worker_gradebook(course.db_url, path, assignment)
            templates[assignment] = path
        except Exception as err:  # not released, unreachable database, ...
            errors[assignment] = _one_line(f"no worker gradebook: {err}")
    return templates, errors


def _resolve(course: Course, settings: Settings) -> tuple[list[Slot], int, float, int]:
    cores = os.cpu_count() or 1
    gpus = gpu_ids()
    workers = settings.workers or default_workers(cores, len(gpus))
    cell = int(settings.cell_timeout or course_cell_timeout(course))
    wall = settings.notebook_timeout or NOTEBOOK_TIMEOUT_CELLS * cell
    memory = settings.memory_mb or default_memory_mb(workers)
    return make_slots(workers, cores, gpus), cell, wall, memory


def autograde(
    course: Course,
    jobs: Sequence[Job],
    settings: Settings | None = None,
    sandbox: SandboxPlan | None = None,
) -> list[Result]:
    """Grade ``jobs`` in parallel (see the module docstring); one :class:`Result` per job, in
    the order of ``jobs``. Never raises for a bad submission: its result says what happened."""
    from tqdm import tqdm

    settings = settings or Settings()
    sandbox = sandbox or plan_sandbox(settings.sandbox)
    slots, cell_timeout, wall, memory = _resolve(course, settings)
    scratch_root = Path(tempfile.mkdtemp(prefix="graders-autograde-"))
    stopping = threading.Event()
    results: dict[Job, Result] = {}
    try:
        templates, broken = _template_gradebooks(
            course, [j.assignment for j in jobs], scratch_root
        )
        args, env = sandbox_arguments(course, scratch_root, memory) if sandbox.active else ([], {})
        ctx = _Context(
            course, scratch_root, templates, cell_timeout, wall, memory, args, env, stopping.is_set
        )
        free: queue.Queue[Slot] = queue.Queue()
        for slot in slots:
            free.put(slot)

        def in_a_slot(job: Job, refused: str) -> tuple[Result, Path]:
            slot = free.get()
            try:
                return grade_in_scratch(ctx, job, slot, refused)
            finally:
                free.put(slot)

        bar = tqdm(total=len(jobs), desc="autograde", unit="nb", disable=not settings.progress)
        with bar, ThreadPoolExecutor(max_workers=len(slots)) as pool:
            futures = {}
            for job in jobs:
                pre = precheck(course, job)
                if job.assignment in broken:
                    results[job] = Result(*job_fields(job), CRASHED, broken[job.assignment])
                elif pre and pre[0] == MISSING:
                    results[job] = Result(*job_fields(job), *pre)
                else:
                    futures[pool.submit(in_a_slot, job, pre[1] if pre else "")] = job
            bar.update(len(results))
            try:
                for future in as_completed(futures):
                    job = futures[future]
                    results[job] = _finish(course, job, future, settings.keep_scratch)
                    bar.update()
            except KeyboardInterrupt:
                stopping.set()
                for future in futures:
                    future.cancel()
                raise
    finally:
        if not settings.keep_scratch:
            force_rmtree(scratch_root)
    return [results[job] for job in jobs]


def _finish(course: Course, job: Job, future, keep_scratch: bool) -> Result:
    """The parent's handling of one finished worker: record it, never let it raise."""
    try:
        result, scratch = future.result()
    except Exception as err:
        return Result(job.assignment, job.student, CRASHED, _one_line(f"grading failed: {err}"))
    try:
        record(course, result, scratch)
    except Exception as err:
        result.status = CRASHED
        result.reason = _one_line(f"could not record the grade: {err}")
    if not keep_scratch:
        force_rmtree(scratch)
    return result


# ----------------------------------------------------------------------------------- report
def format_table(results: Sequence[Result], note: str) -> str:
    """One line per submission (student, assignment, status, score, failed test cells, reason)
    under a header that says whether kernels were sandboxed."""
    rows = [("student", "assignment", "status", "score", "failed test cells", "reason")]
    for r in sorted(results, key=lambda r: (r.assignment, r.student)):
        score = "-" if r.score is None else f"{r.score:g} / {r.max_score:g}"
        failed = ", ".join(r.failed) if len(r.failed) <= 4 else f"{len(r.failed)} cells"
        rows.append((r.student, r.assignment, r.status, score, failed or "-", r.reason or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [f"# {note}"]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:5], widths, strict=True)]
        lines.append("  ".join([*cells, row[5]]))
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    lines.append("# " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines)


def warn_unsandboxed(note: str, stream=None) -> None:
    """Print the no-sandbox warning on stderr, in red on a terminal."""
    stream = stream or sys.stderr
    text = f"WARNING: {note}"
    if stream.isatty():
        text = f"\033[1;31m{text}\033[0m"
    print(text, file=stream)


# -------------------------------------------------------------------------- command line
def add_arguments(parser) -> None:
    """The ``autograde`` options (see ``python -m graders autograde --help``)."""
    parser.add_argument("--student", help="only this student")
    parser.add_argument(
        "--shard", help="only shard K of N (K/N): students split by a hash of their name"
    )
    parser.add_argument(
        "--workers",
        type=int,
        help=f"parallel notebooks (default: one per CPU core, {WORKERS_PER_GPU} per GPU if any)",
    )
    parser.add_argument(
        "--cell-timeout",
        type=int,
        help="seconds per cell, nbgrader's Execute.timeout (default: nbgrader_config.py's)",
    )
    parser.add_argument(
        "--notebook-timeout",
        type=float,
        help=f"wall-clock seconds per notebook (default: {NOTEBOOK_TIMEOUT_CELLS} x cell timeout)",
    )
    parser.add_argument(
        "--memory-mb",
        type=int,
        help="a kernel over this resident memory is killed (default: 80%% of RAM / workers)",
    )
    parser.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run student code without the bubblewrap sandbox (with your rights!)",
    )
    parser.add_argument("--db-url", help="main gradebook URL (default: sqlite:///<root>/gradebook.db)")


def settings_from_args(args) -> Settings:
    """:class:`Settings` from the parsed ``autograde`` options."""
    for name in ("workers", "cell_timeout", "notebook_timeout", "memory_mb"):
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be positive, not {value}")
    return Settings(
        workers=args.workers,
        cell_timeout=args.cell_timeout,
        notebook_timeout=args.notebook_timeout,
        memory_mb=args.memory_mb,
        sandbox=not args.no_sandbox,
    )


def grade_and_report(
    course: Course, jobs: Sequence[Job], settings: Settings, stream=None
) -> list[Result]:
    """Grade ``jobs`` with a progress bar, warn loudly when unsandboxed, print the table."""
    stream = stream or sys.stdout
    plan = plan_sandbox(settings.sandbox)
    if not plan.active:
        warn_unsandboxed(plan.note)
    results = autograde(course, jobs, settings, plan)
    print(format_table(results, plan.note), file=stream)
    if not plan.active:
        warn_unsandboxed(plan.note)
    return results
