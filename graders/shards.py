"""Shards of a class: independent grading runs (one per machine) split the students by name.

``python -m graders autograde --shard K/N`` grades shard ``K`` of ``N``; a student's shard is a
hash of the name alone, so every machine agrees without talking to the others, adding students
moves nobody, and the ``N`` shards are disjoint and together hold everyone.

``--shard-from-env`` takes ``K/N`` from the job engine instead (:func:`shard_from_env`), so one
unchanged command runs as every task of a Kubernetes Indexed Job or a Slurm job array
(``deploy/``). It is opt-in: a grading run that merely happens to sit inside an array job never
grades a slice by surprise, and an explicit ``--shard`` always wins.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (1 <= K <= N) as ``(K, N)``; a ValueError saying what is expected otherwise."""
    match = _SHARD.fullmatch(text or "")
    if not match:
        raise ValueError(f"shard must look like K/N (for example 1/2), not {text!r}")
    k, n = int(match[1]), int(match[2])
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"shard {text!r}: need 1 <= K <= N and N >= 1")
    return k, n


def shard_of(student: str, n: int) -> int:
    """The shard (1..n) of ``student``: a hash of the name alone, the same on every machine."""
    digest = hashlib.sha256(student.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def select_shard(students: Iterable[str], k: int, n: int) -> list[str]:
    """The students (in the given order, without repeats) that belong to shard ``k`` of ``n``."""
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: need 1 <= K <= N and N >= 1")
    return [s for s in dict.fromkeys(students) if shard_of(s, n) == k]


# ----------------------------------------------------------------------- from the environment
#: ``K/N`` for any engine (a wrapper script, GNU parallel, ...); checked first.
ENV_SHARD = "GRADERS_SHARD"
#: ``N`` for engines that give each task only its index (Kubernetes: the Job's ``completions``).
ENV_SHARD_COUNT = "GRADERS_SHARD_COUNT"
#: Kubernetes Indexed Job: the pod's index, 0 .. completions - 1.
K8S_INDEX = "JOB_COMPLETION_INDEX"
#: Slurm job array (``sbatch --array=MIN-MAX[:STEP]``): the task's id and the array's shape.
SLURM_ID, SLURM_MIN, SLURM_STEP, SLURM_COUNT = (
    "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP",
    "SLURM_ARRAY_TASK_COUNT",
)
ENV_HELP = (
    f"{ENV_SHARD}=K/N; or {K8S_INDEX} (Kubernetes Indexed Job, 0-based) with {ENV_SHARD_COUNT}=N;"
    f" or {SLURM_ID} with {SLURM_MIN} and {SLURM_COUNT} (Slurm job array; {ENV_SHARD_COUNT}"
    " overrides the count)"
)


@dataclass(frozen=True)
class EnvShard:
    """A shard found in the environment: ``k`` of ``n``, and the variables that said so."""

    k: int
    n: int
    source: str


def _whole(env: Mapping[str, str], name: str) -> int:
    value = env.get(name, "").strip()
    if not re.fullmatch(r"-?\d+", value):
        raise ValueError(f"{name} must be a whole number, not {env.get(name)!r}")
    return int(value)


def _checked(k: int, n: int, source: str) -> EnvShard:
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n} from {source}: need 1 <= K <= N (for Slurm, a "
                         "contiguous --array=MIN-MAX[:STEP]; for Kubernetes, "
                         f"{ENV_SHARD_COUNT} equal to the Job's completions)")
    return EnvShard(k, n, source)


def shard_from_env(env: Mapping[str, str] | None = None) -> EnvShard:
    """The shard this task of a job engine grades, from ``env`` (default ``os.environ``).

    In this order: ``GRADERS_SHARD=K/N``; ``JOB_COMPLETION_INDEX`` (Kubernetes, 0-based: K =
    index + 1) with N from ``GRADERS_SHARD_COUNT`` (Kubernetes has no variable for the Job's
    size, so the manifest sets it); ``SLURM_ARRAY_TASK_ID`` with K = (id - MIN) / STEP + 1 (so
    ``--array=0-3``, ``1-4`` and ``0-6:2`` all give 1..4) and N from ``GRADERS_SHARD_COUNT`` or
    else ``SLURM_ARRAY_TASK_COUNT``. A ValueError names the variables when none is set or the
    values do not make a shard."""
    env = os.environ if env is None else env
    if env.get(ENV_SHARD):
        k, n = parse_shard(env[ENV_SHARD])
        return EnvShard(k, n, f"{ENV_SHARD}={env[ENV_SHARD].strip()}")
    if env.get(K8S_INDEX, "").strip():
        if not env.get(ENV_SHARD_COUNT, "").strip():
            raise ValueError(f"{K8S_INDEX} is set but {ENV_SHARD_COUNT} is not: set it to the "
                             "Indexed Job's completions")
        index, n = _whole(env, K8S_INDEX), _whole(env, ENV_SHARD_COUNT)
        source = f"{K8S_INDEX}={index}, {ENV_SHARD_COUNT}={n}"
        return _checked(index + 1, n, source)
    if env.get(SLURM_ID, "").strip():
        task, low = _whole(env, SLURM_ID), _whole(env, SLURM_MIN)
        step = _whole(env, SLURM_STEP) if env.get(SLURM_STEP, "").strip() else 1
        count_var = ENV_SHARD_COUNT if env.get(ENV_SHARD_COUNT, "").strip() else SLURM_COUNT
        n = _whole(env, count_var)
        source = f"{SLURM_ID}={task}, {SLURM_MIN}={low}, {count_var}={n}"
        if step < 1 or (task - low) % step:
            raise ValueError(f"{source}, {SLURM_STEP}={step}: not a task of a contiguous "
                             "array --array=MIN-MAX[:STEP]")
        return _checked((task - low) // step + 1, n, source)
    raise ValueError(f"no shard in the environment: set {ENV_HELP}")
