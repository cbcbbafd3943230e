"""Benchmark: grade a whole synthetic class as an instructor would (``make bench-class``).

Usage: python scripts/bench_class.py [--students 200] [--assignments A ...] [--workers W]
       [--serial 5] [--out docs/benchmarks/class.md] [--note TEXT] [--no-prestart]
       [--gpu-workers G] [--sweep 16,16/8,16/4 [--sweep-assignment A] [--sweep-students 16]]
       [--scores grades.csv] [--compare other-grades.csv]

A scratch course is released; every assignment gets ``--students`` submissions (students
``s000``, ``s001``, ...), a realistic mix in a fixed pattern of 20 (:data:`PATTERN`): 15%
the reference, 20% alternatives and 35% mutants of ``source/<a>/grading/mutations.toml``
(every one, in turn), 10% partial, 10% untouched stubs, 5% tampered or corrupt
(``tamper-edit``, ``tamper-delete``, ``corrupt``) and 5% hostile (``hide-errors``,
``patch-helpers``, ``read-back``, ``snoop``, ``network``). Left out, because each costs a whole
limit rather than a notebook: ``endless`` (ignores the interrupt: the notebook's wall-clock
limit, 3 x the cell limit), ``membomb`` (allocates up to the memory limit), ``diskfill`` (waits
for the watchdog) and ``escape`` (writes files outside its folder when unsandboxed).

Each assignment is graded as one batch by :func:`graders.parallel.autograde`, exactly what
``python -m graders autograde <a>`` does (default workers unless ``--workers``), while CPU load
(psutil), the load average and, when ``nvidia-smi`` works, GPU load and memory are sampled every
second. Right after each batch, a sample of ``--serial`` notebooks of that assignment (the first
students of the class that are not hostile, tampered or corrupt) is graded by one plain serial
``nbgrader autograde <a>`` in a fresh copy of the course, the comparison an instructor without
this tool has, and its scores are compared with the tool's.

``--sweep`` first grades the same ``--sweep-students`` notebooks of one assignment once per
worker count, ``W/G`` for W workers of which G on the GPU and the others on the CPU (on a GPU
machine: how many notebooks share the GPU before throughput stops rising; the largest GPU
memory of one process and how many were on the GPU at once come from ``nvidia-smi``).
``--scores`` writes every grade (status and score) to a CSV; ``--compare`` reads another run's
(the same class graded on another machine, the CPU) and says whether every grade is the same.

Per notebook, the split comes from what the batch measures anyway: the grading process's
seconds (:class:`graders.runner.Run`), the executor's progress file (``GRADERS_PROGRESS``:
seconds of every cell, and the time of each phase: executor begins, kernel answers, agent
installed, last cell done) and the tool's own steps around it:

- *nbgrader start*: from the grading process's start to the executor's first step (the forked
  nbgrader's set-up, the gradebook, copying and sanitising the submission);
- *kernel start + agent*: starting the sandboxed kernel and installing the grading agent in it;
- *imports*: the read-only ``setup`` cell (torch, numpy, the course package);
- *student cells*: every other cell that is not a test (the student's code, training included);
- *test cells*: the test cells, run on the trusted side (they call the student's functions);
- *nbgrader saves + exit*: from the last cell's end to the process's exit (kernel shutdown,
  gradebook, notebook);
- *tool*: the scratch course before, the merge into the gradebook and the static scan after;
- *overhead*: everything but the notebook's cells (starts + saves + tool).

Per-notebook times are measured inside the batch, so they include the waiting that running
``--workers`` notebooks at once on these cores brings. Appends a dated section (machine, load,
class, figures) to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from graders import mutations, notebooks, parallel, resources, runner, samples  # noqa: E402
from graders.course import Course  # noqa: E402
from graders.status import counts_line  # noqa: E402
from graders.verdict.execute import ENV_PROGRESS, ProgressLog  # noqa: E402

#: One class of 20: which kind of submission student ``i`` hands in is PATTERN[i % 20].
PATTERN = ("ref", "mutant", "alternative", "partial", "mutant", "stub", "alternative", "mutant",
           "ref", "hostile", "mutant", "alternative", "partial", "mutant", "tampered", "ref",
           "mutant", "stub", "alternative", "mutant")
HOSTILE = ("hide-errors", "patch-helpers", "read-back", "snoop", "network")
TAMPERED = ("tamper-edit", "tamper-delete", "corrupt")
LEFT_OUT = "endless, membomb, diskfill, escape"
NOT_IN_SERIAL = {"hostile", "tampered"}
THREAD_VARS = resources.THREAD_VARS
SETUP_CELL = "setup"


# ------------------------------------------------------------------------------- the class
def pools(course: Course, assignment: str) -> dict[str, list[tuple[str, object]]]:
    """Per kind of :data:`PATTERN`, the (label, notebook) submissions to hand in, in turn."""
    source = notebooks.read(course.source_path(assignment))
    release = notebooks.read(course.release_path(assignment))
    built = {s.student: s.notebook for s in samples.build(course, assignment, mutants=False)}
    hostile = {s.student: s.notebook for s in samples.hostile_samples(course, assignment)}
    hostile.update((s.student, s.notebook) for s in samples.adversarial(
        course, assignment, escape=False, disk=False) if s.student in HOSTILE)
    variants = mutations.load(assignment, course)

    def applied(kind: str) -> list[tuple[str, object]]:
        return [(f"{kind[:3]}:{v.name}", notebooks.solved(source, release, mutations=[v.mutation]))
                for v in variants if v.kind == kind]

    found = {
        "ref": [("ref", built["ref"])],
        "stub": [("stub", built["stub"])],
        "partial": [("partial", built["partial"])],
        "mutant": applied("mutant"),
        "alternative": applied("alternative") or [("ref", built["ref"])],
        "tampered": [(name, built[name]) for name in TAMPERED],
        "hostile": [(name, hostile[name]) for name in HOSTILE],
    }
    assert found["mutant"], f"{assignment}: no mutants in grading/mutations.toml"
    return found


def hand_in(course: Course, assignment: str, students: int) -> dict[str, tuple[str, str]]:
    """Submit ``students`` notebooks of ``assignment``; student -> (kind, label)."""
    available = pools(course, assignment)
    taken: Counter[str] = Counter()
    who = {}
    for i in range(students):
        kind = PATTERN[i % len(PATTERN)]
        label, nb = available[kind][taken[kind] % len(available[kind])]
        taken[kind] += 1
        student = f"s{i:03d}"
        course.submit(student, assignment, nb)
        who[student] = (kind, label)
    return who


# ------------------------------------------------------------------------------ measuring
@dataclass
class RunTiming:
    """One grading process: wall-clock start and end, the runner's seconds, the progress file."""

    start: float
    end: float
    seconds: float
    events: list[dict]
    last_write: float | None


