"""graders.runner: one grading process under limits (wall clock, memory counted as PSS over the
whole tree, number of processes, a full sandbox disk) and the status of how it ended, from
structured facts (the limit that killed it, exit codes, the exception a forked nbgrader
recorded)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_notebook

from graders import runner
from graders.course import nbgrader_env
from graders.runner import Limits, Run
from graders.status import CRASHED, GRADED, REFUSED, TIMED_OUT


def _limits(wall_s: float = 60, memory_mb: float = 10_000, **kw) -> Limits:
    return Limits(wall_s=wall_s, memory_mb=memory_mb, **kw)


def _script(tmp_path: Path, code: str) -> list[str]:
    path = tmp_path / "script.py"
    path.write_text(code)
    return [sys.executable, str(path)]


# -------------------------------------------------------------------------- classify (unit)
def test_classify_reads_the_status_from_structured_facts():
    assert runner.classify(Run(0, "Writing 5111 bytes"), notebook_written=True) == (GRADED, "")
    # a run nbgrader finished but whose notebook is missing is not "graded"
    assert runner.classify(Run(0, ""), notebook_written=False)[0] == CRASHED
    killed = Run(-9, "", killed=(TIMED_OUT, "ran past the 5 s notebook limit: killed"))
    assert runner.classify(killed, False) == killed.killed
    refused = runner.classify(Run(1, "", error=(["NotJSONError"], "x")), False, refused="no nb")
    assert refused == (REFUSED, "no nb")

    def error(*mro: str, message: str = "") -> Run:
        return Run(1, "log text says nothing useful", error=(list(mro), message))

    timeout = error("CellTimeoutError", "TimeoutError", "OSError", "Exception")
    assert runner.classify(timeout, False) == runner.EXCEPTIONS["CellTimeoutError"]
    died = error("DeadKernelError", "RuntimeError", "Exception", message="Kernel died")
    assert runner.classify(died, False) == (
        CRASHED, "the kernel died (killed, e.g. out of memory, or it exited)")
    other = error("OperationalError", "DatabaseError", message="no such table: grade")
    assert runner.classify(other, False) == (CRASHED, "OperationalError: no such table: grade")
    assert runner.classify(Run(-9, ""), False) == (
        CRASHED, "the grading process was killed (SIGKILL)")


def test_classify_falls_back_to_the_log_without_a_marker():
    timeout_log = (
        "[AutogradeApp | ERROR] Timeout waiting for execute reply (2s).\n"
        "nbclient.exceptions.CellTimeoutError: A cell timed out while it was being executed\n"
    )
    assert runner.classify(Run(1, timeout_log), False)[0] == TIMED_OUT
    other = "Traceback ...\n    sqlite3.OperationalError: no such table: grade\n"
    assert runner.classify(Run(1, other), False) == (
        CRASHED, "OperationalError: no such table: grade")


def test_a_forked_nbgrader_records_the_exception_it_met(tmp_path):
    """No assignment in the gradebook: nbgrader logs an error and exits 1; the marker says
    which exception it was, and the status comes from that."""
    course = tmp_path / "course"
    folder = course / "submitted" / "bob" / "ghost"
    folder.mkdir(parents=True)
    nbformat.write(new_notebook(), str(folder / "ghost.ipynb"))
    cmd = [*runner.NBGRADER, "autograde", "ghost", "--student=bob",
           f"--CourseDirectory.root={course}"]
    run = runner.run_limited(cmd, course, nbgrader_env(), _limits(), course / "log")
    assert run.returncode == 1 and run.killed is None
    if runner.FORK_NBGRADER:
        assert run.error is not None and run.error[0][0] == "NbGraderException"
    status, reason = runner.classify(run, notebook_written=False)
    assert status == CRASHED and "No assignment with ID 'ghost'" in reason


def test_the_forkserver_does_once_what_every_forked_nbgrader_would_repeat():
    import importlib

    from nbformat import current_nbformat_minor, validator
    from nbgrader import api

    from graders import sandbox

    # last: it finds the thread pools of every library loaded before it
    assert runner.FORKSERVER_PRELOAD[-1] == "graders.forkwarm"
    importlib.import_module("graders.forkwarm")
    name = validator.get_current_validator().name
    for minor in range(current_nbformat_minor + 1):
        for relax in (False, True):
            assert (name, 4, minor, relax) in validator.validators, (minor, relax)
    assert sandbox.sandbox_status.cache_info().currsize == 1
    assert api.Notebook.__mapper__.configured and api.Grade.__mapper__.configured
    assert "sqlalchemy.dialects.sqlite.pysqlite" in sys.modules


ORPHANS = """
import multiprocessing, os, sys, time
from graders import runner


