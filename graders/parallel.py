"""Parallel, isolated batch autograding: ``python -m graders autograde``.

nbgrader grades one student after another, and its SQLite gradebook locks under concurrent
writers. Here **workers never write the main gradebook**: each (assignment, student) is graded
by the real ``nbgrader autograde <a> --student=<s>`` in a *private scratch course* (a copy of
``nbgrader_config.py``, ``source/<a>/`` without ``grading/``, the student's submission and a
private SQLite gradebook holding only the assignment's definition), run under limits by
:mod:`graders.runner`. The parent process alone then copies the autograded folder into the main
course and that student's rows, flags and status into the main gradebook in one transaction
(:func:`graders.merge.record_submission`, which fills in the grade), one submission at a time.

Each submission ends with a :class:`~graders.gradebook.SubmissionGrade`: a status of
:mod:`graders.status` with a one-line reason, and the scores. A submission nbgrader started on
keeps the gradebook row nbgrader made (score 0 when it failed); nothing about one submission
ever touches another student's rows or files.

Kernels run in a bubblewrap sandbox (:mod:`graders.sandbox`) when it is available: the course,
the repository and the scratch course are hidden, except the notebook's own folder, and the
virtual environment and ``src/`` are read-only. Without it student code runs with the
instructor's rights, and every report says so loudly. Sandboxed, a worker that begins a
submission also starts the next one's kernel (:mod:`graders.prestart`), which that submission's
grading run adopts: a free worker takes the first waiting submission whose kernel a worker of
its kind started (the same GPU, or the CPU).

On a machine with GPUs, ``gpu_workers`` of the workers grade on them (default: as many
notebooks as their memory holds, :mod:`graders.resources`) and the others on the CPU with CUDA
hidden; a notebook whose GPU ran out of memory is graded once more on the CPU.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import nbformat

from graders import gradebook, merge, partial, prestart, runner, shards, submitted
from graders.course import GRADING_FOLDER, REPO_ROOT, Course, nbgrader_env
from graders.gradebook import SubmissionGrade
from graders.resources import (
    Slot,
    default_gpu_workers,
    default_memory_mb,
    default_workers,
    gpu_ids,
    gpu_memory_mib,
    make_slots,
    out_of_gpu_memory,
    usable_cores,
)
from graders.runner import Limits, one_line
from graders.status import (
    CRASHED,
    FLAGGED,
    GRADED,
    MISSING,
    REFUSED,
    TIMED_OUT,
)
from graders.verdict.execute import ENV_PROGRESS

__all__ = ["CRASHED", "FLAGGED", "GRADED", "MISSING", "REFUSED", "TIMED_OUT", "Job", "Settings",
           "Slot", "autograde", "select_jobs"]

#: The reason's note on a submission graded again on the CPU after the GPU ran out of memory.
GPU_RETRY = "graded again on the CPU: the shared GPU ran out of memory"
#: Notebook wall-clock limit, as a multiple of the per-cell limit, unless given.
NOTEBOOK_TIMEOUT_CELLS = 3
#: Per-cell limit of nbclient when the course configuration sets none.
NBCLIENT_DEFAULT_CELL_TIMEOUT = 30.0
#: Defaults of the process and disk limits (``--max-processes``, ``--disk-mb``).
MAX_PROCESSES = 256
DISK_MB = 512
#: The sandbox reads the disk limit from here (the size of the kernel's writable tmpfs).
ENV_DISK_MB = "GRADERS_SANDBOX_DISK_MB"


# ------------------------------------------------------------------------------ data types
@dataclass(frozen=True)
class Job:
    """One student's submission of one assignment."""

    assignment: str
    student: str

    def grade(self, status: str, reason: str = "", **kwargs: object) -> SubmissionGrade:
        """A grade of this submission with no gradebook row (yet)."""
        return SubmissionGrade(
            self.assignment, self.student, status, reason, in_gradebook=False, **kwargs
        )


