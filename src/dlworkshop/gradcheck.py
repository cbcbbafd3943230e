"""Numerical gradients and the relative error used to compare gradients (float64)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """Largest elementwise relative error ``|a - b| / max(1e-8, |a| + |b|)``, in float64.

    A correct analytical gradient typically shows 1e-7 or less against a central-difference
    estimate in float64; 1e-2 or more means a bug.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare arrays of shapes {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def numerical_gradient(
    f: Callable[[np.ndarray], float | np.ndarray],
    x: np.ndarray,
    dout: np.ndarray | None = None,
    h: float = 1e-5,
) -> np.ndarray:
    """Central-difference gradient of ``sum(f(x) * dout)`` with respect to ``x``.

    ``f`` may return a scalar (leave ``dout`` as None) or an array (then ``dout`` is the upstream
    gradient, of the same shape as ``f(x)``). ``x`` is perturbed in place and restored, so ``f``
    may close over it. Use float64 inputs: in float32 the estimate itself is only good to ~1e-3.
    """
    if x.dtype != np.float64:
        raise TypeError(f"numerical_gradient needs a float64 array, got {x.dtype}")
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        idx = it.multi_index
        old = x[idx]
        x[idx] = old + h
        plus = np.asarray(f(x), dtype=np.float64).copy()
        x[idx] = old - h
        minus = np.asarray(f(x), dtype=np.float64).copy()
        x[idx] = old
        diff = plus - minus
        grad[idx] = np.sum(diff * dout) / (2 * h) if dout is not None else np.sum(diff) / (2 * h)
        it.iternext()
    return grad
