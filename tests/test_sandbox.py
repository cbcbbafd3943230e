"""The kernel sandbox (graders/sandbox.py): every property shown with a real sandboxed kernel.

The fake course lives under /var/tmp, not /tmp: the sandbox's private /tmp would hide anything
under the host's /tmp whatever the hide list says, and the tests must show the hide list works.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import psutil
import pytest
from jupyter_client import AsyncKernelManager
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from graders import cpushare, sandbox, sandbox_watch
from graders.course import REPO_ROOT, Course

pytestmark = [
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) not installed"),
    pytest.mark.xdist_group("sandbox"),
]

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
SECRET = f"hidden-tests-{uuid.uuid4().hex}"


@dataclass
class Layout:
    base: Path  # not hidden, not shown: absent all the same (only system folders are there)
    shown: Path  # on GRADERS_SANDBOX_READONLY: the control showing reads work where allowed
    course: Path  # hidden course root with gradebook.db and source/
    cwd: Path  # the kernel's working folder inside the course (autograded/<s>/<a>)


@pytest.fixture
def layout(monkeypatch) -> Iterator[Layout]:
    base = Path(tempfile.mkdtemp(prefix="sandbox-test-", dir="/var/tmp"))
    base.chmod(0o755)
    course = base / "course"
    (course / "source" / "a").mkdir(parents=True)
    (course / "source" / "a" / "a.ipynb").write_text(SECRET)
    (course / "gradebook.db").write_text(SECRET)
    (base / "elsewhere.txt").write_text("another student's work")
    (base / "elsewhere.txt").chmod(0o644)
    shown = base / "shown"
    shown.mkdir()
    (shown / "visible.txt").write_text("visible")
    cwd = course / "autograded" / "alice" / "a"
    cwd.mkdir(parents=True)
    monkeypatch.setenv(sandbox.ENV_HIDE, str(course))
    monkeypatch.setenv(sandbox.ENV_READONLY, str(shown))
    for name, value in sandbox.Limits().to_env().items():
        monkeypatch.setenv(name, value)
    yield Layout(base, shown, course, cwd)
    shutil.rmtree(base, ignore_errors=True)


def run_cells(cwd: Path, *cells: str, timeout: int = 60, **client_options) -> list[str]:
    """Run ``cells`` in one sandboxed kernel with ``cwd``; each cell's stdout, or its error."""
    nb = new_notebook(cells=[new_code_cell(code) for code in cells])
    nb.metadata["kernelspec"] = KERNELSPEC
    client = NotebookClient(
        nb,
        kernel_name="python3",
        kernel_manager_class=sandbox.SandboxKernelManager,
        resources={"metadata": {"path": str(cwd)}},
        timeout=timeout,
        allow_errors=True,
        **client_options,
    )
    client.execute()
    return [_text(cell) for cell in nb.cells]


def _text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream" and out.name == "stdout":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append(f"ERROR {out.ename}: {out.evalue}")
    return "".join(parts).strip()


def _uid_processes(uid: int) -> list[str]:
    pids = []
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            uids = next(ln for ln in Path(status).read_text().splitlines() if ln.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if int(uids.split()[1]) == uid:
            pids.append(status)
    return pids


# -------------------------------------------------------------------------- without a kernel
def test_status_says_bwrap_works():
    status = sandbox.sandbox_status()
    assert status.available, status.reason
    assert "bwrap" in status.reason


def test_limits_from_environment_and_bad_values():
    limits = sandbox.Limits(memory_mb=512, max_processes=16, file_size_mb=5, disk_mb=64)
    assert sandbox.Limits.from_env(limits.to_env()) == limits
    assert sandbox.Limits.from_env({}) == sandbox.Limits()
    with pytest.raises(ValueError, match="GRADERS_SANDBOX_MEMORY_MB must be a whole number"):
        sandbox.Limits.from_env({"GRADERS_SANDBOX_MEMORY_MB": "lots"})


def test_settings_require_the_sandbox_and_configure_the_manager(tmp_path):
    args, env = sandbox.sandbox_settings([tmp_path], [tmp_path / "data"], sandbox.Limits(1024))
    assert args == ["--VerdictExecute.sandbox=on"]
    assert env[sandbox.ENV_HIDE] == str(tmp_path.resolve())
    assert env["GRADERS_SANDBOX_MEMORY_MB"] == "1024"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO_ROOT)