@dataclass
class Settings:
    """How to grade: pool size, limits, sandbox.

    ``workers`` None is one per usable core; ``gpu_workers`` (on a machine with GPUs) how many
    of them grade on the GPUs, the others on the CPU, None: as many as the GPUs' memory holds
    (:func:`graders.resources.default_gpu_workers`). ``cell_timeout`` None keeps the course's
    ``Execute.timeout``; ``notebook_timeout`` None is :data:`NOTEBOOK_TIMEOUT_CELLS` times the
    per-cell limit; ``memory_mb`` None is an equal share of 80% of the machine's memory per
    worker. ``max_processes`` and ``disk_mb`` bound each grading run's process tree and its
    sandbox's disk (see :mod:`graders.runner`).
    """

    workers: int | None = None
    gpu_workers: int | None = None
    cell_timeout: float | None = None
    notebook_timeout: float | None = None
    memory_mb: int | None = None
    max_processes: int = MAX_PROCESSES
    disk_mb: int = DISK_MB
    sandbox: bool = True
    progress: bool = True
    keep_scratch: bool = False
    prestart: bool = True


# ------------------------------------------------------------------------------ selection
def select_jobs(
    course: Course,
    assignments: Iterable[str],
    students: Iterable[str] | None = None,
    shard: tuple[int, int] | None = None,
) -> list[Job]:
    """The submissions to grade: every (assignment, student) with a folder in ``submitted/``
    (or the ``students`` given), restricted to shard ``(k, n)`` if given."""
    chosen = list(students) if students is not None else course.submitted_students()
    if shard is not None:
        chosen = shards.select_shard(chosen, *shard)
    return [Job(a, s) for a in assignments for s in chosen]


def precheck(course: Course, job: Job) -> tuple[str, str] | None:
    """``(status, reason)`` for a submission nbgrader cannot grade (missing or not a
    notebook), else None."""
    path = course.submission_path(job.student, job.assignment)
    problem = submitted.notebook_problem(path)
    if problem:
        return REFUSED, problem
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
        return REFUSED, f"not a notebook: {one_line(err)}"
    return None


# ----------------------------------------------------------------------------- scratch course
def in_scratch(course: Course, scratch: Path, step: str, student: str, assignment: str) -> Path:
    """The scratch course's folder of a step: the course's own layout (its configuration is
    copied along), rooted at ``scratch``."""
    return scratch / course.folder(step, student, assignment).relative_to(course.root)


def prepare_scratch(course: Course, job: Job, template_db: Path, scratch: Path) -> Path:
    """A private course at ``scratch`` for grading ``job``: config, ``source/<a>/``, the
    submission and a copy of ``template_db`` (the assignment's definition only)."""
    scratch.mkdir(parents=True)
    shutil.copy2(course.config_file, scratch / "nbgrader_config.py")
    shutil.copytree(
        course.folder("source", ".", job.assignment),
        in_scratch(course, scratch, "source", ".", job.assignment),
        ignore=shutil.ignore_patterns(*course.settings.ignore, GRADING_FOLDER),
    )
    submitted.copy_folder(  # without links and special files
        course.submission_path(job.student, job.assignment).parent,
        in_scratch(course, scratch, "submitted", job.student, job.assignment),
    )
    shutil.copy2(template_db, scratch / "gradebook.db")
    return scratch