def hold(folder, alive):  # a grading process that outlives its parent unless told otherwise
    if alive is not None:
        runner.exit_with(alive)
    open(os.path.join(folder, str(alive is not None)), "w").close()
    time.sleep(60)


if __name__ == "__main__":
    context = multiprocessing.get_context("forkserver")
    pids, ends = [], []
    for watched in (True, False):
        alive, end = context.Pipe(duplex=False) if watched else (None, None)
        child = context.Process(target=hold, args=(sys.argv[1], alive))
        child.start()
        pids.append(child.pid)
        ends.append(end)
    print(*pids, flush=True)
    time.sleep(60)
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_forked_nbgrader_dies_with_the_grading_parent(tmp_path):
    """A forkserver's child outlives a killed parent (the forkserver lives while any child
    does), and a grading process ran its notebook on with no watchdog; one that watches the
    parent's pipe (:func:`runner.exit_with`) goes with it."""
    import subprocess

    script = tmp_path / "orphans.py"
    script.write_text(ORPHANS)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(runner.__file__).parent.parent)}
    parent = subprocess.Popen([sys.executable, str(script), str(marks)], stdout=subprocess.PIPE,
                              text=True, env=env)
    watched, unwatched = (int(p) for p in parent.stdout.readline().split())
    try:
        deadline = time.monotonic() + 60
        while len(list(marks.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while not _gone(watched) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(watched)
        assert not _gone(unwatched)
    finally:
        for pid in (watched, unwatched):
            with contextlib.suppress(OSError):
                os.kill(pid, 9)


def test_nbgrader_checks_cell_metadata_as_before_with_its_schema_checked_once():
    import jsonschema
    import nbgrader.nbgraderformat.common as common
    from nbgrader.nbgraderformat import MetadataValidator

    from graders import forkwarm

    assert isinstance(common.jsonschema, forkwarm.SchemaChecked)
    schema = MetadataValidator().schema
    good = {"grade": True, "grade_id": "t1", "locked": True, "points": 2.0, "solution": False,
            "schema_version": 3}
    bad = [{**good, "points": "two"}, {**good, "grade_id": 7, "locked": "yes"},
           {**good, "solution": "no"}, {**good, "grade": None}]
    checked, calls, outcomes = forkwarm.SchemaChecked(), [], []
    real_check = jsonschema.Draft4Validator.check_schema
    try:
        jsonschema.Draft4Validator.check_schema = classmethod(
            lambda cls, s: calls.append(s) or real_check(s))
        for metadata in [good, *bad, good]:
            errors = []
            for validate in (jsonschema.validate, checked.validate):
                try:
                    validate(metadata, schema)
                    errors.append(None)
                except jsonschema.ValidationError as err:
                    errors.append((err.message, list(err.path)))
            assert errors[0] == errors[1], metadata
            outcomes.append(errors[0] is None)
    finally:
        jsonschema.Draft4Validator.check_schema = real_check
    assert outcomes == [True, False, False, False, False, True]
    assert len(calls) == 6 + 1  # jsonschema.validate checks every time, SchemaChecked once


# ------------------------------------------------------------------- limits kill trees (slow-ish)
_SPAWNER = """\
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", {child!r}], start_new_session=True)
print(child.pid, flush=True)
time.sleep(600)
"""


def test_wall_clock_limit_kills_the_whole_tree_even_a_kernel_in_its_own_session(tmp_path):
    cmd = _script(tmp_path, _SPAWNER.format(child="import time; time.sleep(600)"))
    start = time.monotonic()
    run = runner.run_limited(cmd, tmp_path, dict(os.environ), _limits(wall_s=3), tmp_path / "log")
    assert time.monotonic() - start < 10
    assert run.killed[0] == TIMED_OUT and "3 s notebook limit" in run.killed[1]
    child = int(run.log.split()[0])
    time.sleep(0.2)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"


def test_a_run_gone_before_the_first_look_is_classified_not_raised(tmp_path, monkeypatch):
    """A grading process can end (and its forkserver reap it) before the watchdog first looks:
    the run still ends with its exit code and log, and the batch decides what it means."""
    real = psutil.Process

    def gone(pid=None):
        if pid is not None and pid != os.getpid():
            raise psutil.NoSuchProcess(pid)
        return real(pid)

    monkeypatch.setattr(runner.psutil, "Process", gone)
    cmd = [sys.executable, "-c", "print('done'); raise SystemExit(3)"]
    run = runner.run_limited(cmd, tmp_path, dict(os.environ), _limits(wall_s=30), tmp_path / "log")
    assert run.returncode == 3 and "done" in run.log and run.killed is None


def test_memory_limit_kills_a_hog_among_the_descendants(tmp_path, monkeypatch):
    """The hog (a descendant, like a kernel) goes at once; the grading process (here the
    spawner, which never ends by itself) gets the grace to save what was earned, then goes."""
    monkeypatch.setattr(runner, "KERNEL_KILL_GRACE_S", 3.0)
    hog = "h = []\nwhile True:\n    h.append(b'x' * (16 << 20))"
    cmd = _script(tmp_path, _SPAWNER.format(child=hog))
    run = runner.run_limited(cmd, tmp_path, dict(os.environ), _limits(memory_mb=300),
                             tmp_path / "log")
    assert run.killed[0] == CRASHED and "over the 300 MiB limit" in run.killed[1]
    assert 3.0 <= run.seconds < 20  # the grace was given, and the spawner killed after it
    child = int(run.log.split()[0])
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"


def test_memory_of_the_grading_process_itself_counts(tmp_path):
    """A kernel that floods output grows nbgrader's own memory: the root of the tree counts."""
    cmd = _script(tmp_path, "h = []\nwhile True:\n    h.append(b'x' * (16 << 20))")
    run = runner.run_limited(cmd, tmp_path, dict(os.environ), _limits(memory_mb=300),
                             tmp_path / "log")
    assert run.killed is not None and "over the 300 MiB limit" in run.killed[1]


FORKS = 60
SHARED_MB = 200
LIMIT_MB = 1000
_FORKER = f"""\
import os, sys, time
shared = b"x" * ({SHARED_MB} << 20)  # touched pages, shared copy-on-write by every fork
kids = []
for _ in range({FORKS}):
    pid = os.fork()
    if pid == 0:
        time.sleep(float(sys.argv[1]))
        os._exit(0)
    kids.append(pid)
print("ready", flush=True)
for pid in kids:
    os.waitpid(pid, 0)
"""


def test_idle_forks_are_not_counted_once_per_process(tmp_path):
    """60 sleeping forks of a process holding 200 MiB: their resident sizes add up to about
    12 GiB, their proportional set sizes to about 200 MiB. A 1000 MiB limit must not kill them,
    while a real allocation (the test above) still is killed."""
    cmd = _script(tmp_path, _FORKER)
    import subprocess

    proc = subprocess.Popen([*cmd, "20"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        procs = runner.tree(psutil.Process(proc.pid))
        rss_sum = sum(p.memory_info().rss for p in procs) / 2**20
        assert len(procs) == FORKS + 1
        assert rss_sum > 5 * LIMIT_MB  # what the old watchdog summed
        assert runner.memory_mb(procs) < LIMIT_MB / 2  # what is really used
    finally:
        proc.kill()
        proc.wait()
    run = runner.run_limited([*cmd, "3"], tmp_path, dict(os.environ),
                             _limits(memory_mb=LIMIT_MB), tmp_path / "log")
    assert run.killed is None and run.returncode == 0, run.killed


def test_memory_watch_reads_pss_only_over_the_limit_and_estimates_between_reads():
    clock, rss, pss, reads = [0.0], [0.0], [0.0], []

    def read_pss(_procs):
        reads.append(clock[0])
        return pss[0]

    watch = runner.MemoryWatch(1000, rss=lambda _p: rss[0], pss=read_pss,
                               clock=lambda: clock[0], min_interval=0.5, refresh=5)
    rss[0], pss[0] = 900, 900
    assert watch.over([]) is None and reads == []  # under the limit: resident sizes suffice
    rss[0], pss[0] = 12_000, 250  # idle forks: summed resident sizes far over, PSS not
    assert watch.over([]) is None and reads == [0.0]
    for t in (0.1, 0.2, 1.0, 3.0):  # stable: estimated, not re-read
        clock[0] = t
        assert watch.over([]) is None
    assert reads == [0.0]
    clock[0], rss[0], pss[0] = 3.1, 12_900, 1100  # one fork allocates 900 MiB of its own
    assert watch.over([]) == 1100 and reads == [0.0, 3.1]
    watch = runner.MemoryWatch(1000, rss=lambda _p: rss[0], pss=read_pss,
                               clock=lambda: clock[0], min_interval=0.5, refresh=5)
    reads.clear()
    clock[0], rss[0], pss[0] = 10.0, 12_000, 250
    watch.over([])
    clock[0] = 16.0  # stale: read again even if the estimate is fine
    assert watch.over([]) is None and reads == [10.0, 16.0]


def test_too_many_processes_are_killed(tmp_path):
    code = (
        "import subprocess, sys, time\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
        " for _ in range(30)]\n"
        "time.sleep(60)\n"
    )
    run = runner.run_limited(_script(tmp_path, code), tmp_path, dict(os.environ),
                             _limits(max_processes=10), tmp_path / "log")
    assert run.killed is not None and run.killed[0] == CRASHED
    assert "over the limit of 10" in run.killed[1] and run.seconds < 30
    count = int(run.killed[1].split()[1])  # "ran N processes, ..."
    assert count > 10


# ------------------------------------------------------------------------ disk probe (unit)
def _statvfs(free_bytes: int, frsize: int = 4096, blocks: int = 1000) -> os.statvfs_result:
    avail = free_bytes // frsize
    return os.statvfs_result((frsize, frsize, blocks, avail, avail, 100, 50, 50, 0, 255))


def test_full_sandbox_disk_looks_at_other_mount_namespaces_only():
    namespaces = {"self": "mnt:[1]", "10": "mnt:[1]", "11": "mnt:[2]", "12": "mnt:[2]",
                  "13": "mnt:[3]"}
    looked_at = []

    def readlink(path: str) -> str:
        pid = path.split("/")[2]
        if pid not in namespaces:
            raise FileNotFoundError(path)  # a process that is gone
        return namespaces[pid]

    def statvfs(free: dict[str, int]):
        def fake(path: str) -> os.statvfs_result:
            pid = path.split("/")[2]
            looked_at.append(pid)
            if pid == "13":
                raise PermissionError(path)
            return _statvfs(free[pid])
        return fake

    pids = [10, 99, 11, 12, 13]
    full = runner.full_sandbox_disk(pids, statvfs({"11": 4096}), readlink)
    assert full == 11 and looked_at == ["11"]  # own namespace skipped; gone pid skipped
    looked_at.clear()
    roomy = runner.full_sandbox_disk(pids, statvfs({"11": 64 << 20}), readlink)
    assert roomy is None and looked_at == ["11", "13"]  # each namespace once; unreadable: skip
    assert runner.full_sandbox_disk([], statvfs({}), readlink) is None


def test_a_full_sandbox_disk_kills_with_a_reason(monkeypatch):
    monkeypatch.setattr(runner, "full_sandbox_disk", lambda pids: 4242)
    me = [psutil.Process()]
    assert runner.over_limit(me, _limits(disk_mb=512), 1.0) == (
        CRASHED, "wrote more than 512 MiB (disk limit)")
    assert runner.over_limit(me, _limits(disk_mb=None), 1.0) is None  # not watched


@pytest.mark.skipif(not os.path.exists("/proc/self/ns/mnt"), reason="needs Linux namespaces")
def test_the_probe_reads_a_real_tmpfs_in_another_mount_namespace(tmp_path):
    """The real statvfs path (`/proc/<pid>/root/tmp`) on a real sandboxed process."""
    from graders.parallel import plan_sandbox

    if not plan_sandbox(True).active:
        pytest.skip("bubblewrap cannot create namespaces here")
    import subprocess

    cmd = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
           "--size", str(2 << 20), "--tmpfs", "/tmp", "--unshare-pid", "--die-with-parent",
           # the interpreter stays visible when it lives under /tmp (a clone there)
           *(arg for prefix in {sys.prefix, sys.base_prefix}
             for arg in ("--ro-bind", prefix, prefix)),
           sys.executable, "-c",
           "import time\ntry:\n    open('/tmp/fill', 'wb').write(b'x' * (4 << 20))\n"
           "except OSError:\n    pass\nprint('full', flush=True)\ntime.sleep(30)"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "full"
        pids = [p.pid for p in runner.tree(psutil.Process(proc.pid))]
        assert runner.full_sandbox_disk(pids) is not None
    finally:
        proc.kill()
        proc.wait()


def _pools_after_limit(conn) -> None:
    from threadpoolctl import threadpool_info

    runner.limit_threads({"OMP_NUM_THREADS": "1"})
    conn.send([(i["internal_api"], i["num_threads"]) for i in threadpool_info()])
    conn.close()


def test_a_fork_caps_every_thread_pool_with_the_pools_found_before_the_fork():
    """limit_threads in a forked child uses the thread pools its parent found once (the
    forkserver's, graders.forkwarm), and still caps every one of them."""
    import multiprocessing

    import numpy  # noqa: F401 (its BLAS pools, as the forkserver has them loaded)

    # found after the imports, as forkwarm (imported last) finds them in the forkserver; this
    # process may have made it earlier
    runner.thread_pools.cache_clear()
    found = runner.thread_pools()
    assert runner.thread_pools() is found and found.info()  # found once, and something
    parent, child = multiprocessing.Pipe(duplex=False)
    with found.limit(limits=2):  # the child starts with 2 threads per pool
        assert {i["num_threads"] for i in found.info()} == {2}
        proc = multiprocessing.get_context("fork").Process(target=_pools_after_limit,
                                                           args=(child,))
        proc.start()
        pools = parent.recv()
        proc.join(30)
    assert pools and {n for _, n in pools} == {1}, pools


def _gradebook_opens(path: str, conn) -> None:
    from nbgrader.api import Gradebook

    from graders import forkwarm

    url = f"sqlite:///{path}"
    # nbgrader stamps a new gradebook with the version the `alembic` command reports
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    with Gradebook(url) as gb:  # nbgrader's own open: a new file gets its tables
        gb.add_student("ann")
        plain = set(vars(gb))
        first = gb.engine
    forkwarm.open_gradebooks_once()
    opened = []
    for student in ("bob", "cid"):
        with Gradebook(url) as gb:
            gb.add_student(student)
            opened.append((set(vars(gb)), gb.engine, sorted(s.id for s in gb.students)))
    conn.send((plain, [(attrs, engine is opened[0][1], ids) for attrs, engine, ids in opened],
               first is opened[0][1]))
    conn.close()


def test_a_forked_nbgrader_opens_its_gradebook_once_and_reads_and_writes_as_before(tmp_path):
    """forkwarm.open_gradebooks_once (the forked nbgrader only): the second open of a URL skips
    nbgrader's schema check but sets what nbgrader's own open sets, and works the same."""
    import multiprocessing

    parent, child = multiprocessing.Pipe(duplex=False)
    proc = multiprocessing.get_context("fork").Process(
        target=_gradebook_opens, args=(str(tmp_path / "gradebook.db"), child))
    proc.start()
    assert parent.poll(60), "the forked process sent nothing"
    plain, opened, first_reused = parent.recv()
    proc.join(30)
    assert not first_reused  # patched after nbgrader's own open
    assert [attrs for attrs, _, _ in opened] == [plain, plain]
    assert [shared for _, shared, _ in opened] == [True, True]  # one engine
    assert [ids for _, _, ids in opened] == [["ann", "bob"], ["ann", "bob", "cid"]]
    from nbgrader.api import Gradebook  # this process: nbgrader's Gradebook, unpatched

    assert Gradebook.__init__.__module__ == "nbgrader.api"


def test_the_package_parses_python_one_thread_at_a_time(monkeypatch):
    """graders.syntax.parse holds its lock while ast.parse runs (CPython 3.11's AST constructor
    is not safe in two threads at once), and no module of the package calls ast.parse itself."""
    import ast
    import re

    from graders import syntax

    held = []
    real = ast.parse
    monkeypatch.setattr(ast, "parse", lambda *a, **k: held.append(
        syntax._ONE_AT_A_TIME.locked()) or real(*a, **k))
    assert isinstance(syntax.parse("x = 1"), ast.Module) and held == [True]
    with pytest.raises(SyntaxError):
        syntax.parse("x = ")
    assert not syntax._ONE_AT_A_TIME.locked()
    package = Path(runner.__file__).parent
    direct = [f"{p.relative_to(package)}:{n}" for p in sorted(package.rglob("*.py"))
              if p.name != "syntax.py"
              for n, line in enumerate(p.read_text().splitlines(), 1)
              if re.search(r"(?<![\w.])ast\.parse\(", line)]
    assert direct == []


def test_a_long_log_is_read_by_its_start_and_end(tmp_path):
    """A kernel writing to its file descriptors fills the run's log (up to the sandbox's file
    size limit); the grading process reads its start and end, never all of it."""
    log = tmp_path / "nbgrader.log"
    log.write_bytes(b"[AutogradeApp | ERROR] first\n" + b"x" * (8 << 20)
                    + b"\nnbclient.exceptions.DeadKernelError: Kernel died\n")
    text = runner.read_log(log)
    assert len(text) < 2 << 20
    assert text.startswith("[AutogradeApp | ERROR] first") and "bytes of the log left out" in text
    assert runner._from_log(text, 1) == runner.EXCEPTIONS["DeadKernelError"]
    short = tmp_path / "short.log"
    short.write_text("all of it")
    assert runner.read_log(short) == "all of it" and runner.read_log(tmp_path / "none") == ""