def test_the_course_executor_picks_the_sandbox_itself():
    from traitlets.config import Config

    from graders.verdict.execute import VerdictExecute

    def manager(mode: str) -> type:
        config = Config()
        config.VerdictExecute.sandbox = mode
        return VerdictExecute(config=config).kernel_manager_class

    assert manager("on") is sandbox.SandboxKernelManager
    assert manager("auto") is sandbox.SandboxKernelManager  # bwrap works here
    assert manager("off") is AsyncKernelManager


def test_kernel_uids_are_never_those_of_a_running_process(monkeypatch):
    """Kernels started ahead by one coordinator reused a uid after 16: two sandboxes with
    one uid shared its process limit, and one made the other's threads fail."""
    assert os.geteuid() in sandbox._uids_running()
    base = sandbox.UID_BASE + sandbox.UIDS_PER_PROCESS * os.getpid()
    monkeypatch.setattr(sandbox, "_uid_counter", iter(range(10**6)))
    busy = {base, base + 1, base + 3}
    monkeypatch.setattr(sandbox, "_uids_running", lambda: busy)
    assert [sandbox._kernel_uid() for _ in range(3)] == [base + 2, base + 4, base + 5]
    assert sandbox.UID_BASE + sandbox.UIDS_PER_PROCESS * 2**22 < 2**32 - 1  # all pids fit


def test_closed_folders_above_the_working_folder_are_hidden(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="sandbox-closed-", dir="/var/tmp"))  # mode 0700
    try:
        cwd = base / "w"
        cwd.mkdir()
        cmd = sandbox.bwrap_command(["true"], cwd=cwd, run_dir=cwd, hide=[], readonly=[],
                                    limits=sandbox.Limits(), uid=sandbox.UID_BASE)
        assert cmd[cmd.index(str(base)) - 1] == "--tmpfs"
    finally:
        shutil.rmtree(base)