def _past_start(ended: threading.Event, progress_file: Path,
                on_past: Callable[[], None] = lambda: None) -> bool:
    """Whether a grading run is over or past its start (its kernel and agent answer); once it
    is, ``on_past()`` is called first."""
    past = ended.is_set() or partial.Progress.read(progress_file).begun
    if past:
        on_past()
    return past


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
    course: Course, scratch_root: Path, limits: Limits
) -> tuple[list[str], dict[str, str]]:
    """nbgrader arguments and environment that run the kernels in the sandbox: the course, the
    repository and all scratch courses hidden, the interpreter and ``src/`` read-only; the
    address space, processes and disk limited (the disk as the sandbox's ``disk_mb``, or
    ``tmp_mb`` in a sandbox without it, and as :data:`ENV_DISK_MB`)."""
    import dataclasses

    from graders import sandbox
    from graders.sandbox_env import ENV_RUN_ROOT

    hide = list(dict.fromkeys([course.root, REPO_ROOT, scratch_root]))
    readonly = [Path(sys.prefix).resolve(), REPO_ROOT / "src"]
    wanted = {
        "memory_mb": address_space_mb(int(limits.memory_mb)),
        "max_processes": limits.max_processes,
        "tmp_mb": limits.disk_mb,
        "disk_mb": limits.disk_mb,
    }
    known = {f.name for f in dataclasses.fields(sandbox.Limits)}
    sandbox_limits = sandbox.Limits(
        **{k: v for k, v in wanted.items() if k in known and v is not None}
    )
    args, env = sandbox.sandbox_settings(hide, readonly, sandbox_limits)
    env[ENV_RUN_ROOT] = str(scratch_root / "kernels")
    if limits.disk_mb is not None:
        env[ENV_DISK_MB] = str(limits.disk_mb)
    return args, env


def kernel_arguments(
    plan: SandboxPlan, course: Course, scratch_root: Path, limits: Limits
) -> tuple[list[str], dict[str, str]]:
    """The one place where the batch decides how nbgrader runs the kernels: sandboxed (see
    :func:`sandbox_arguments`) or, when the plan says so, explicitly not (the course's executor,
    ``VerdictExecute``, otherwise sandboxes whenever it can)."""
    if plan.active:
        return sandbox_arguments(course, scratch_root, limits)
    return ["--VerdictExecute.sandbox=off"], {}


def address_space_mb(memory_mb: int) -> int:
    """The sandbox's hard address-space cap behind the ``memory_mb`` watchdog: twice the limit
    plus 2 GiB, so that libraries' virtual reservations fit and the watchdog (which kills the
    kernel: status crashed) acts first, while a bomb faster than its polling still stops."""
    return 2 * memory_mb + 2048


# ---------------------------------------------------------------------------- one submission
@dataclass
class _Context:
    """What every worker needs, fixed for one batch."""

    course: Course
    scratch_root: Path
    templates: dict[str, Path]
    orders: dict[str, list[str] | None]
    timeouts: dict[str, int]  # per-cell limit, per assignment
    limits: dict[str, Limits]  # per assignment
    extra_args: list[str]
    extra_env: dict[str, str]
    stop: Callable[[], bool]
    ahead: prestart.Ahead | None = None


def autograde_command(ctx: _Context, job: Job, scratch: Path) -> list[str]:
    """The ``nbgrader autograde`` command line for ``job`` in its scratch course (how the
    kernels run comes in ``ctx.extra_args``, from :func:`kernel_arguments`)."""
    return [
        *runner.NBGRADER,
        "autograde",
        job.assignment,
        f"--student={job.student}",
        "--force",
        f"--CourseDirectory.root={scratch}",
        f"--CourseDirectory.db_url=sqlite:///{scratch / 'gradebook.db'}",
        f"--Execute.timeout={ctx.timeouts[job.assignment]}",
        *ctx.extra_args,
    ]


def worker_env(ctx: _Context, slot: Slot) -> dict[str, str]:
    """The environment of the nbgrader processes ``slot``'s worker runs."""
    return nbgrader_env({**slot.env(), **ctx.extra_env})


