"""Assertions for test cells, with messages a student can act on.

Each helper raises ``AssertionError`` naming what was checked, what was expected and what was
found, e.g. ``"logits: expected shape (64, 10), got (10, 64)"``. Visible and hidden tests use the
same helpers so that a hidden failure reads as clearly as a visible one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dlworkshop.gradcheck import rel_error


def _as_numpy(value: object) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def check_type(name: str, value: object, expected: type | tuple[type, ...]) -> None:
    """``value`` is an instance of ``expected``."""
    if not isinstance(value, expected):
        wanted = (
            " or ".join(t.__name__ for t in expected)
            if isinstance(expected, tuple)
            else expected.__name__
        )
        raise AssertionError(f"{name}: expected a {wanted}, got {type(value).__name__}")


def check_shape(name: str, value: object, expected: Sequence[int]) -> None:
    """``value`` (array or tensor) has exactly the shape ``expected``."""
    if value is None:
        raise AssertionError(f"{name}: expected an array of shape {tuple(expected)}, got None")
    shape = tuple(value.shape) if hasattr(value, "shape") else np.shape(value)
    if shape != tuple(expected):
        hint = ""
        if sorted(shape) == sorted(expected) and shape != tuple(expected):
            hint = " (same sizes in another order: a transpose or a wrong axis?)"
        raise AssertionError(f"{name}: expected shape {tuple(expected)}, got {shape}{hint}")


def check_finite(name: str, value: object) -> None:
    """No NaN or infinity in ``value``."""
    arr = _as_numpy(value)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.isfinite(arr).sum())
        raise AssertionError(
            f"{name}: {bad} of {np.size(arr)} values are NaN or infinite "
            "(overflow in exp? division by zero?)"
        )


def check_close(
    name: str, actual: object, expected: object, rtol: float = 1e-5, atol: float = 1e-7
) -> None:
    """``actual`` matches ``expected`` elementwise within ``rtol``/``atol`` (and in shape)."""
    a, e = _as_numpy(actual), _as_numpy(expected)
    check_shape(name, a, e.shape)
    check_finite(name, a)
    if not np.allclose(a, e, rtol=rtol, atol=atol):
        diff = np.abs(a.astype(np.float64) - e.astype(np.float64))
        idx = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.ndim else ()
        raise AssertionError(
            f"{name}: values differ from the expected ones; largest difference "
            f"{float(diff.max()):.3g} at index {tuple(int(i) for i in idx)} "
            f"(got {float(a[idx]):.6g}, expected {float(e[idx]):.6g})"
        )


def check_rel_error(name: str, actual: object, expected: object, max_error: float) -> float:
    """Relative error (:func:`dlworkshop.gradcheck.rel_error`) at most ``max_error``; returns it."""
    a, e = _as_numpy(actual), _as_numpy(expected)
    check_shape(name, a, e.shape)
    check_finite(name, a)
    err = rel_error(a, e)
    if not err <= max_error:
        raise AssertionError(
            f"{name}: relative error {err:.2e} against the reference gradient, "
            f"must be at most {max_error:g}"
        )
    return err


def check_at_least(name: str, value: float, minimum: float, why: str = "") -> None:
    """A metric (an accuracy, say) is at least ``minimum``."""
    if not value >= minimum:
        raise AssertionError(
            f"{name}: got {value:.4f}, need at least {minimum:.4f}" + (f". {why}" if why else "")
        )


def check_at_most(name: str, value: float, maximum: float, why: str = "") -> None:
    """A metric is at most ``maximum``."""
    if not value <= maximum:
        raise AssertionError(
            f"{name}: got {value:.4f}, need at most {maximum:.4f}" + (f". {why}" if why else "")
        )


def check_optimizer_against_torch(
    mine_cls: type,
    torch_cls: type[torch.optim.Optimizer],
    hyper: dict,
    steps: int = 5,
    seed: int = 0,
) -> None:
    """A NumPy optimizer class follows a ``torch.optim`` class step by step.

    ``mine_cls(params, **hyper)`` must update the arrays of the dict ``params`` when its
    ``step(grads)`` is called; ``torch_cls(tensors, **hyper)`` is the reference. Both see the same
    random gradients for ``steps`` steps; parameters must agree to 1e-10 after every step.
    """
    from dlworkshop import testing

    label = f"{mine_cls.__name__}({', '.join(f'{k}={v}' for k, v in hyper.items())})"
    rng = np.random.default_rng(seed)
    initial = {"W": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in initial.items()}
    params = testing.place(initial)  # where the optimizer runs, so that in-place updates show
    mine, ref = mine_cls(params, **hyper), torch_cls(list(tparams.values()), **hyper)
    for step in range(1, steps + 1):
        grads = {k: rng.normal(size=v.shape) for k, v in initial.items()}
        for k, t in tparams.items():
            t.grad = torch.tensor(grads[k])
        mine.step(grads)
        ref.step()
        current = testing.fetch(params)
        for k in initial:
            check_close(
                f"{label}: params[{k!r}] after step {step}",
                current[k],
                tparams[k].detach().numpy(),
                rtol=1e-10,
                atol=1e-12,
            )