def test_library_folders_are_shown_but_never_one_that_holds_a_hidden_folder(tmp_path):
    """A GPU driver's libraries outside the system folders (``LD_LIBRARY_PATH=/opt/...``) are
    shown read-only; a library path above a hidden folder (``$HOME``, the course) is not, or it
    would show what the hide list hides."""
    libs, course = tmp_path / "opt" / "lib", tmp_path / "course"
    libs.mkdir(parents=True)
    (course / "w").mkdir(parents=True)
    env = {"LD_LIBRARY_PATH": os.pathsep.join([str(libs), str(tmp_path), "relative", "/"])}
    cmd = sandbox.bwrap_command(["true"], cwd=course / "w", run_dir=course / "w", hide=[course],
                                readonly=[], limits=sandbox.Limits(), uid=None, kernel_env=env)
    binds = {cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--ro-bind"}
    assert str(libs) in binds
    assert str(tmp_path) not in binds and "/" not in binds
    assert "/usr" in binds and not any(b.startswith(("/var", "/srv", "/home")) for b in binds)


def test_a_kernel_with_cuda_hidden_gets_no_gpu_device_and_the_cpu_memory_limit(
    tmp_path, monkeypatch
):
    """A CPU worker's kernel on a GPU machine: no /dev/nvidia* (unsetting CUDA_VISIBLE_DEVICES
    in the kernel gives it no GPU) and RLIMIT_AS, as on a machine without a GPU."""
    monkeypatch.setattr(sandbox, "gpu_devices", lambda: [Path("/dev/nvidia0")])

    def command(env):
        return sandbox.bwrap_command(["true"], cwd=tmp_path, run_dir=tmp_path, hide=[],
                                     readonly=[], limits=sandbox.Limits(), uid=None,
                                     kernel_env=env)

    on_gpu = command({"CUDA_VISIBLE_DEVICES": "0"})
    assert "/dev/nvidia0" in on_gpu and any(a.startswith("--data=") for a in on_gpu)
    for hidden in ({"CUDA_VISIBLE_DEVICES": ""}, {"CUDA_VISIBLE_DEVICES": "-1"}):
        on_cpu = command(hidden)
        assert "/dev/nvidia0" not in on_cpu and any(a.startswith("--as=") for a in on_cpu)
    assert "/dev/nvidia0" in command({})  # no variable: every GPU, as CUDA itself reads it


# ----------------------------------------------------------------------------- with a kernel
def test_kernel_works_in_a_private_folder_with_the_assignments_files_but_not_the_notebook(
    layout,
):
    """The folder nbgrader names holds the notebook being graded (hidden tests included): the
    kernel works in /tmp/work instead, where the folder's other files appear read-only."""
    (layout.cwd / "a.ipynb").write_text(SECRET)
    (layout.cwd / "data.csv").write_text("x,y\n1,2\n")
    (layout.cwd / "images").mkdir()
    (layout.cwd / "images" / "one.txt").write_text("pixels")
    out = run_cells(
        layout.cwd,
        "import os; print(6 * 7, os.getcwd(), sorted(os.listdir('.')))",
        "print(open('data.csv').read().split()[1], open('images/one.txt').read())",
        "open('result.txt', 'w').write('written inside'); print(os.listdir('.'))",
        "open('data.csv', 'w')",
    )
    assert out[0] == f"42 {sandbox.SANDBOX_WORK} ['data.csv', 'images']"
    assert out[1] == "1,2 pixels"
    assert "result.txt" in out[2]
    assert out[3].startswith("ERROR OSError")  # the assignment's files are read-only
    assert not (layout.cwd / "result.txt").exists()  # nothing comes back to the host
    assert sorted(p.name for p in layout.cwd.iterdir()) == ["a.ipynb", "data.csv", "images"]


def test_what_a_kernel_may_write_is_bounded_by_the_disk_limit(layout, monkeypatch):
    monkeypatch.setenv("GRADERS_SANDBOX_DISK_MB", "16")
    out = run_cells(
        layout.cwd,
        "import os\ntry:\n    with open('big', 'wb') as f:\n        for _ in range(64):\n"
        "            f.write(b'x' * 2**20)\nexcept OSError as err:\n    print(err.errno)\n"
        "print(os.path.getsize('big') >> 20)",
    )
    errno_line, size_mb = out[0].split()
    assert errno_line == "28"  # ENOSPC
    assert int(size_mb) <= 16


def test_a_kernel_that_fills_its_run_folder_is_killed(layout, monkeypatch):
    """The folder of the kernel's sockets is on the host's disk and writable: a kernel that
    wrote 1.5 GiB there (its path is in ``sys.argv``) was graded as if nothing happened."""
    from nbclient.exceptions import DeadKernelError

    monkeypatch.setenv("GRADERS_SANDBOX_DISK_MB", "16")
    # the killed kernel's folder (and what it wrote) goes with the test's own folder
    monkeypatch.setenv(sandbox.ENV_RUN_ROOT, str(layout.base / "runs"))
    fill = ("import os, sys, time\n"
            "run = os.path.dirname(sys.argv[sys.argv.index('-f') + 1])\n"
            "for i in range(200):\n"
            "    open(os.path.join(run, f'fill{i}'), 'wb').write(b'x' * 2**20)\n"
            "    time.sleep(0.02)\n"
            "print('wrote 200 MiB')")
    with pytest.raises(DeadKernelError):
        run_cells(layout.cwd, fill, timeout=60)
    usage = layout.base / "usage"
    (usage / "sub").mkdir(parents=True)
    (usage / "a").write_bytes(b"x" * 10)
    (usage / "sub" / "b").write_bytes(b"y" * 5)
    assert sandbox_watch.folder_usage(usage) == (15, 3)


def test_run_folders_lie_under_the_grading_runs_root_and_go_with_the_kernel(layout, monkeypatch):
    """``graders autograde`` puts its kernels' run folders in its scratch course (hidden from
    the kernels): a grading process killed from outside left them in /tmp, now the scratch
    course's removal takes them. A root too long for socket paths falls back to /tmp."""
    root = layout.course / "kernels"
    monkeypatch.setenv(sandbox.ENV_RUN_ROOT, str(root))
    out = run_cells(layout.cwd, "import sys; print(sys.argv[sys.argv.index('-f') + 1])")
    assert Path(out[0]).parent.parent == root, out
    assert root.is_dir() and list(root.iterdir()) == []  # the kernel's clean-up removed its own
    monkeypatch.setenv(sandbox.ENV_RUN_ROOT, str(layout.base / ("x" * 80)))
    folder = sandbox.run_folder()
    assert folder.parent == Path(tempfile.gettempdir())
    folder.rmdir()


def test_hidden_course_cannot_be_read_or_listed(layout):
    out = run_cells(
        layout.cwd,
        f"import os; print(open({str(layout.course / 'gradebook.db')!r}).read())",
        f"print(os.listdir({str(layout.course / 'source')!r}))",
        f"print(sorted(os.listdir({str(layout.course)!r})))",
        f"print(open({str(REPO_ROOT / 'pyproject.toml')!r}).read())",
        f"print(open({str(layout.shown / 'visible.txt')!r}).read())",
        f"print(open({str(layout.base / 'elsewhere.txt')!r}).read())",
        "import json; print(json.dumps(sorted(os.listdir('/'))))",
    )
    assert out[0].startswith("ERROR FileNotFoundError")
    assert out[1].startswith("ERROR FileNotFoundError")
    assert out[2] == "['autograded']"  # only the way down to the working folder
    assert out[3].startswith("ERROR FileNotFoundError")
    assert out[4] == "visible"  # control: a folder shown read-only is readable
    # a world-readable file on the host outside the system folders is not there at all
    assert out[5].startswith("ERROR FileNotFoundError"), out[5]
    needed = [*sandbox.python_paths(), *sandbox.default_hidden(), layout.course, layout.shown,
              *sandbox.shared_caches(dict(os.environ)).values()]
    allowed = {*sandbox.SYSTEM_ROOTS, "dev", "proc", "tmp", *(p.parts[1] for p in needed)}
    assert set(json.loads(out[6])) <= allowed, set(json.loads(out[6])) - allowed
    assert SECRET not in "".join(out)


def test_writes_outside_the_working_folder_leave_nothing_on_the_host(layout):
    name = f"planted-{uuid.uuid4().hex}"
    targets = [layout.course, layout.course / "source", REPO_ROOT, Path.home(), layout.base,
               layout.shown, Path("/usr/local")]
    code = "\n".join(
        [
            "import os",
            "for folder in %r:" % [str(t) for t in targets],
            "    try:",
            f"        open(os.path.join(folder, {name!r}), 'w').write('x')",
            "        print('wrote', folder)",
            "    except OSError as err:",
            "        print('refused', folder, type(err).__name__)",
        ]
    )
    out = run_cells(layout.cwd, code)[0]
    assert f"refused {layout.shown} OSError" in out  # shown read-only, no tmpfs there
    assert "refused /usr/local" in out
    for target in targets:
        assert not (target / name).exists(), f"{target / name} reached the host"


def test_no_network_not_even_the_hosts_loopback(layout):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # reachable from host
        out = run_cells(
            layout.cwd,
            f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)",
            "socket.getaddrinfo('pypi.org', 443)",
            "socket.create_connection(('1.1.1.1', 53), timeout=5)",
        )
    finally:
        server.close()
    assert out[0].startswith(("ERROR ConnectionRefusedError", "ERROR OSError")), out[0]
    assert out[1].startswith("ERROR gaierror"), out[1]
    assert out[2].startswith("ERROR OSError"), out[2]  # network is unreachable


