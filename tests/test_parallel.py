"""graders.parallel: resource spreading, selection and the table (fast unit tests), and
parallel grading giving exactly what plain serial ``nbgrader autograde`` gives (slow). The
limits and the statuses of one run are tested in test_runner.py."""

from __future__ import annotations

import json
import os
import stat
import textwrap
import time
from pathlib import Path

import pytest
from tinycourse import ASSIGNMENT, POINTS, copy_course, expected_scores, submission, tiny_released

from graders import parallel, report, resources, runner, shards
from graders.course import Course
from graders.gradebook import CellGrade, SubmissionGrade
from graders.parallel import Job
from graders.status import CRASHED, CRASHED_PARTIAL, FLAGGED, GRADED, MISSING, REFUSED, TIMED_OUT
from graders.verdict.execute import ENV_PROGRESS, ProgressLog

__all__ = ["tiny_released"]  # a fixture


# ------------------------------------------------------------------- threads and GPUs (unit)
def test_slots_share_the_cores_and_round_robin_the_gpus():
    slots = resources.make_slots(workers=4, cores=16, gpus=["0", "1"])
    assert [s.threads for s in slots] == [4, 4, 4, 4]
    assert [s.gpu for s in slots] == ["0", "1", "0", "1"]
    env = slots[3].env()
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert {env[v] for v in resources.THREAD_VARS} == {"4"}

    cpu_only = resources.make_slots(workers=8, cores=2, gpus=[])
    assert len(cpu_only) == 8 and {s.threads for s in cpu_only} == {1}  # never 0 threads
    assert "CUDA_VISIBLE_DEVICES" not in cpu_only[0].env()


def test_some_workers_on_the_gpus_the_others_on_the_cpu_with_cuda_hidden():
    slots = resources.make_slots(workers=4, cores=16, gpus=["0", "1"], gpu_workers=3)
    assert [s.gpu for s in slots] == ["0", "1", "0", ""]
    assert slots[3].env()["CUDA_VISIBLE_DEVICES"] == ""  # hidden, not inherited
    assert [s.gpu for s in resources.make_slots(2, 2, ["0"], gpu_workers=0)] == ["", ""]


def test_default_workers_are_the_cores_and_the_gpus_memory_sets_how_many_use_them():
    assert resources.default_workers(cores=16) == 16
    assert resources.default_workers(cores=0) == 1
    per_t4 = int(15360 * resources.GPU_MEMORY_SHARE) // resources.KERNEL_GPU_MIB
    assert 1 < per_t4 < 16
    assert resources.default_gpu_workers(16, [143771]) == 16  # an H200: every worker
    assert resources.default_gpu_workers(16, [15360]) == per_t4  # a T4: the rest on the CPU
    assert resources.default_gpu_workers(16, [15360, 15360]) == 2 * per_t4
    assert resources.default_gpu_workers(16, [1000]) == 1  # a tiny GPU still grades
    assert resources.default_gpu_workers(16, [None]) == 16  # memory unknown
    assert resources.default_gpu_workers(2, [143771] * 4) == 2  # never more than the workers
    assert resources.default_gpu_workers(16, []) == 0


def test_a_small_gpu_no_longer_idles_the_cores(tiny_released, monkeypatch):
    """16 cores and one 16 GB GPU: 16 workers, as many on the GPU as its memory holds."""
    monkeypatch.setattr(parallel, "usable_cores", lambda: 16)
    monkeypatch.setattr(parallel, "gpu_ids", lambda: ["0"])
    monkeypatch.setattr(parallel, "gpu_memory_mib", lambda ids: [15360])
    slots, _, _ = parallel.resolve(tiny_released, parallel.Settings(), [ASSIGNMENT])
    on_gpu = resources.default_gpu_workers(16, [15360])
    assert [s.gpu for s in slots] == ["0"] * on_gpu + [""] * (16 - on_gpu)
    slots, _, _ = parallel.resolve(tiny_released, parallel.Settings(gpu_workers=0), [ASSIGNMENT])
    assert {s.gpu for s in slots} == {""}


