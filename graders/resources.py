"""What the machine offers a grading batch: the cores this process may use, the GPUs and their
memory, and from them the default pool size, how many of its workers grade on the GPUs, each
worker's share (:class:`Slot`: threads and GPU) and memory; and whether a notebook ran out of GPU
memory (on a GPU shared by other students' notebooks).

Measured on one NVIDIA H200 with 16 cores (2026-11-27, ``scripts/bench_class.py --sweep``,
docs/benchmarks/class.md): the notebooks are bound by the cores, not the GPU. With 14
notebooks of 03_transfer_learning on the GPU at once it was 8% busy and 9% full (12.1 GiB);
the most one grading process held was 1198 MiB.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

#: What a worker's share of the cores is given in (its nbgrader process and kernels read them).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "DLWORKSHOP_THREADS")
#: GPU memory (MiB) budgeted per notebook on a GPU: the most one grading process held on an
#: NVIDIA H200 with 14 notebooks of 03_transfer_learning on it at once (1198 MiB, 2026-11-27,
#: docs/benchmarks/class.md), doubled.
KERNEL_GPU_MIB = 2400
#: The share of a GPU's memory that the notebooks on it may take together.
GPU_MEMORY_SHARE = 0.8
#: What PyTorch and CUDA say when an allocation on the GPU fails.
GPU_OUT_OF_MEMORY = re.compile(
    r"CUDA out of memory|torch\.OutOfMemoryError|OutOfMemoryError: CUDA|CUDA error: out of memory"
    r"|CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED|cudaErrorMemoryAllocation"
)


def gpu_ids(env: dict[str, str] | None = None) -> list[str]:
    """The GPUs grading may use: ``CUDA_VISIBLE_DEVICES`` if set, else those ``nvidia-smi -L``
    lists (none without an NVIDIA driver)."""
    env = os.environ if env is None else env
    visible = _visible(env)
    if visible is not None:
        return [] if visible in ([], ["-1"]) else visible
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(re.findall(r"^GPU \d+", out, re.M))]


def _visible(env: dict[str, str]) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` as a list of ids (None: not set)."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    return None if visible is None else [v.strip() for v in visible.split(",") if v.strip()]


def cuda_hidden(env: dict[str, str]) -> bool:
    """Whether ``env`` hides every GPU from CUDA (``CUDA_VISIBLE_DEVICES`` empty or -1)."""
    return _visible(env) in ([], ["-1"])


def usable_cores() -> int:
    """The CPU cores this process may run on (a Slurm task's or ``taskset``'s share, not the
    whole node's), or all of them where the platform cannot say."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def gpu_memory_mib(ids: Sequence[str]) -> list[int | None]:
    """Total memory of each GPU in ``ids`` (indices or UUIDs, as :func:`gpu_ids` gives them),
    from ``nvidia-smi``; None where it does not say."""
    query = ["nvidia-smi", "--query-gpu=index,uuid,memory.total", "--format=csv,noheader,nounits"]
    found: dict[str, int] = {}
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[2].isdigit():
            found[parts[0]] = found[parts[1]] = int(parts[2])
    return [found.get(i) for i in ids]


def default_workers(cores: int) -> int:
    """Pool size: one worker per core (the notebooks are bound by the cores, measured on an
    NVIDIA H200 and an NVIDIA H100 with 16 cores each, docs/benchmarks/class.md)."""
    return max(1, cores)


def default_gpu_workers(workers: int, gpu_mib: Sequence[int | None] = ()) -> int:
    """How many of ``workers`` grade on the GPUs (the others on the CPU): as many notebooks as
    the GPUs' memory holds at :data:`KERNEL_GPU_MIB` each (:data:`GPU_MEMORY_SHARE` of it; a GPU
    of unknown memory takes them all), at least one per GPU. On a 16 GB card with 16 cores: 5
    notebooks on the GPU and 11 on the CPU at once, where the former cap of the whole pool by
    the GPU's memory left 11 cores idle."""
    if not gpu_mib:
        return 0
    fits = sum(workers if mib is None else max(1, int(mib * GPU_MEMORY_SHARE) // KERNEL_GPU_MIB)
               for mib in gpu_mib)
    return max(0, min(workers, fits))


@dataclass(frozen=True)
class Slot:
    """What one worker may use: BLAS/torch threads and, on a GPU machine, one GPU (its id) or
    none (``""``: the CPU, with CUDA hidden from the notebook). ``gpu`` None: no GPU machine."""

    index: int
    threads: int
    gpu: str | None = None

    def env(self) -> dict[str, str]:
        """Environment variables for the worker's nbgrader process (its kernels inherit them)."""
        env = {var: str(self.threads) for var in THREAD_VARS}
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        return env


def make_slots(
    workers: int, cores: int, gpus: Sequence[str], gpu_workers: int | None = None
) -> list[Slot]:
    """One :class:`Slot` per worker: an equal share of the cores (at least one thread each);
    with GPUs, the first ``gpu_workers`` (default: all) get GPU ``i % len(gpus)`` and the
    others the CPU, with CUDA hidden."""
    workers = max(1, workers)
    threads = max(1, cores // workers)
    on_gpu = 0 if not gpus else workers if gpu_workers is None else gpu_workers
    return [
        Slot(i, threads, None if not gpus else gpus[i % len(gpus)] if i < on_gpu else "")
        for i in range(workers)
    ]


def default_memory_mb(workers: int) -> int:
    """An equal share of 80% of the machine's memory per worker, in MiB."""
    return max(256, int(psutil.virtual_memory().total * 0.8 / max(1, workers)) >> 20)


def out_of_gpu_memory(folder: Path) -> bool:
    """Whether a notebook in ``folder`` (an autograded copy) has an output that says the GPU
    ran out of memory: an error, or text on stdout or stderr (a student who prints it only gets
    graded once more, on the CPU)."""
    for path in sorted(Path(folder).glob("*.ipynb")):
        try:
            cells = json.loads(path.read_text(errors="replace")).get("cells", [])
        except (OSError, ValueError, AttributeError):
            continue
        for cell in cells if isinstance(cells, list) else []:
            outputs = cell.get("outputs") if isinstance(cell, dict) else None
            for out in outputs if isinstance(outputs, list) else []:
                if isinstance(out, dict) and GPU_OUT_OF_MEMORY.search(_output_text(out)):
                    return True
    return False


def _output_text(output: dict) -> str:
    parts = [output.get("ename"), output.get("evalue"), output.get("text"),
             output.get("traceback")]
    return "\n".join(str(p) if not isinstance(p, list) else "\n".join(map(str, p))
                     for p in parts if p)