def grade_in_scratch(
    ctx: _Context, job: Job, slot: Slot, refused: str = ""
) -> tuple[SubmissionGrade, Path]:
    """Grade ``job`` with the real ``nbgrader autograde`` in a private scratch course, with
    ``slot``'s threads and GPU; returns its grade (status, no scores yet) and the scratch course.

    A run on a GPU whose notebook shows the GPU out of memory (other students' notebooks share
    it, and one of them may take it all) is graded once more on the CPU, the platform the
    thresholds are calibrated on; its reason says so (:data:`GPU_RETRY`).

    A run that stopped early keeps the points of the test cells that completed
    (:mod:`graders.partial`: ``timed out (partial)``, ``crashed (partial)``). A run is graded
    once more from scratch when it crashed on its own (not killed by a limit: on a busy machine
    a kernel can fail to start or answer in time, which is not the student's doing), or when a
    cell ran past its limit while the machine was busy (load above its cores): the second
    result is final (the reason says it happened twice).
    """
    scratch = ctx.scratch_root / f"{job.assignment}--{job.student}"
    seconds = 0.0
    env = worker_env(ctx, slot)
    run_env, on_cpu = env, False
    first, first_points = "", {}  # how the first of two runs ended, what it earned
    for attempt in (1, 2):
        if attempt == 2:
            force_rmtree(scratch)
        prepare_scratch(ctx.course, job, ctx.templates[job.assignment], scratch)
        progress_file = scratch / "progress.jsonl"
        # the kernel started ahead for this job (first attempt only), then the next job's
        kernel = ctx.ahead.take(job, env) if ctx.ahead and attempt == 1 else None
        ended = threading.Event()
        if ctx.ahead:  # once this run is past its own start (or over)
            # its grading process wrote its kernel's environment before starting the kernel:
            # learnt then, the batch's second kernel can already be started ahead
            learn = functools.partial(ctx.ahead.learn, env,
                                      progress_file.with_name(prestart.ENVIRONMENT))
            past_start = functools.partial(_past_start, ended, progress_file, learn)
            ctx.ahead.start_next_soon(env, after=past_start)
        offer = {prestart.ENV_PRESTARTED: str(kernel.record)} if kernel else {}
        try:
            run = runner.run_limited(
                autograde_command(ctx, job, scratch),
                scratch,
                {**run_env, ENV_PROGRESS: str(progress_file), **offer},
                ctx.limits[job.assignment],
                scratch / "nbgrader.log",
                ctx.stop,
                watch=[kernel.pid] if kernel else (),
            )
        finally:
            ended.set()
            if kernel:
                kernel.discard()
        if ctx.ahead:  # had the launcher given up waiting before the run began
            learn()
        seconds += run.seconds
        out = in_scratch(ctx.course, scratch, "autograded", job.student, job.assignment)
        # nbgrader writes the notebook twice: sanitized before it runs, graded after; only a
        # run that exited 0 saved its grades
        written = out.is_dir()
        saved = written and run.returncode == 0
        status, reason = runner.classify(run, written, refused)
        progress = partial.Progress.read(progress_file)
        status, reason = partial.outcome(status, reason, progress, run.killed is not None)
        if ctx.stop():
            break
        if attempt == 1 and slot.gpu and out_of_gpu_memory(out):  # ran on a GPU
            run_env, on_cpu = {**env, "CUDA_VISIBLE_DEVICES": ""}, True
            continue
        if not partial.worth_again(status, run.killed is not None, progress):
            break
        first = f"the first {status}: {reason}" if reason else f"the first {status}"
        first_points = dict(progress.points)
    if on_cpu:
        reason = "; ".join(filter(None, [reason, GPU_RETRY]))
    elif attempt == 2 and status not in (GRADED, FLAGGED):
        reason = f"{reason} (happened twice)"
    elif attempt == 2:  # the grade says it comes from a second run, and why
        reason = "; ".join(filter(None, [reason, f"graded on a second run ({first})"]))
    grade = job.grade(status, reason, seconds=seconds)
    if partial.is_partial(status) and not saved:  # nbgrader saved nothing: we keep the points
        grade.partial_points = progress.points
    capped = partial.no_better_than(first_points, grade.partial_points or progress.points)
    if attempt == 2 and capped != (grade.partial_points or progress.points):
        grade.partial_points = capped  # a second run does not better the first's test cells
    return grade, scratch


