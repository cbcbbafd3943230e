"""Stopping a running sandbox (:mod:`graders.sandbox`): kill it with everything inside, and
watch the one folder on the host it may write to (its run folder, for its sockets)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil


def kill_sandbox(pid: int) -> None:
    """SIGKILL the sandbox whose outer ``bwrap`` process is ``pid``, and everything in it. The
    caller makes sure ``pid`` is still that process (its child not reaped yet, or a
    :class:`psutil.Process` that is running): a reaped pid may be another process by now.

    Killing the outer ``bwrap`` alone is not enough while the sandbox is young: its inner
    process (the init of the sandbox's process namespace, in a session of its own) takes its
    parent-death signal during its own start-up, and one orphaned before that lives on with the
    kernel (seen under load: a kernel killed within milliseconds of its start, 1 in 10). So the
    outer one is stopped first (it cannot start the inner one while its children are read),
    the inner one is killed (its death takes every process of the namespace with it), then the
    outer one."""
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGSTOP)
    try:
        inside = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        inside = []
    for process in inside:
        with contextlib.suppress(psutil.Error):
            process.kill()
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


RUN_FOLDER_POLL_S = 0.25
RUN_FOLDER_ENTRIES = 1000  # sockets and a connection file are all a kernel needs there


def folder_usage(folder: Path, max_entries: int = RUN_FOLDER_ENTRIES) -> tuple[int, int]:
    """``(bytes, entries)`` below ``folder`` (apparent sizes; counting stops past
    ``max_entries``)."""
    total = count = 0
    stack = [str(folder)]
    while stack and count <= max_entries:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as entries:
            for entry in entries:
                count += 1
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_size
    return total, count


def watch_run_folder(process: Any, folder: Path, limit: int, log: Any) -> None:
    """Kill the sandbox of ``process`` when its run folder (on the host's disk: the one writable
    place there, for its sockets) holds more than ``limit`` bytes or too many entries."""
    while process.poll() is None:
        used, entries = folder_usage(folder)
        if used > limit or entries > RUN_FOLDER_ENTRIES:
            log.error("the kernel wrote %d MiB (%d entries) into its run folder, over the "
                      "sandbox's disk limit: killed", used >> 20, entries)
            kill_sandbox(process.pid)
            return
        time.sleep(RUN_FOLDER_POLL_S)
