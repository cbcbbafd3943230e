"""Kernels started ahead (graders.prestart): what goes in, who may adopt one, and that the
student's kernel is the same as one started by nbgrader (namespace, files, limits)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from graders import prestart, runner, sandbox
from graders.runner import Limits

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


def test_setup_modules_are_the_setup_cells_imports():
    setup = ("%matplotlib inline\nimport time\nimport numpy as np, torch.nn\n"
             "from dlworkshop import checks, data\nfrom .x import y\nfrom os.path import *\n"
             "if True:\n    import json\n")
    assert prestart.setup_modules([setup, "this is not python (", "import time"]) == [
        "time", "numpy", "torch.nn", "dlworkshop", "dlworkshop.checks", "dlworkshop.data",
        "os.path"]


def test_fingerprint_sees_names_contents_and_links_but_not_notebooks(tmp_path):
    (tmp_path / "data.csv").write_text("1,2")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.txt").write_text("a")
    (tmp_path / "a.ipynb").write_text("{}")
    first = prestart.fingerprint(tmp_path)
    assert [row[0] for row in first] == ["data.csv", "sub", "sub/w.txt"]
    (tmp_path / "a.ipynb").write_text("changed")  # the notebook is never shown to the kernel
    assert prestart.fingerprint(tmp_path) == first
    (tmp_path / "sub" / "w.txt").write_text("b")  # same size, other content
    assert prestart.fingerprint(tmp_path) != first


class FakeKernel:
    def __init__(self, job: str, env: dict) -> None:
        self.job, self.env, self.discarded = job, env, 0

    def discard(self) -> None:
        self.discarded += 1


def test_each_kernel_ahead_goes_to_its_own_job_once(monkeypatch, tmp_path):
    started: list[FakeKernel] = []

    def fake_start(folder, files, kernel_name, env, modules):
        started.append(FakeKernel(folder.name, env))
        return started[-1]

    monkeypatch.setattr(prestart, "start", fake_start)
    ahead = prestart.Ahead(lambda job: (tmp_path / job, [], "k", []), 2, ["a", "b", "c"])
    ahead.expect("d")
    env = {"OMP_NUM_THREADS": "1"}
    assert ahead.take("a", env) is None  # nothing was started for the first job
    ahead.start_next(env)  # nothing either: no grading run has said what its kernel gets
    assert not started
    (tmp_path / "seen.json").write_text('{"OMP_NUM_THREADS": "1"}')
    ahead.learn(env, tmp_path / "seen.json")
    ahead.start_next(env)  # b
    ahead.start_next(env)  # c
    ahead.start_next(env)  # two wait already: no more
    assert [k.job for k in started] == ["b", "c"]
    assert ahead.take("c", env) is started[1]
    assert ahead.take("c", env) is None  # never twice
    assert ahead.take("b", {"CUDA_VISIBLE_DEVICES": "1"}) is None  # started for another slot
    assert started[0].discarded == 1
    ahead.start_next(env)  # d
    ahead.close()
    assert started[2].job == "d" and started[2].discarded == 1
    ahead.start_next(env)
    assert len(started) == 3  # closed: nothing more starts


def test_a_worker_picks_the_job_whose_kernel_a_worker_of_its_kind_started(
    monkeypatch, tmp_path
):
    """GPU and CPU workers (or two GPUs): a kernel started ahead by one kind goes to a worker of
    that kind, instead of being discarded by the other."""
    monkeypatch.setattr(prestart, "start",
                        lambda folder, files, name, env, modules: FakeKernel(folder.name, env))
    ahead = prestart.Ahead(lambda job: (tmp_path / job, [], "k", []), 4, ["a", "b", "c", "d"])
    (tmp_path / "seen.json").write_text("{}")
    gpu, cpu = {"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": ""}
    ahead.learn(gpu, tmp_path / "seen.json")
    assert ahead.pick(["a", "b"], cpu) == 0  # no kernel ahead yet: the first
    ahead.start_next(gpu)  # a: started by a GPU worker
    ahead.start_next(cpu)  # b: by a CPU worker
    assert ahead.pick(["a", "b", "c"], cpu) == 1
    assert ahead.pick(["a", "b", "c"], gpu) == 0
    assert ahead.pick(["a", "c"], {"CUDA_VISIBLE_DEVICES": "1"}) == 1  # c: no kernel yet
    assert ahead.pick(["a"], cpu) == 0  # only the other kind's: taken (and discarded)
    assert ahead.take("b", cpu).job == "b"
    assert ahead.take("a", cpu) is None


def test_a_job_whose_kernel_is_being_launched_waits_for_it(monkeypatch, tmp_path):
    def slow_start(folder, files, kernel_name, env, modules):
        time.sleep(0.3)
        return FakeKernel(folder.name, env)

    monkeypatch.setattr(prestart, "start", slow_start)
    ahead = prestart.Ahead(lambda job: (tmp_path / job, [], "k", []), 1, ["a"])
    (tmp_path / "seen.json").write_text("{}")
    ahead.learn({}, tmp_path / "seen.json")
    import threading

    t = threading.Thread(target=ahead.start_next, args=({},))
    t.start()
    time.sleep(0.05)
    kernel = ahead.take("a", {})
    t.join()
    assert kernel is not None and kernel.job == "a"


def test_kernels_ahead_get_the_environment_a_grading_run_gives_its_kernel(tmp_path):
    ahead = prestart.Ahead(lambda job: None, 1)
    given = {"OMP_NUM_THREADS": "2", "DROPPED": "x", prestart.ENV_PROGRESS: "/p"}
    assert ahead.kernel_env(given) is None
    seen = tmp_path / prestart.ENVIRONMENT
    prestart.note_environment({"OMP_NUM_THREADS": "2", "MPLBACKEND": "Agg",
                               prestart.ENV_PROGRESS: str(tmp_path / "progress.jsonl"),
                               prestart.ENV_PRESTARTED: "/r"})
    ahead.learn(given, seen)
    assert ahead.kernel_env({"OMP_NUM_THREADS": "1", "DROPPED": "y"}) == {
        "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    assert prestart.environment_digest({"A": "1", prestart.ENV_PROGRESS: "x"}) == \
        prestart.environment_digest({"A": "1"})


@needs_bwrap
def test_a_kernel_launched_in_the_background_outlives_its_launch(tmp_path):
    """start_next_soon launches off the notebook's path, and the kernel lives on: a sandboxed
    kernel dies with the thread that launched it (bubblewrap's --die-with-parent), so a thread
    per launch would leave nothing to adopt."""
    base = Path(tempfile.mkdtemp(prefix="prestart-test-", dir="/var/tmp"))
    base.chmod(0o755)
    submitted = base / "submitted"
    submitted.mkdir()
    (submitted / "data.txt").write_text("forty-two")
    env = {**os.environ, **sandbox.Limits().to_env(), sandbox.ENV_HIDE: str(base)}
    ahead = prestart.Ahead(
        lambda job: (base / job, sandbox.work_files(submitted), "python3", []), 1, ["a", "b"])
    (base / "seen.json").write_text(json.dumps(env))
    ahead.learn(env, base / "seen.json")
    kernel = None
    try:
        assert ahead.take("a", env) is None
        started = time.monotonic()
        ahead.start_next_soon(env)  # b's kernel
        assert time.monotonic() - started < 0.05  # returned before the launch
        deadline = time.monotonic() + 30
        while "b" not in ahead._ready and time.monotonic() < deadline:  # launched meanwhile
            time.sleep(0.05)
        time.sleep(1.0)
        kernel = ahead.take("b", env)
        assert kernel is not None
        assert prestart.adopt(kernel.record, submitted, "python3", env) is not None  # alive
    finally:
        ahead.close()
        if kernel is not None:
            kernel.discard()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def started(monkeypatch) -> Iterator[tuple[prestart.Prestarted, Path, dict[str, str]]]:
    """A kernel started ahead for a folder with one data file, that folder, its environment."""
    base = Path(tempfile.mkdtemp(prefix="prestart-test-", dir="/var/tmp"))
    base.chmod(0o755)
    submitted = base / "submitted"
    submitted.mkdir()
    (submitted / "data.txt").write_text("forty-two")
    (submitted / "answer.ipynb").write_text("{}")
    # modules of the submission that would run before the agent, and before the run adopts
    # the kernel, if the kernel imported from its working folder while it starts
    for shadow in ("ipykernel_launcher.py", "fractions.py", "zmq.py"):
        (submitted / shadow).write_text("raise SystemExit('a submitted module ran')\n")
    env = {**os.environ, **sandbox.Limits().to_env(), sandbox.ENV_HIDE: str(base)}
    kernel = prestart.start(base / "ahead", sandbox.work_files(submitted), "python3", env,
                            ["fractions", "email.mime.text", "email.nosuch"])
    try:
        yield kernel, submitted, env
    finally:
        kernel.discard()
        shutil.rmtree(base, ignore_errors=True)


@needs_bwrap
def test_an_adopted_kernel_is_clean_sandboxed_preloaded_and_interruptible(started):
    kernel, folder, env = started
    record = json.loads(kernel.record.read_text())
    # the kernel may rewrite its own connection file (its folder is writable for its
    # sockets) once it has read it: the adopting run must connect where the record says
    ip = record["connection"]["ip"]
    deadline = time.monotonic() + 60
    while not all(Path(f"{ip}-{n}").exists() for n in range(1, 6)):
        assert time.monotonic() < deadline, "the kernel started ahead never bound its sockets"
        time.sleep(0.05)
    Path(record["connection_file"]).write_text(json.dumps({**record["connection"],
                                                           "shell_port": 1, "key": "forged"}))
    km = prestart.adopt(kernel.record, folder, "python3", env)
    assert km is not None and km.agent_folder is not None
    assert km.session.key == record["connection"]["key"].encode()
    probe = f"os.path.exists({str(folder)!r})"
    nb = new_notebook(cells=[new_code_cell(
        "import sys, os\n"
        "print(sorted(k for k in globals() if not k.startswith('_') and k not in"
        " ('In', 'Out', 'exit', 'quit', 'get_ipython', 'open', 'sys', 'os')))\n"
        "print('fractions' in sys.modules, 'email.mime.text' in sys.modules,"
        " sys.modules['fractions'].__file__.startswith(os.getcwd()))\n"
        f"print(open('data.txt').read(), os.getcwd(), {probe})")])
    nb.cells += [new_code_cell("while True:\n    pass"), new_code_cell("print('answered')")]
    client = NotebookClient(nb, km=km, timeout=60, allow_errors=True, interrupt_on_timeout=True)
    with client.setup_kernel():
        client.execute_cell(nb.cells[0], 0)
        client.timeout = 3  # the endless cell is interrupted (by message: the adopting
        client.execute_cell(nb.cells[1], 1)  # manager connects the control channel)
        client.timeout = 60
        client.execute_cell(nb.cells[2], 2)
    run_sync(km.shutdown_kernel)(now=True)
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert text.splitlines() == ["[]", "True True False", f"forty-two {sandbox.SANDBOX_WORK} False"]
    assert [o.get("ename") for o in nb.cells[1].outputs] == ["KeyboardInterrupt"]
    assert nb.cells[2].outputs[0]["text"] == "answered\n"
    assert psutil.Process(kernel.pid).status() == psutil.STATUS_ZOMBIE  # killed; parent reaps


@needs_bwrap
@pytest.mark.parametrize("differs", ["kernel name", "environment", "a file more", "a file's bytes"])
def test_a_kernel_that_does_not_fit_its_notebook_is_stopped_not_adopted(started, differs):
    kernel, folder, env = started
    assert prestart.adopt(None, folder, "python3", env) is None  # nothing offered
    name = "other-kernel" if differs == "kernel name" else "python3"
    if differs == "environment":
        env = {**env, "OMP_NUM_THREADS": "9"}
    if differs == "a file more":
        (folder / "extra.txt").write_text("x")
    if differs == "a file's bytes":
        (folder / "data.txt").write_text("forty-one")  # same size
    assert prestart.adopt(kernel.record, folder, name, env) is None
    assert kernel.km.provisioner.process.wait(timeout=10) is not None  # stopped


@needs_bwrap
def test_a_kernel_that_fits_is_adopted_and_a_discarded_one_never(started):
    kernel, folder, env = started
    assert prestart.adopt(kernel.record, folder, "python3", env) is not None
    kernel.discard()
    assert prestart.adopt(kernel.record, folder, "python3", env) is None  # gone


def test_the_watchdog_counts_and_kills_a_watched_kernel(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "KERNEL_KILL_GRACE_S", 1.0)  # the grading process is sleep
    hog = subprocess.Popen([sys.executable, "-c",
                            "b = bytearray(300 * 2**20); import time; time.sleep(60)"],
                           start_new_session=True)
    try:
        time.sleep(1.5)
        run = runner.run_limited(
            [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path, dict(os.environ),
            Limits(wall_s=20, memory_mb=200), tmp_path / "log", watch=[hog.pid])
        assert run.killed is not None and "MiB" in run.killed[1]
        assert hog.wait(timeout=10) is not None
    finally:
        hog.kill()


_SANDBOX_LIKE = """\
import subprocess, sys, time
inner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         start_new_session=True)
print(inner.pid, flush=True)
time.sleep(600)
"""


def test_killing_a_sandbox_kills_what_runs_in_it_even_in_another_session():
    """Like a young bwrap's inner process (own session, no parent-death signal yet): killing
    the outer process and its group alone would leave it running."""
    outer = subprocess.Popen([sys.executable, "-c", _SANDBOX_LIKE], stdout=subprocess.PIPE,
                             text=True, start_new_session=True)
    inner = psutil.Process(int(outer.stdout.readline()))
    sandbox.kill_sandbox(outer.pid)
    assert outer.wait(timeout=10) == -9
    inner.wait(timeout=10)  # gone (psutil raises TimeoutExpired otherwise)
    assert not inner.is_running()