def record(
    course: Course, result: SubmissionGrade, scratch: Path, order: Sequence[str] | None = None
) -> None:
    """The parent's step (the only writer): copy the student's gradebook rows, the scan's flags
    and the status into the main gradebook (one read of the worker gradebook, one transaction
    in the main one: :func:`graders.merge.record_submission`, which fills in ``result``'s
    cells and flags), and the autograded folder into the main course.

    Like ``nbgrader autograde`` itself, a failed submission keeps nbgrader's row (score 0) and
    loses any autograded folder an earlier run left.
    """
    a, student = result.assignment, result.student
    private = f"sqlite:///{scratch / 'gradebook.db'}"
    if result.partial_points is not None:  # stopped before nbgrader saved anything
        with contextlib.suppress(Exception):
            gradebook.set_auto_scores(private, a, student, result.partial_points)
    # what to review (left out, put back, the static scan's findings): graded as usual, flagged
    path = course.submission_path(student, a)
    merge.record_submission(
        private, course.db_url, result, lambda: submitted.flags(path, course.source_path(a)),
        order)
    src = in_scratch(course, scratch, "autograded", student, a)
    dst = course.folder("autograded", student, a)
    force_rmtree(dst)
    if result.graded and src.is_dir():
        shutil.copytree(src, dst)


# ------------------------------------------------------------------------------- the batch
def _template_gradebooks(
    course: Course, assignments: Iterable[str], folder: Path
) -> tuple[dict[str, Path], dict[str, str]]:
    """Per assignment, a worker gradebook to copy for each job, or why none could be made."""
    templates, errors = {}, {}
    for assignment in dict.fromkeys(assignments):
        path = folder / f"{assignment}.template.db"
        try:
            merge.make_worker_gradebook(course.db_url, path, assignment)
            templates[assignment] = path
        except Exception as err:  # not released, unreachable database, ...
            errors[assignment] = one_line(f"no worker gradebook: {err}")
    return templates, errors


def resolve(
    course: Course, settings: Settings, assignments: Sequence[str] = ()
) -> tuple[list[Slot], dict[str, int], dict[str, Limits]]:
    """The slots, and per assignment the per-cell timeout and the limits, of a batch.

    The per-cell timeout is ``settings.cell_timeout`` when given, else the assignment's
    ``cell_timeout_s`` (``grading/calibration.toml``: its longest cell as measured, with a
    stated margin), else the course's ``Execute.timeout``; the notebook's wall-clock limit is
    ``settings.notebook_timeout`` or :data:`NOTEBOOK_TIMEOUT_CELLS` times the cell timeout."""
    cores = usable_cores()
    gpus = gpu_ids()
    workers = settings.workers or default_workers(cores)
    on_gpu = settings.gpu_workers
    if gpus and on_gpu is None:
        on_gpu = default_gpu_workers(workers, gpu_memory_mib(gpus))
    memory = settings.memory_mb or default_memory_mb(workers)
    timeouts, limits = {}, {}
    for a in assignments:
        measured = course.grading_file(a, "calibration").get("cell_timeout_s")
        cell = int(settings.cell_timeout or measured or course.settings.cell_timeout
                   or NBCLIENT_DEFAULT_CELL_TIMEOUT)
        timeouts[a] = cell
        limits[a] = Limits(
            wall_s=settings.notebook_timeout or NOTEBOOK_TIMEOUT_CELLS * cell,
            memory_mb=memory,
            max_processes=settings.max_processes,
            disk_mb=settings.disk_mb,
        )
    return make_slots(workers, cores, gpus, on_gpu), timeouts, limits