def test_memory_bomb_gets_memory_error_and_the_kernel_lives_on(layout, monkeypatch):
    monkeypatch.setenv("GRADERS_SANDBOX_MEMORY_MB", "1024")
    out = run_cells(
        layout.cwd,
        "hog = []\nwhile True:\n    hog.append(bytearray(64 * 2**20))",
        "n = len(hog); del hog; print('alive', n)",
    )
    assert out[0] == "ERROR MemoryError:"
    n = int(out[1].split()[1])
    assert 0 < n < 1024 // 64  # stopped below the limit


def test_fork_bomb_is_bounded_and_dies_with_the_kernel(layout, monkeypatch):
    monkeypatch.setenv("GRADERS_SANDBOX_MAX_PROCESSES", "24")
    out = run_cells(
        layout.cwd,
        "import os, time\n"
        "children = []\n"
        "try:\n"
        "    for _ in range(1000):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(600); os._exit(0)\n"
        "        children.append(pid)\n"
        "except BlockingIOError as err:\n"
        "    print(len(children), 'then', type(err).__name__, os.getuid())",
    )
    count, _, error, uid = out[0].split()
    assert error == "BlockingIOError" and 0 < int(count) < 24
    if os.geteuid() == 0:  # the kernel had a uid of its own; none of its processes survive
        assert int(uid) >= sandbox.UID_BASE
        deadline = time.time() + 5
        while _uid_processes(int(uid)) and time.time() < deadline:
            time.sleep(0.1)
        assert _uid_processes(int(uid)) == []