@dataclass
class Split:
    """Seconds of one notebook, by where they went (see the module docstring)."""

    run: float = 0.0
    start: float = 0.0  # nbgrader + kernel
    nbgrader: float = 0.0
    kernel: float = 0.0
    imports: float = 0.0
    student: float = 0.0
    tests: float = 0.0
    saves: float = 0.0
    tool: float = 0.0
    cold: int = 0  # runs whose kernel started in the run, not ahead (graders.prestart)

    @property
    def overhead(self) -> float:
        return self.start + self.saves + self.tool


@dataclass
class Timings:
    """What the batch's own functions measured, collected by wrapping them (see :meth:`hooks`)."""

    runs: dict[str, list[RunTiming]] = field(default_factory=lambda: defaultdict(list))
    tool: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hooks(self) -> list[tuple[object, str, object]]:
        """(module, name, wrapper) for the grading process, the scratch course and the merge."""
        run_limited, prepare, record = (runner.run_limited, parallel.prepare_scratch,
                                        parallel.record)

        def timed_run(cmd, cwd, env, limits, log, stop=lambda: False, **kwargs):
            start = time.time()
            run = run_limited(cmd, cwd, env, limits, log, stop, **kwargs)
            end = time.time()
            path = Path(env.get(ENV_PROGRESS, "") or os.devnull)
            last = path.stat().st_mtime if path.is_file() else None
            timing = RunTiming(start, end, run.seconds, ProgressLog.read(path), last)
            with self.lock:
                self.runs[Path(cwd).name].append(timing)
            return run

        def timed_prepare(course, job, template_db, scratch):
            start = time.perf_counter()
            try:
                return prepare(course, job, template_db, scratch)
            finally:
                self._add_tool(f"{job.assignment}--{job.student}", start)

        def timed_record(course, result, scratch, order=None):
            start = time.perf_counter()
            try:
                return record(course, result, scratch, order)
            finally:
                self._add_tool(f"{result.assignment}--{result.student}", start)

        return [(runner, "run_limited", timed_run), (parallel, "prepare_scratch", timed_prepare),
                (parallel, "record", timed_record)]

    def heaviest_cells(self, assignment: str, most: int = 6) -> list[tuple[str, str, float]]:
        """The ``most`` cells of ``assignment`` with the largest mean seconds over the runs that
        reached them: (label, "test" or "cell", mean seconds), heaviest first."""
        seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
        prefix = f"{assignment}--"
        for key, runs in self.runs.items():
            if not key.startswith(prefix):
                continue
            for t in runs:
                for e in t.events:
                    if "seconds" not in e:
                        continue
                    if "test" in e:
                        seconds[(str(e["test"]), "test")].append(float(e["seconds"]))
                    elif "done" in e:
                        seconds[(str(e["done"]), "cell")].append(float(e["seconds"]))
        means = [(label, kind, statistics.mean(v)) for (label, kind), v in seconds.items()]
        return sorted(means, key=lambda m: -m[2])[:most]

    def _add_tool(self, key: str, start: float) -> None:
        with self.lock:
            self.tool[key] += time.perf_counter() - start

    def split(self, assignment: str, student: str) -> Split | None:
        """Where the seconds of one notebook went (None when it never ran)."""
        key = f"{assignment}--{student}"
        if key not in self.runs:
            return None
        out = Split(tool=self.tool.get(key, 0.0))
        for t in self.runs[key]:  # a run graded once more counts twice
            done = [e for e in t.events if "done" in e]
            setup = sum(e["seconds"] for e in done if e["done"] == SETUP_CELL)
            cells = sum(e["seconds"] for e in done)
            tests = sum(e.get("seconds", 0.0) for e in t.events if "test" in e)
            phases = {e["phase"]: e["t"] for e in t.events if "phase" in e and "t" in e}
            out.run += t.seconds
            out.imports += setup
            out.student += cells - setup
            out.tests += tests
            kernel = [e for e in t.events if e.get("phase") == "kernel"]
            out.cold += sum(not e.get("adopted") for e in kernel)
            if {"begin", "agent", "end"} <= phases.keys():  # the executor marked its phases
                out.nbgrader += max(0.0, phases["begin"] - t.start)
                out.kernel += max(0.0, phases["agent"] - phases["begin"])
                out.saves += max(0.0, t.end - phases["end"])
                out.start += max(0.0, phases["agent"] - t.start)
            elif t.last_write is None:  # stopped before any cell (refused, killed at start)
                out.start += t.seconds
            else:
                first_cell = t.last_write - cells - tests
                out.start += max(0.0, first_cell - t.start)
                out.saves += max(0.0, t.end - t.last_write)
        return out


