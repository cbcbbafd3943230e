"""A CPU share of its own for each sandboxed kernel (a control group per kernel).

Each grading worker gives its kernel a number of threads (``OMP_NUM_THREADS`` and the like), but a
kernel may start processes of its own: a notebook that forked busy processes, each in a new
session (the scheduler groups processes by session, so each took a full share), made the notebooks
graded beside it 4 times slower. So :class:`graders.sandbox.SandboxKernelManager` puts every
kernel, before ``bwrap`` starts it, into a control group of its own whose CPU *weight* is its
worker's thread count. Every process the kernel starts stays in that group (a sandboxed kernel
has no capabilities and sees ``/sys`` read-only), so when the machine is busy the whole kernel
gets its share and no more; when cores are idle it may use them (a weight, not a quota: honest
notebooks lose nothing).

Two hierarchies are supported: cgroup v1's ``cpu`` controller (``cpu.shares``, 1024 a CPU) and
cgroup v2 at the root of the process's cgroup namespace with the ``cpu`` controller
(``cpu.weight``, 100 a CPU). Groups sit directly below the hierarchy's root, beside the processes
there, whose weight is one CPU each. Without write access (not root, a hierarchy not delegated)
kernels run as before: :func:`hierarchy` returns ``None`` and :func:`unavailable_reason` says why.
A group is removed with its kernel (:func:`remove`, which kills what is left in it); groups whose
grading process was killed from outside are removed by the next one (:func:`sweep`).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

V1_ROOT = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")
PREFIX = "graders-kernel-"
_counter = itertools.count()


@dataclass(frozen=True)
class Hierarchy:
    """Where kernel groups go (``root``), and how a weight is written there."""

    root: Path
    weight_file: str  # cpu.shares (v1) or cpu.weight (v2)
    per_cpu: int  # the weight of one CPU: 1024 (v1) or 100 (v2)
    low: int
    high: int

    def weight(self, cpus: float) -> int:
        """The weight of ``cpus`` CPUs, within what the hierarchy accepts."""
        return max(self.low, min(self.high, round(self.per_cpu * cpus)))


def _probe(root: Path) -> str:
    """Why groups cannot be made and joined below ``root`` ("" when they can)."""
    probe = root / f"{PREFIX}probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError as err:
        return f"cannot create a control group in {root}: {err.strerror}"
    try:
        with open(probe / "cgroup.procs", "w") as fh:  # an empty write: may we move processes?
            fh.write("")
    except OSError as err:
        return f"cannot move processes into {probe}: {err.strerror}"
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()
    return ""


@functools.cache
def _find() -> tuple[Hierarchy | None, str]:
    if (V1_ROOT / "cpu.shares").is_file():
        why = _probe(V1_ROOT)
        return (None, why) if why else (Hierarchy(V1_ROOT, "cpu.shares", 1024, 2, 262144), "")
    controllers = V2_ROOT / "cgroup.subtree_control"
    if not controllers.is_file():
        return None, "no cgroup hierarchy with the cpu controller is mounted"
    if "cpu" not in controllers.read_text().split():
        with contextlib.suppress(OSError), open(controllers, "w") as fh:
            fh.write("+cpu")
        if "cpu" not in controllers.read_text().split():
            return None, f"the cpu controller is not enabled below {V2_ROOT}"
    why = _probe(V2_ROOT)
    return (None, why) if why else (Hierarchy(V2_ROOT, "cpu.weight", 100, 1, 10000), "")


def hierarchy() -> Hierarchy | None:
    """Where this process can give kernels CPU groups, or ``None`` (then
    :func:`unavailable_reason` says why)."""
    return _find()[0]


def unavailable_reason() -> str:
    """Why kernels get no CPU group here ("" when they do)."""
    return _find()[1]


def cpus_of(env: dict[str, str]) -> float:
    """The CPUs a kernel with ``env`` is meant to use: its worker's threads (one if unset)."""
    try:
        return max(float(env.get("OMP_NUM_THREADS") or 1), 0.01)
    except ValueError:
        return 1.0


def create(cpus: float, where: Hierarchy | None = None) -> Path | None:
    """A new group weighted ``cpus`` CPUs (``None`` where groups cannot be made)."""
    where = where or hierarchy()
    if where is None:
        return None
    sweep(where)
    group = where.root / f"{PREFIX}{os.getpid()}-{next(_counter)}"
    try:
        group.mkdir()
        (group / where.weight_file).write_text(f"{where.weight(cpus)}\n")
    except OSError:
        remove(group)
        return None
    return group


def join_command(group: Path | None, cmd: list[str]) -> list[str]:
    """``cmd``, run by a shell that first moves itself into ``group`` (so that everything it
    becomes and starts is in it from its first instruction; a process moved after its start
    would leave the children it already made outside)."""
    if group is None:
        return cmd
    return ["/bin/sh", "-c", 'echo $$ > "$0" 2>/dev/null; exec "$@"',
            str(group / "cgroup.procs"), *cmd]


def members(group: Path) -> list[int]:
    """The processes in ``group`` (none when it is gone)."""
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def remove(group: Path | None, wait_s: float = 2.0) -> bool:
    """Kill what is left in ``group`` and remove it; ``False`` if it is still there after
    ``wait_s`` seconds."""
    if group is None:
        return True
    deadline = time.monotonic() + wait_s
    while True:
        for pid in members(group):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            group.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)


def sweep(where: Hierarchy) -> None:
    """Remove the groups of grading processes that are gone (killed before their clean-up)."""
    for group in where.root.glob(f"{PREFIX}*-*"):
        owner = group.name[len(PREFIX):].split("-")[0]
        if owner.isdigit() and not _alive(int(owner)):
            remove(group, wait_s=0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
