"""Seeding, device selection and thread settings."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEVICE_ENV = "DLWORKSHOP_DEVICE"
THREADS_ENV = "DLWORKSHOP_THREADS"


def get_device(prefer: str | None = None) -> torch.device:
    """The device notebooks should use: ``cuda`` when available, else ``cpu``.

    ``prefer`` (or the ``DLWORKSHOP_DEVICE`` environment variable, e.g. ``cpu`` to force the CPU
    on a GPU machine) overrides the automatic choice. Asking for CUDA where there is none is an
    error rather than a silent fallback, so a grader never believes it used a GPU that it did not.
    """
    choice = (prefer or os.environ.get(DEVICE_ENV, "") or "auto").strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {choice!r} was requested (argument or ${DEVICE_ENV}) but CUDA is not "
            "available on this machine; unset it or use 'cpu'."
        )
    return device


def seed_everything(seed: int = 0) -> int:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so that a run is repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return seed


def set_num_threads(n: int | None = None) -> int:
    """Cap torch's intra-op threads (default: ``$DLWORKSHOP_THREADS`` or ``$OMP_NUM_THREADS``).

    With several graders on one machine torch's default of one thread per core oversubscribes
    the CPU and a tiny model can run a hundred times slower; graders set the variable per worker.
    """
    if n is None:
        raw = os.environ.get(THREADS_ENV) or os.environ.get("OMP_NUM_THREADS")
        n = int(raw) if raw else torch.get_num_threads()
    n = max(1, int(n))
    torch.set_num_threads(n)
    return n