def test_gpu_ids_from_cuda_visible_devices_or_nvidia_smi(tmp_path, monkeypatch):
    assert resources.gpu_ids({"CUDA_VISIBLE_DEVICES": "2, 5"}) == ["2", "5"]
    assert resources.gpu_ids({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert resources.gpu_ids({"CUDA_VISIBLE_DEVICES": ""}) == []
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\n"
        "echo 'GPU 0: NVIDIA H100 (UUID: GPU-a)'\n"
        "echo 'GPU 1: NVIDIA H100 (UUID: GPU-b)'\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert resources.gpu_ids({}) == ["0", "1"]
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert resources.gpu_ids({}) == []
    assert resources.gpu_memory_mib(["0"]) == [None]


def test_gpu_memory_by_index_or_uuid_from_nvidia_smi(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '0, GPU-a, 143771'\necho '1, GPU-b, 15360'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert resources.gpu_memory_mib(["1", "GPU-a", "7"]) == [15360, 143771, None]


# ------------------------------------------------------------------------ selection (unit)
def _students(course_root: Path, names: list[str]) -> Course:
    for name in names:
        (course_root / "submitted" / name).mkdir(parents=True)
    return Course(course_root)


def test_shards_split_the_class_disjointly_and_stably(tmp_path):
    names = [f"student{i:02d}" for i in range(30)]
    course = _students(tmp_path / "c", names)
    split = [parallel.select_jobs(course, ["a"], shard=(k, 3)) for k in (1, 2, 3)]
    students = [[j.student for j in jobs] for jobs in split]
    assert sorted(sum(students, [])) == names  # union is everyone, nobody twice
    assert all(students)  # 30 names over 3 shards: none empty
    bigger = _students(tmp_path / "c2", [*names, "late-joiner", "aaa"])
    again = [j.student for j in parallel.select_jobs(bigger, ["a"], shard=(2, 3))]
    assert set(students[1]) <= set(again)  # adding students moves nobody
    assert shards.parse_shard("2/3") == (2, 3)
    with pytest.raises(ValueError, match="K/N"):
        shards.parse_shard("3")


def test_jobs_cover_every_assignment_and_the_chosen_student(tmp_path):
    course = _students(tmp_path / "c", ["bob", "amy"])
    jobs = parallel.select_jobs(course, ["a1", "a2"])
    assert jobs == [Job("a1", "amy"), Job("a1", "bob"), Job("a2", "amy"), Job("a2", "bob")]
    assert parallel.select_jobs(course, ["a1"], students=["zed"]) == [Job("a1", "zed")]


def test_precheck_says_missing_or_refused_with_a_reason(tmp_path):
    course = _students(tmp_path / "c", ["none", "empty", "renamed", "corrupt", "listy"])
    base = tmp_path / "c" / "submitted"
    (base / "empty" / "a").mkdir()
    (base / "renamed" / "a").mkdir()
    (base / "renamed" / "a" / "a (1).ipynb").write_text("{}")
    (base / "corrupt" / "a").mkdir()
    (base / "corrupt" / "a" / "a.ipynb").write_text('{"cells": [')
    (base / "listy" / "a").mkdir()
    (base / "listy" / "a" / "a.ipynb").write_text("[1, 2]")
    check = {s: parallel.precheck(course, Job("a", s)) for s in ("none", "empty", "renamed")}
    assert check["none"] == (MISSING, "nothing submitted: no folder submitted/none/a")
    assert check["empty"][0] == MISSING and "folder empty" in check["empty"][1]
    assert check["renamed"][0] == MISSING and "a (1).ipynb" in check["renamed"][1]
    corrupt = parallel.precheck(course, Job("a", "corrupt"))
    assert corrupt[0] == REFUSED and "JSON" in corrupt[1]
    assert parallel.precheck(course, Job("a", "listy"))[0] == REFUSED


# ------------------------------------------------------------------------ the table (unit)
def test_table_names_each_submission_and_the_sandbox_state():
    bob = SubmissionGrade("a", "bob", GRADED)
    bob.cells = {"test_add": CellGrade("test_add", 4, 4), "test_mul": CellGrade("test_mul", 0, 2),
                 "test_sq": CellGrade("test_sq", 1.5, 3)}
    results = [
        bob,
        SubmissionGrade("a", "amy", TIMED_OUT, "ran past the 9 s notebook limit: killed",
                        in_gradebook=False),
        SubmissionGrade("a", "cat", GRADED).add_flags(["flagged: reads In at cell add line 1"]),
    ]
    table = report.format_table(results, "UNSANDBOXED: because")
    lines = table.splitlines()
    assert lines[0] == "# UNSANDBOXED: because"
    assert lines[2].split()[:3] == ["amy", "a", "timed"] and lines[2].endswith("killed")
    assert "5.5 / 9" in lines[3] and "test_mul, test_sq (1.5/3)" in lines[3]  # partial credit
    assert lines[2].split()[4] == "-"  # no gradebook row: no score ("timed out" is 2 words)
    assert lines[4].split()[2] == "flagged" and lines[4].endswith("at cell add line 1")
    assert lines[-1] == "# 1 graded, 1 flagged, 1 timed out"


# ----------------------------------------------------------- parallel equals serial (slow)
KINDS = [
    {},
    {"wrong": ("mul",)},
    {"wrong": ("add",)},
    {"wrong": ("square",)},
    {"wrong": ("add", "square")},
    {"unsolved": ("mul",)},
    {"unsolved": ("add", "mul", "square")},
]


def _class(course: Course, n: int = 48) -> dict[str, dict]:
    """Submit ``n`` students of varied correctness, a corrupt one and a missing one."""
    kinds = {f"s{i:02d}": KINDS[i % len(KINDS)] for i in range(n)}
    for student, kind in kinds.items():
        course.submit(student, ASSIGNMENT, submission(course, **kind))
    course.submit("corrupt", ASSIGNMENT, b'{"cells": [')
    (course.root / "submitted" / "missing" / ASSIGNMENT).mkdir(parents=True)
    return kinds


def _scores(course: Course) -> dict[str, dict[str, tuple[float, float, bool]]]:
    return {
        student: {g: (c.score, c.max_score, c.needs_manual_grade) for g, c in sub.cells.items()}
        for student, sub in course.grades(ASSIGNMENT).items()
    }


@pytest.mark.slow
def test_parallel_grading_equals_serial_nbgrader(tiny_released, tmp_path):
    serial = copy_course(tiny_released, tmp_path / "serial")
    kinds = _class(serial)
    serial.autograde(ASSIGNMENT)

    course = copy_course(tiny_released, tmp_path / "parallel")
    _class(course)
    start = time.monotonic()
    settings = parallel.Settings(workers=8, cell_timeout=20, progress=False)
    results = parallel.autograde(course, parallel.select_jobs(course, [ASSIGNMENT]), settings)
    print(f"parallel: {len(results)} submissions in {time.monotonic() - start:.0f} s")

    status = {r.student: r.status for r in results}
    reasons = {r.student: f"{r.status}: {r.reason}" for r in results if r.status != GRADED}
    assert status == {**dict.fromkeys(kinds, GRADED), "corrupt": REFUSED, "missing": MISSING}, (
        reasons
    )
    assert not [r for r in results if "locked" in r.reason]
    got, want = _scores(course), _scores(serial)
    assert set(got) == set(want) == {*kinds, "corrupt"}  # no missing rows, none extra
    assert got == want  # every cell's score, maximum and manual-grading flag
    for student, kind in kinds.items():  # and both are right, not just equal
        assert {g: s for g, (s, _, _) in got[student].items()} == expected_scores(**kind)
        assert course.autograded_path(student, ASSIGNMENT).is_file()
    by_student = {r.student: r for r in results}
    assert by_student["s01"].failed() == ["test_mul"] and by_student["s01"].score == 4
    assert by_student["s01"].cells["test_mul"].max_score == 2  # the copy returned the grade
    assert not course.autograded_path("corrupt", ASSIGNMENT).exists()


def _phase_values(monkeypatch, phase: str, key: str) -> list:
    """A list that each grading run of the test fills with ``key`` of its progress log's
    ``phase`` events (read once the run is over)."""
    values: list = []
    run_limited = runner.run_limited

    def watched(cmd, cwd, env, *args, **kwargs):
        run = run_limited(cmd, cwd, env, *args, **kwargs)
        events = ProgressLog.read(Path(env[ENV_PROGRESS]))
        values.extend(e.get(key) for e in events if e.get("phase") == phase)
        return run

    monkeypatch.setattr(runner, "run_limited", watched)
    return values


@pytest.mark.slow
def test_each_worker_gets_its_thread_share_and_gpu_in_the_kernel(
    tiny_released, tmp_path, monkeypatch
):
    """The environment a slot sets reaches the student's kernel (through the sandbox too), and
    its thread count the trusted side's torch too (the forked nbgrader found torch loaded by the
    forkserver with a thread per core)."""
    course = copy_course(tiny_released, tmp_path / "env")
    probe = textwrap.dedent(
        """\
        import os
        print("ENV", os.environ.get("OMP_NUM_THREADS"), os.environ.get("CUDA_VISIBLE_DEVICES"))
        """
    )
    for student in ("p1", "p2"):
        nb = submission(course)
        nb.cells[1].source = probe + nb.cells[1].source
        course.submit(student, ASSIGNMENT, nb)
    monkeypatch.setattr(parallel, "gpu_ids", lambda: ["5", "7"])
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    trusted = _phase_values(monkeypatch, "begin", "threads")
    settings = parallel.Settings(workers=2, gpu_workers=1, cell_timeout=20, progress=False)
    results = parallel.autograde(course, parallel.select_jobs(course, [ASSIGNMENT]), settings)
    assert [r.status for r in results] == [GRADED, GRADED]
    seen = set()
    for student in ("p1", "p2"):
        text = course.autograded_path(student, ASSIGNMENT).read_text()
        line = next(ln for ln in text.split('"') if ln.startswith("ENV "))
        _, threads, *gpu = line.replace("\\n", "").split()
        assert threads == "1"  # 2 cores / 2 workers
        seen.add(" ".join(gpu))
    assert seen == {"5", ""}  # one worker on GPU 5, the other on the CPU with CUDA hidden
    if runner.FORK_NBGRADER:  # torch was loaded before the slot's environment was known
        assert trusted == [1, 1]


@pytest.mark.slow
@pytest.mark.skipif(not parallel.plan_sandbox(True).active, reason="kernels ahead are sandboxed")
def test_one_worker_adopts_a_kernel_started_ahead_from_its_second_notebook_on(
    tiny_released, tmp_path, monkeypatch
):
    """The batch learns its kernels' environment from the first run's start, not its end: the
    second notebook already finds its kernel started (it started cold when the batch learnt only
    from a finished run)."""
    course = copy_course(tiny_released, tmp_path / "ahead")
    for student in ("a1", "a2", "a3"):
        course.submit(student, ASSIGNMENT, submission(course))
    adopted = _phase_values(monkeypatch, "kernel", "adopted")
    settings = parallel.Settings(workers=1, cell_timeout=20, progress=False)
    results = parallel.autograde(course, parallel.select_jobs(course, [ASSIGNMENT]), settings)
    assert [r.status for r in results] == [GRADED] * 3
    assert adopted == [False, True, True]


# ------------------------------------------------------------------------- command line
def test_cli_errors_are_one_line_and_exit_code_says_not_all_graded(
    tiny_released, tmp_path, capsys
):
    from graders.cli import main

    course = copy_course(tiny_released, tmp_path / "cli")
    with pytest.raises(SystemExit, match="^error: shard must look like K/N"):
        main(["--root", str(course.root), "autograde", "--shard", "half"])
    with pytest.raises(SystemExit, match="^error: --workers must be positive"):
        main(["--root", str(course.root), "autograde", "--workers", "0"])
    with pytest.raises(SystemExit, match="^error: --gpu-workers must be 0 or more"):
        main(["--root", str(course.root), "autograde", "--gpu-workers", "-1"])
    (course.root / "submitted" / "ghost" / ASSIGNMENT).mkdir(parents=True)
    assert main(["--root", str(course.root), "autograde", "--no-sandbox"]) == 1
    out, err = capsys.readouterr()
    assert "ghost" in out and "missing" in out and "folder empty" in out
    assert "UNSANDBOXED (--no-sandbox)" in err and out.startswith("# UNSANDBOXED")


# ------------------------------------------------------------------ crashed runs: one retry
def _dies_first(nb, marker: Path | None, at: int = 0):
    """``nb`` with a code cell at ``at`` (first) that kills the kernel (only while ``marker`` is
    absent, creating it, when a marker is given)."""
    import nbformat

    if marker is None:
        code = "import os\nos._exit(3)"
    else:
        code = (
            f"import os, pathlib\n_m = pathlib.Path({str(marker)!r})\n"
            "if not _m.exists():\n    _m.touch()\n    os._exit(3)"
        )
    nb.cells.insert(at, nbformat.v4.new_code_cell(code))
    return nb


def test_a_crashed_run_is_graded_once_more_and_a_second_crash_is_final(tiny_released, tmp_path):
    course = copy_course(tiny_released, tmp_path / "c")
    # the marker lives outside the sandbox's reach, so this runs unsandboxed on purpose
    course.submit("flaky", ASSIGNMENT, _dies_first(submission(course), tmp_path / "died"))
    course.submit("broken", ASSIGNMENT, _dies_first(submission(course), None))
    # dies after its first test cell, the first time only: a second run would score it in full
    after_add = _dies_first(submission(course), tmp_path / "rolled", at=3)
    assert after_add.cells[2].metadata.nbgrader.grade_id == "test_add"
    course.submit("reroll", ASSIGNMENT, after_add)
    settings = parallel.Settings(workers=2, cell_timeout=20, progress=False, sandbox=False)
    jobs = parallel.select_jobs(course, [ASSIGNMENT])
    results = {r.student: r for r in parallel.autograde(course, jobs, settings)}
    assert (tmp_path / "died").exists()  # the flaky kernel really died on its first run
    # graded in full the second time; the static scan flags its os._exit for review
    assert results["flaky"].status == FLAGGED, results["flaky"].reason
    assert any("_exit" in f for f in results["flaky"].flags), results["flaky"].flags
    assert results["flaky"].score == results["flaky"].max_score > 0
    assert results["broken"].status == CRASHED
    assert results["broken"].reason.endswith("(happened twice)")
    # a crash after a test cell completed is final: the points before it, no second draw
    assert (tmp_path / "rolled").exists()
    assert results["reroll"].status == CRASHED_PARTIAL, results["reroll"].reason
    assert results["reroll"].score == POINTS["test_add"]


def test_workers_follow_the_cores_this_process_may_use(monkeypatch):
    """A Slurm task or ``taskset`` gives a share of the node: one worker per core of that share."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert resources.usable_cores() == 3
    monkeypatch.delattr(os, "sched_getaffinity")
    assert resources.usable_cores() == (os.cpu_count() or 1)


# ------------------------------------------------------------------ a GPU shared by the class
OOM = "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"


def _notebook_with_output(folder: Path, output: dict, source: str = "x = 1") -> Path:
    nb = {"cells": [{"cell_type": "code", "source": source, "metadata": {}, "outputs": [output],
                     "execution_count": 1}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.ipynb").write_text(json.dumps(nb))
    return folder


def test_out_of_gpu_memory_is_read_from_the_outputs_only(tmp_path):
    error = {"output_type": "error", "ename": "OutOfMemoryError", "evalue": OOM.split(": ", 1)[1],
             "traceback": [OOM]}
    assert resources.out_of_gpu_memory(_notebook_with_output(tmp_path / "err", error))
    stderr = {"output_type": "stream", "name": "stderr", "text": "RuntimeError: CUDA error: "
              "out of memory\n"}
    assert resources.out_of_gpu_memory(_notebook_with_output(tmp_path / "stderr", stderr))
    host = {"output_type": "error", "ename": "MemoryError", "evalue": "", "traceback": []}
    assert not resources.out_of_gpu_memory(_notebook_with_output(tmp_path / "host", host))
    quiet = {"output_type": "stream", "name": "stdout", "text": "ok\n"}
    assert not resources.out_of_gpu_memory(
        _notebook_with_output(tmp_path / "src", quiet, source=f"# {OOM}"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.ipynb").write_text("{not json")
    assert not resources.out_of_gpu_memory(tmp_path / "bad")


def test_a_notebook_that_found_the_shared_gpu_full_is_graded_again_on_the_cpu(
    tiny_released, tmp_path, monkeypatch
):
    """Another student's notebook may take all of a shared GPU's memory: whoever then fails to
    allocate is graded again on the CPU, not marked down (and told why)."""
    course = copy_course(tiny_released, tmp_path / "gpu")
    victim = submission(course)
    victim.cells[1].source = (
        'import os\nif os.environ.get("CUDA_VISIBLE_DEVICES"):\n'
        '    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")\n'
        + victim.cells[1].source)
    course.submit("victim", ASSIGNMENT, victim)
    course.submit("bystander", ASSIGNMENT, submission(course))
    monkeypatch.setattr(parallel, "gpu_ids", lambda: ["0"])
    monkeypatch.setattr(parallel, "gpu_memory_mib", lambda ids: [None])
    settings = parallel.Settings(workers=2, cell_timeout=20, progress=False)
    jobs = parallel.select_jobs(course, [ASSIGNMENT])
    results = {r.student: r for r in parallel.autograde(course, jobs, settings)}
    victim_grade, bystander = results["victim"], results["bystander"]
    assert victim_grade.status == GRADED and parallel.GPU_RETRY in victim_grade.reason
    assert victim_grade.score == victim_grade.max_score == sum(POINTS.values())
    assert bystander.status == GRADED and parallel.GPU_RETRY not in bystander.reason
    assert bystander.score == bystander.max_score