def test_kernel_that_ignores_interrupts_is_killed_quickly(layout, monkeypatch):
    """Killed with its whole sandbox (:func:`sandbox.kill_sandbox`), not just the outer bwrap."""
    killed, kill = [], sandbox.kill_sandbox
    monkeypatch.setattr(sandbox, "kill_sandbox", lambda pid: (killed.append(pid), kill(pid)))
    asyncio.run(_start_ignore_interrupts_and_kill(layout.cwd, killed))


async def _start_ignore_interrupts_and_kill(cwd: Path, killed: list[int]) -> None:
    km = sandbox.SandboxKernelManager(kernel_name="python3")
    await km.start_kernel(cwd=str(cwd))
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=30)
        msg_id = kc.execute(
            "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('looping')\n"
            "while True: pass"
        )
        await _wait_for_stdout(kc, msg_id, "looping")
        await km.interrupt_kernel()
        await asyncio.sleep(1)
        assert await km.is_alive()  # SIGINT is ignored: still looping
        outer = km.provisioner.process.pid
        inside = psutil.Process(outer).children(recursive=True)
        assert inside
        start = time.monotonic()
        await km.shutdown_kernel(now=True)
        assert time.monotonic() - start < 10
        assert not await km.is_alive()
        assert killed == [outer]
        # SIGKILL takes effect asynchronously (under load a killed process reads "sleeping" for
        # a moment): each must be gone or a zombie within seconds
        def dead(process: psutil.Process) -> bool:
            try:
                return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        deadline = time.monotonic() + 5
        while not all(map(dead, inside)) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert all(map(dead, inside)), [p for p in inside if not dead(p)]
    finally:
        kc.stop_channels()


async def _wait_for_stdout(kc, msg_id: str, text: str) -> None:
    while True:
        msg = await kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            if text in msg["content"]["text"]:
                return