def autograde(
    course: Course,
    jobs: Sequence[Job],
    settings: Settings | None = None,
    sandbox: SandboxPlan | None = None,
) -> list[SubmissionGrade]:
    """Grade ``jobs`` in parallel (see the module docstring); one grade per job, in the order
    of ``jobs``. Never raises for a bad submission: its grade's status says what happened."""
    from tqdm import tqdm

    settings = settings or Settings()
    sandbox = sandbox or plan_sandbox(settings.sandbox)
    assignments = list(dict.fromkeys(j.assignment for j in jobs))
    slots, timeouts, limits = resolve(course, settings, assignments)
    scratch_root = Path(tempfile.mkdtemp(prefix="graders-autograde-"))
    stopping = threading.Event()
    results: dict[Job, SubmissionGrade] = {}
    ahead = None
    try:
        templates, broken = _template_gradebooks(course, assignments, scratch_root)
        # memory, processes and disk are the same for every assignment; only times differ
        shared = next(iter(limits.values()), Limits(wall_s=0, memory_mb=0))
        args, env = kernel_arguments(sandbox, course, scratch_root, shared)
        orders = {a: course.cell_order(a) for a in assignments}
        if sandbox.active and settings.prestart:
            ahead = prestart.Ahead(prestart.course_plan(course, scratch_root), len(slots))
        ctx = _Context(
            course, scratch_root, templates, orders, timeouts, limits, args, env,
            stopping.is_set, ahead,
        )
        free: queue.Queue[Slot] = queue.Queue()
        for slot in slots:
            free.put(slot)

        # Jobs waiting for a worker, in order. A worker takes the first one whose kernel was
        # started ahead by a worker of its kind (same GPU or the CPU), so none is discarded
        # for the wrong device (Ahead.pick); without kernels ahead, simply the first.
        waiting: list[tuple[Job, str]] = []
        lock = threading.Lock()

        def in_a_slot() -> tuple[Job, tuple[SubmissionGrade, Path] | BaseException]:
            slot = free.get()
            try:
                with lock:
                    at = 0
                    if ahead:
                        with contextlib.suppress(Exception):  # a preference, never a failure
                            at = ahead.pick([j for j, _ in waiting], worker_env(ctx, slot))
                    job, refused = waiting.pop(at if 0 <= at < len(waiting) else 0)
                try:
                    return job, grade_in_scratch(ctx, job, slot, refused)
                except Exception as err:  # noqa: BLE001 (recorded as this job's crash)
                    return job, err
            finally:
                free.put(slot)

        bar = tqdm(total=len(jobs), desc="autograde", unit="nb", disable=not settings.progress)
        with bar, ThreadPoolExecutor(max_workers=len(slots)) as pool:
            futures = []
            for job in jobs:
                pre = precheck(course, job)
                if job.assignment in broken:
                    results[job] = job.grade(CRASHED, broken[job.assignment])
                elif pre and pre[0] == MISSING:
                    results[job] = job.grade(*pre)
                else:
                    if ahead and not pre:  # queued in this order; refused ones start no kernel
                        ahead.expect(job)
                    with lock:
                        waiting.append((job, pre[1] if pre else ""))
                    futures.append(pool.submit(in_a_slot))
            bar.update(len(results))
            try:
                for future in as_completed(futures):
                    job, outcome = future.result()
                    results[job] = _finish(ctx, job, outcome, settings.keep_scratch)
                    bar.update()
            except KeyboardInterrupt:
                stopping.set()
                for future in futures:
                    future.cancel()
                raise
    finally:
        if ahead:
            ahead.close()
        if not settings.keep_scratch:
            force_rmtree(scratch_root)
    return [results[job] for job in jobs]


def _finish(
    ctx: _Context, job: Job, outcome: tuple[SubmissionGrade, Path] | BaseException,
    keep_scratch: bool,
) -> SubmissionGrade:
    """The parent's handling of one finished worker: record it, never let it raise."""
    if isinstance(outcome, BaseException):
        return job.grade(CRASHED, one_line(f"grading failed: {outcome}"))
    result, scratch = outcome
    try:
        record(ctx.course, result, scratch, ctx.orders.get(job.assignment))
    except Exception as err:
        result.status = CRASHED
        result.reason = one_line(f"could not record the grade: {err}")
    if not keep_scratch:
        force_rmtree(scratch)
    return result