class Patched:
    """Install :meth:`Timings.hooks` for the ``with`` block."""

    def __init__(self, timings: Timings) -> None:
        self.hooks = timings.hooks()
        self.saved: list[tuple[object, str, object]] = []

    def __enter__(self) -> Patched:
        for module, name, wrapper in self.hooks:
            self.saved.append((module, name, getattr(module, name)))
            setattr(module, name, wrapper)
        return self

    def __exit__(self, *exc: object) -> None:
        for module, name, original in self.saved:
            setattr(module, name, original)


def gpu_names() -> list[str]:
    """Names of the GPUs nvidia-smi lists (none without a driver)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


class Sampler(threading.Thread):
    """CPU utilisation (all cores), the 1-minute load average and, with GPUs, their utilisation
    and memory, every ``interval``; ``load_before``: the load average when it started."""

    def __init__(self, gpus: bool, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.gpus, self.interval = gpus, interval
        self.cpu: list[float] = []
        self.load: list[float] = []
        self.load_before = os.getloadavg()[0]
        self.gpu: list[float] = []
        self.gpu_mib: list[float] = []
        self.process_mib: list[float] = []  # the largest one process held, per sample
        self.processes: list[int] = []  # processes on the GPUs, per sample
        self.done = threading.Event()

    def run(self) -> None:
        psutil.cpu_percent(interval=None)
        while not self.done.wait(self.interval):
            self.cpu.append(psutil.cpu_percent(interval=None))
            self.load.append(os.getloadavg()[0])
            if self.gpus:
                self._sample_gpus()

    def _sample_gpus(self) -> None:
        cmd = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
               "--format=csv,noheader,nounits"]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
            values = [[float(x) for x in line.split(",")] for line in out.splitlines() if line]
        except (OSError, subprocess.SubprocessError, ValueError):
            return
        if values:
            self.gpu.append(statistics.mean(v[0] for v in values))
            self.gpu_mib.append(sum(v[1] for v in values))
        apps = ["nvidia-smi", "--query-compute-apps=used_memory", "--format=csv,noheader,nounits"]
        try:
            out = subprocess.run(apps, capture_output=True, text=True, timeout=10).stdout
            used = [float(line) for line in out.split() if line.strip()]
        except (OSError, subprocess.SubprocessError, ValueError):
            return
        self.processes.append(len(used))
        if used:
            self.process_mib.append(max(used))

    def stop(self) -> Sampler:
        self.done.set()
        self.join()
        return self


# ------------------------------------------------------------------------------- grading
@dataclass
class Batch:
    """One assignment graded by the tool."""

    assignment: str
    wall: float
    results: list
    sampler: Sampler
    workers: int
    gpu_workers: int = 0  # how many of the workers graded on a GPU
    gpu_seen: bool = False  # the machine has a GPU

    @property
    def placement(self) -> str:
        """``16`` (all on the GPU, or no GPU), or ``16 (8 on the GPU)``."""
        if self.gpu_seen and self.gpu_workers < self.workers:
            return f"{self.workers} ({self.gpu_workers} on the GPU)"
        return str(self.workers)


def grade_class(course: Course, assignment: str, workers: int | None, timings: Timings,
                gpus: bool, prestart: bool = True, students: list[str] | None = None,
                gpu_workers: int | None = None) -> Batch:
    """The whole class of ``assignment`` (or only ``students``), as ``python -m graders
    autograde <a>`` grades it."""
    settings = parallel.Settings(workers=workers, gpu_workers=gpu_workers, prestart=prestart)
    plan = parallel.plan_sandbox(settings.sandbox)
    slots, _, _ = parallel.resolve(course, settings, [assignment])
    jobs = parallel.select_jobs(course, [assignment], students)
    sampler = Sampler(gpus)
    sampler.start()
    start = time.perf_counter()
    with Patched(timings):
        results = parallel.autograde(course, jobs, settings, plan)
    wall = time.perf_counter() - start
    return Batch(assignment, wall, results, sampler.stop(), len(slots),
                 sum(bool(s.gpu) for s in slots), gpus)


def grade_serial(released: Course, dest: Path, assignment: str, chosen: dict[str, object],
                 gpus: bool) -> tuple[float, dict[str, float], Sampler]:
    """One plain ``nbgrader autograde <a>`` over ``chosen`` (student -> notebook) in a fresh copy
    of the released course: its wall time, scores and samples."""
    shutil.copytree(released.root, dest,
                    ignore=shutil.ignore_patterns("submitted", "autograded", "feedback"))
    course = Course(dest)
    for student, nb in chosen.items():
        course.submit(student, assignment, nb)
    threads = str(min(4, os.cpu_count() or 1))  # what the course config gives a plain run
    sampler = Sampler(gpus)
    sampler.start()
    start = time.perf_counter()
    course.autograde(assignment, env={var: threads for var in THREAD_VARS})
    wall = time.perf_counter() - start
    return wall, {s: g.score for s, g in course.grades(assignment).items()}, sampler.stop()


def compare_serial(released: Course, course: Course, base: Path, batch: Batch,
                   sample: list[str], gpus: bool) -> tuple[int, float, str, Sampler]:
    """Plain serial nbgrader on ``sample`` (students of ``batch``'s class): how many, wall time,
    whether every score equals the tool's ("yes", or the ones that differ), the samples."""
    a = batch.assignment
    print(f"plain serial nbgrader: {len(sample)} x {a} ...", flush=True)
    chosen = {s: notebooks.read(course.submission_path(s, a)) for s in sample}
    wall, plain, sampler = grade_serial(released, base / f"serial-{a}", a, chosen, gpus)
    tool = {r.student: r.score for r in batch.results if r.student in chosen}
    differ = sorted(s for s in chosen if plain.get(s) != tool.get(s))
    same = "yes" if not differ else "no: " + ", ".join(
        f"{s} {plain.get(s)} vs {tool.get(s)}" for s in differ)
    print(f"{a}: plain serial {wall:.0f} s for {len(sample)}; same scores: {same}", flush=True)
    return len(sample), wall, same, sampler


def parse_sweep(text: str) -> list[tuple[int, int | None]]:
    """``16,8/4`` -> [(16, None), (8, 4)]: workers, and how many of them on the GPU (None: the
    tool's default)."""
    out = []
    for item in text.split(","):
        w, _, g = item.strip().partition("/")
        out.append((int(w), int(g) if g else None))
    return out


def sweep(course: Course, assignment: str, workers: list[tuple[int, int | None]],
          students: list[str], gpus: bool) -> list[Batch]:
    """The same ``students`` of ``assignment`` graded once per (workers, GPU workers)."""
    batches = []
    for w, g in workers:
        on = "" if g is None else f" ({g} on the GPU)"
        print(f"sweep: {len(students)} x {assignment} with {w} workers{on} ...", flush=True)
        batch = grade_class(course, assignment, w, Timings(), gpus, students=students,
                            gpu_workers=g)
        batches.append(batch)
        print(f"  {batch.wall:.0f} s, {60 * len(batch.results) / batch.wall:.1f} notebooks/min, "
              f"{counts_line([r.status for r in batch.results])}", flush=True)
    return batches


# ------------------------------------------------------------------------------- scores
SCORE_FIELDS = ("assignment", "student", "kind", "label", "status", "score", "failed")


def write_scores(path: Path, who: dict[str, dict[str, tuple[str, str]]],
                 batches: list[Batch]) -> None:
    """Every student's status, score and the test cells short of full marks, one CSV row each
    (for ``--compare`` elsewhere)."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(SCORE_FIELDS)
        for b in batches:
            for r in b.results:
                kind, label = who[b.assignment][r.student]
                out.writerow((b.assignment, r.student, kind, label, r.status, f"{r.score:g}",
                              " ".join(r.failed())))


def compare_scores(path: Path, batches: list[Batch]) -> str:
    """Whether every grade of this run equals the one ``path`` (another run's ``--scores``)
    holds for the same assignment and student: status and score."""
    with path.open(newline="") as f:
        other = {(row["assignment"], row["student"]): row for row in csv.DictReader(f)}
    differ, same = [], 0
    for b in batches:
        for r in b.results:
            row = other.get((b.assignment, r.student))
            if row is None:
                continue
            if row["status"] == r.status and float(row["score"]) == r.score:
                same += 1
            else:
                there = f" (failed: {row['failed']})" if row.get("failed") else ""
                here = f" (failed: {' '.join(r.failed())})" if r.failed() else ""
                differ.append(f"{b.assignment} {r.student} ({row['label']}): {row['status']} "
                              f"{row['score']}{there} there, {r.status} {r.score:g}{here} here")
    if not differ:
        return f"every one of {same} grades equal (status and score)"
    return f"{same} equal, {len(differ)} differ: " + "; ".join(differ)


# -------------------------------------------------------------------------------- report
def machine() -> tuple[str, list[str]]:
    """One line about this machine, and its GPUs."""
    gpus = gpu_names()
    ram = psutil.virtual_memory().total / 2**30
    cpu = platform.processor() or platform.machine()
    gpu = ", ".join(gpus) if gpus else "no GPU"
    return f"{os.cpu_count()} CPU cores ({cpu}), {ram:.0f} GiB RAM, {gpu}", gpus


def _mean(values: list[float]) -> str:
    return f"{statistics.mean(values):.0f}" if values else "-"


def _max(values: list[float]) -> str:
    return f"{max(values):.0f}" if values else "-"


def _gpu_mib(s: Sampler) -> str:
    return f"{_max(s.gpu_mib)} / {_max(s.process_mib)}" if s.gpu_mib else "-"


def sweep_section(assignment: str, batches: list[Batch]) -> str:
    """The GPU-sharing table: one row per worker count, same notebooks."""
    first = {r.student: (r.status, r.score) for r in batches[0].results}
    lines = [
        f"GPU sharing: the same {len(batches[0].results)} notebooks of `{assignment}` graded "
        "once per worker count (on the GPU, unless the row says how many of them), kernels "
        "started ahead:",
        "",
        "| workers | wall (s) | notebooks / min | statuses | CPU mean % | GPU mean % | GPU memory "
        "peak (MiB): all / one process | processes on the GPU, most at once | grades as with "
        f"{batches[0].placement} workers | load |",
        "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for b in batches:
        s = b.sampler
        same = sum(first.get(r.student) == (r.status, r.score) for r in b.results)
        lines.append(
            f"| {b.placement} | {b.wall:.0f} | {60 * len(b.results) / b.wall:.1f} | "
            f"{counts_line([r.status for r in b.results])} | {_mean(s.cpu)} | {_mean(s.gpu)} | "
            f"{_gpu_mib(s)} | {max(s.processes, default=0)} | {same} of {len(b.results)} | "
            f"{_load(s)} |")
    return "\n".join(lines) + "\n"


def median_overhead(rows: list[Split]) -> float:
    """The median notebook's overhead: the steady state, where the mean also carries the first
    wave's kernels (none started ahead yet) and the ramp-up."""
    return statistics.median(r.overhead for r in rows)


def _load(s: Sampler) -> str:
    during = f"{statistics.mean(s.load):.1f}" if s.load else "-"
    return f"{s.load_before:.1f} / {during}"


def section(info: dict, batches: list[Batch], splits: dict[str, list[Split]],
            serial: dict[str, tuple[int, float, str, Sampler]], mix: dict[str, Counter],
            extra: list[str] = (),
            heavy: dict[str, list[tuple[str, str, float]]] | None = None) -> str:
    """The dated markdown section for the page."""
    total_nb = sum(len(b.results) for b in batches)
    total_wall = sum(b.wall for b in batches)
    lines = [
        f"## {info['date']}: {info['students']} students x {len(batches)} assignments, "
        f"{info['machine']}",
        "",
        f"Workers: {', '.join(sorted({b.placement for b in batches}))} (default: "
        f"{'given' if info['workers'] else 'the tool decides'}). {info['sandbox']}. Load "
        f"average {info['load_start']:.2f} before, {info['load_end']:.2f} after. "
        f"{info['note']}".rstrip(),
        "",
        "Class per assignment (kind: count): "
        + "; ".join(f"`{a}` " + ", ".join(f"{k} {n}" for k, n in sorted(c.items()))
                    for a, c in mix.items())
        + f". Left out: {LEFT_OUT} (each costs a whole limit).",
        "",
        "Load: the 1-minute load average before the step / its mean during the step (the "
        "step's own work included; on this machine's cores, more than the workers means other "
        "work was running).",
        "",
        "| assignment | notebooks | wall (s) | notebooks / min | statuses | CPU mean / peak % "
        "| GPU mean % | GPU memory peak (MiB): all / one process | load |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for b in batches:
        s = b.sampler
        lines.append(
            f"| `{b.assignment}` | {len(b.results)} | {b.wall:.0f} | "
            f"{60 * len(b.results) / b.wall:.1f} | "
            f"{counts_line([r.status for r in b.results])} | {_mean(s.cpu)} / {_max(s.cpu)} | "
            f"{_mean(s.gpu)} | {_gpu_mib(s)} | {_load(s)} |")
    lines += [
        f"| **class** | {total_nb} | **{total_wall:.0f}** ({total_wall / 60:.1f} min) | "
        f"{60 * total_nb / total_wall:.1f} | | | | | |",
        "",
        "Per notebook, mean seconds (inside the batch; see `scripts/bench_class.py` for how each "
        "part is measured; the overhead's median in brackets):",
        "",
        "| assignment | grading process | nbgrader start | kernel start + agent | imports (setup "
        "cell) | student cells | test cells (trusted side) | nbgrader saves + exit | tool "
        "(scratch, merge, scan) | overhead beyond the cells (median) | kernels started cold |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for a, rows in splits.items():
        if not rows:
            continue

        def m(attr: str, rows: list[Split] = rows) -> str:
            return f"{statistics.mean(getattr(r, attr) for r in rows):.2f}"

        lines.append(f"| `{a}` | {m('run')} | {m('nbgrader')} | {m('kernel')} | {m('imports')} | "
                     f"{m('student')} | "
                     f"{m('tests')} | {m('saves')} | {m('tool')} | **{m('overhead')}** "
                     f"({median_overhead(rows):.2f}) | "
                     f"{sum(r.cold for r in rows)} of {len(rows)} |")
    if heavy and any(heavy.values()):
        lines += ["", "Heaviest cells, mean seconds per notebook that ran them (where the "
                      "class's time goes):", ""]
        lines += [f"- `{a}`: " + ", ".join(f"`{label}` {sec:.1f}" + (" (test)" if kind == "test"
                                                                   else "")
                                             for label, kind, sec in cells)
                  for a, cells in heavy.items() if cells]
    if serial:
        lines += [
            "",
            "Plain serial `nbgrader autograde <a>` (one process, one notebook after another) on "
            "a sample of the same class, same machine, same run:",
            "",
            "| assignment | sample | wall (s) | per notebook (s) | notebooks / min | the tool, "
            "notebooks / min | same scores as the tool | CPU mean % | load |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
        ]
        for b in batches:
            if b.assignment not in serial:
                continue
            n, wall, same, s = serial[b.assignment]
            lines.append(f"| `{b.assignment}` | {n} | {wall:.0f} | {wall / n:.1f} | "
                         f"{60 * n / wall:.1f} | {60 * len(b.results) / b.wall:.1f} | {same} | "
                         f"{_mean(s.cpu)} | {_load(s)} |")
    for text in extra:
        lines += ["", text.rstrip("\n")]
    return "\n".join(lines) + "\n"


HEADER = """# A whole class graded (`make bench-class`)

Written by `scripts/bench_class.py`: a synthetic class per assignment (reference,
alternatives, mutants, partial, stubs, tampered and hostile submissions), graded with
`graders autograde` as an instructor would, per assignment; per-notebook split from the
grading process's seconds and the executor's progress file; CPU and GPU sampled every second;
plain serial `nbgrader autograde` on a sample of the same class for comparison. Each run
appends a section; the machine and its load are in its heading and first line.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=200, help="per assignment (default 200)")
    parser.add_argument("--assignments", nargs="+", help="default: every assignment in source/")
    parser.add_argument("--workers", type=int, help="default: what graders autograde picks")
    parser.add_argument("--gpu-workers", type=int,
                        help="how many of them on the GPU (default: what graders autograde picks)")
    parser.add_argument("--serial", type=int, default=5,
                        help="notebooks per assignment for plain serial nbgrader (0: none)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "class.md"))
    parser.add_argument("--note", default="", help="a sentence for the page (e.g. the load)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch course")
    parser.add_argument("--no-prestart", action="store_true",
                        help="as `graders autograde --no-prestart` (for a comparison)")
    parser.add_argument("--sweep", metavar="W[/G],...",
                        help="first grade the same --sweep-students notebooks of "
                             "--sweep-assignment once per worker count W, G of them on the "
                             "GPU (default: the tool's)")
    parser.add_argument("--sweep-assignment", help="default: the last of --assignments")
    parser.add_argument("--sweep-students", type=int, default=16)
    parser.add_argument("--sweep-only", action="store_true", help="no class after the sweep")
    parser.add_argument("--scores", metavar="CSV", help="write every grade (status, score)")
    parser.add_argument("--compare", metavar="CSV",
                        help="another run's --scores: say whether every grade is the same")
    args = parser.parse_args()
    if args.students < 1:
        raise SystemExit("--students must be at least 1")
    described, gpus = machine()
    info = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": described,
        "students": args.students,
        "workers": args.workers,
        "note": (args.note + (" Kernels not started ahead (--no-prestart)."
                              if args.no_prestart else "")).strip(),
        "load_start": os.getloadavg()[0],
        "sandbox": parallel.plan_sandbox(True).note,
    }
    print(f"{described}; load {info['load_start']:.2f}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = out.read_text() if out.is_file() else HEADER
    extra: list[str] = []
    batches: list[Batch] = []
    splits: dict[str, list[Split]] = {}
    serial: dict[str, tuple[int, float, str, Sampler]] = {}
    who: dict[str, dict[str, tuple[str, str]]] = {}
    heavy: dict[str, list[tuple[str, str, float]]] = {}

    def publish() -> str:
        """The section as far as the run got, written now (a run stopped early, at a time limit
        say, leaves what it measured)."""
        info["load_end"] = os.getloadavg()[0]
        if batches:
            mix = {b.assignment: Counter(kind for kind, _ in who[b.assignment].values())
                   for b in batches}
            text = section(info, batches, splits, serial, mix, extra, heavy)
        else:  # the sweep alone
            text = "\n\n".join([f"## {info['date']}: GPU sharing, {info['machine']}",
                                 f"{info['sandbox']}. {info['note']}".strip(), *extra]) + "\n"
        out.write_text(previous.rstrip("\n") + "\n\n" + text)
        if args.scores:
            write_scores(Path(args.scores), who, batches)
        return text

    base = Path(tempfile.mkdtemp(prefix="bench-class-"))
    try:
        course = Course.scratch(base / "course", origin=ROOT)
        assignments = args.assignments or course.assignments()
        released = Course.scratch(base / "released", origin=ROOT)
        for a in assignments:
            course.generate_release(a)
            shutil.copytree(course.folder("release", ".", a), released.folder("release", ".", a))
        shutil.copy2(course.root / "gradebook.db", released.root / "gradebook.db")
        who.update((a, hand_in(course, a, args.students)) for a in assignments)
        # once per `graders autograde` process, not per notebook: timed apart
        forkserver = runner.ForkedNbgrader.warm_up()
        info["note"] = (f"{info['note']} The forkserver the grading processes fork from "
                        f"started once, in {forkserver:.1f} s (not in the figures below).").strip()
        if args.sweep:
            a = args.sweep_assignment or assignments[-1]
            chosen = sorted(who[a])[:args.sweep_students]
            workers = parse_sweep(args.sweep)
            extra.append(sweep_section(a, sweep(course, a, workers, chosen, bool(gpus))))
            publish()
        timings = Timings()
        for a in [] if args.sweep_only else assignments:
            # each assignment's batch, then its serial sample, close in time
            print(f"grading {args.students} x {a} ...", flush=True)
            batch = grade_class(course, a, args.workers, timings, bool(gpus),
                                not args.no_prestart, gpu_workers=args.gpu_workers)
            batches.append(batch)
            splits[a] = [s for s in (timings.split(a, r.student) for r in batch.results) if s]
            heavy[a] = timings.heaviest_cells(a)
            print(f"{a}: {batch.wall:.0f} s, {counts_line([r.status for r in batch.results])}",
                  flush=True)
            for r in batch.results:  # what a benchmark of a broken grader would hide
                if r.status not in ("graded", "flagged"):
                    print(f"  {r.student} ({who[a][r.student][1]}): {r.status}: {r.reason}")
            sample = [s for s, (kind, _) in who[a].items() if kind not in NOT_IN_SERIAL]
            if sample[:args.serial]:
                serial[a] = compare_serial(released, course, base, batch,
                                           sample[:args.serial], bool(gpus))
            publish()
        if args.compare:
            verdict = compare_scores(Path(args.compare), batches)
            print(f"compared with {args.compare}: {verdict}", flush=True)
            extra.append(f"Grades compared with `{Path(args.compare).name}` (another run's "
                         f"`--scores`, same class): {verdict}.")
        print(publish())
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            parallel.force_rmtree(base)


if __name__ == "__main__":
    main()