@pytest.mark.skipif(cpushare.hierarchy() is None, reason=cpushare.unavailable_reason())
def test_a_kernel_and_every_process_it_starts_share_one_cpu_group(layout, monkeypatch):
    """A notebook that forked busy processes in new sessions slowed the notebooks graded beside
    it 4 times: now each kernel, with all it starts, is in a CPU group of its own weighted by
    its worker's threads, which it cannot see or leave, and which goes with it."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    asyncio.run(_start_a_detached_child_and_look(layout.cwd))


async def _start_a_detached_child_and_look(cwd: Path) -> None:
    where = cpushare.hierarchy()
    km = sandbox.SandboxKernelManager(kernel_name="python3")
    await km.start_kernel(cwd=str(cwd))
    kc = km.client()
    kc.start_channels()
    group = km._cpu_group
    try:
        await kc.wait_for_ready(timeout=30)
        assert group is not None and group.parent == where.root
        assert int((group / where.weight_file).read_text()) == where.weight(2)
        msg_id = kc.execute(
            "import os, subprocess\n"
            "p = subprocess.Popen(['sleep', '67'], start_new_session=True)\n"
            "print('started', os.listdir('/sys/fs/cgroup'))")
        await _wait_for_stdout(kc, msg_id, "started []")
        inside = cpushare.members(group)
        assert km.provisioner.process.pid in inside
        commands = [psutil.Process(pid).cmdline() for pid in inside if psutil.pid_exists(pid)]
        assert ["sleep", "67"] in commands, commands
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
    assert not group.exists()


def test_cpu_groups_go_with_their_kernel_or_their_grading_process(tmp_path, monkeypatch):
    """Without a cgroup hierarchy (a plain folder stands in) the logic still holds: weights
    within range, a shell that joins first, stale groups of dead grading processes swept."""
    where = cpushare.Hierarchy(tmp_path, "cpu.weight", 100, 1, 10000)
    assert (where.weight(0.001), where.weight(2), where.weight(1e6)) == (1, 200, 10000)
    assert cpushare.cpus_of({"OMP_NUM_THREADS": "x"}) == cpushare.cpus_of({}) == 1.0
    group = cpushare.create(3, where)
    assert group is not None and (group / "cpu.weight").read_text() == "300\n"
    cmd = cpushare.join_command(group, ["bwrap", "--", "python"])
    assert cmd[:2] == ["/bin/sh", "-c"] and cmd[3:] == [str(group / "cgroup.procs"), "bwrap",
                                                        "--", "python"]
    assert cpushare.join_command(None, ["python"]) == ["python"]
    (group / "cpu.weight").unlink()
    assert cpushare.remove(group) and not group.exists()
    dead = subprocess_pid_that_ended()
    (tmp_path / f"{cpushare.PREFIX}{dead}-0").mkdir()
    (tmp_path / f"{cpushare.PREFIX}{os.getpid()}-0").mkdir()
    cpushare.sweep(where)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{cpushare.PREFIX}{os.getpid()}-0"]


def subprocess_pid_that_ended() -> int:
    import subprocess

    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_timed_out_cell_is_interrupted_and_the_next_cell_runs(layout):
    out = run_cells(layout.cwd, "import time; time.sleep(60)", "print('next')", timeout=3,
                    interrupt_on_timeout=True)
    assert out[0].startswith("ERROR KeyboardInterrupt")
    assert out[1] == "next"


def test_course_helpers_numpy_and_the_data_cache(layout, monkeypatch):
    cache = layout.course / "cache"  # inside the hidden course, shown again read-only
    cache.mkdir()
    (cache / "digits.npz").write_text("cached")
    monkeypatch.setenv("DLWORKSHOP_CACHE", str(cache))
    out = run_cells(
        layout.cwd,
        "import dlworkshop, numpy; print(dlworkshop.__name__, numpy.ones(3).sum())",
        "import os; print(open(os.environ['DLWORKSHOP_CACHE'] + '/digits.npz').read())",
        "open(os.environ['DLWORKSHOP_CACHE'] + '/digits.npz', 'w')",
    )
    assert out[0] == "dlworkshop 3.0"
    assert out[1] == "cached"
    assert out[2].startswith("ERROR OSError") and "Read-only" in out[2]
    assert (cache / "digits.npz").read_text() == "cached"


def test_the_kernel_gets_what_it_needs_of_the_environment_and_no_secret(layout, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "pg-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "gh-secret")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("DLWORKSHOP_DEVICE", "cpu")
    out = run_cells(layout.cwd, "import os, json; print(json.dumps(dict(os.environ)))")
    env = json.loads(out[0])
    assert "pg-secret" not in out[0] and "gh-secret" not in out[0]
    assert not [n for n in env if n.startswith(sandbox.ENV_PREFIX) or n == "JPY_PARENT_PID"]
    assert (env["OMP_NUM_THREADS"], env["DLWORKSHOP_DEVICE"]) == ("3", "cpu")
    assert env["HOME"] == sandbox.SANDBOX_HOME and env["PATH"] == os.environ["PATH"]


@pytest.mark.slow
def test_torch_imports_and_computes(layout):
    out = run_cells(layout.cwd, "import torch; print(torch.ones(2, 3).sum().item())")
    assert out[0] == "6.0"


@pytest.mark.slow
def test_nbgrader_autograde_runs_kernels_in_the_sandbox(tmp_path):
    """A real ``nbgrader autograde`` with :func:`sandbox_settings`: the student's code runs
    sandboxed (cannot read gradebook.db) and is still graded right."""
    course = _tiny_course(tmp_path / "course")
    student = nbformat.read(str(course.release_path("tiny")), as_version=4)
    for cell in student.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "answer":
            cell.source = (
                "import os\n"
                f"peek = os.path.exists({str(course.root / 'gradebook.db')!r})\n"
                "print('gradebook visible:', peek, 'uid', os.getuid())\n"
                "answer = 42"
            )
    course.submit("mallory", "tiny", student)
    args, env = sandbox.sandbox_settings([course.root], [], sandbox.Limits())
    proc = course.nbgrader("autograde", "tiny", "--force", "--student=mallory", *args, env=env,
                           check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    graded = nbformat.read(str(course.autograded_path("mallory", "tiny")), as_version=4)
    printed = "".join(_text(c) for c in graded.cells)
    assert "gradebook visible: False" in printed
    assert course.grades("tiny")["mallory"].score == 1.0


def _tiny_course(root: Path) -> Course:
    root.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    meta = {"solution": True, "grade": False, "locked": False, "schema_version": 3}
    test = {"solution": False, "grade": True, "locked": True, "points": 1, "schema_version": 3}
    nb = new_notebook(
        cells=[
            new_code_cell("### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION",
                          metadata={"nbgrader": {**meta, "grade_id": "answer"}}),
            new_code_cell("assert answer == 42", metadata={"nbgrader": {**test, "grade_id": "t"}}),
        ]
    )
    nb.metadata["kernelspec"] = KERNELSPEC
    (root / "source" / "tiny").mkdir(parents=True)
    nbformat.write(nb, str(root / "source" / "tiny" / "tiny.ipynb"))
    course = Course(root)
    course.generate_release("tiny")
    return course


def test_manager_is_an_async_kernel_manager():
    assert issubclass(sandbox.SandboxKernelManager, AsyncKernelManager)
    assert sandbox.SandboxKernelManager().transport == "ipc"
    from graders.ready import ReadyClient

    assert isinstance(sandbox.SandboxKernelManager().client(), ReadyClient)


def test_a_stopping_kernel_is_looked_at_every_few_milliseconds(monkeypatch):
    km = sandbox.SandboxKernelManager()
    alive, slept = iter([True, True, False]), []

    async def is_alive() -> bool:
        return next(alive)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(km, "_async_is_alive", is_alive)
    monkeypatch.setattr(asyncio, "sleep", sleep)
    asyncio.run(km._async_wait())
    assert slept == [sandbox.STOP_POLL_S] * 2 and sandbox.STOP_POLL_S <= 0.01
