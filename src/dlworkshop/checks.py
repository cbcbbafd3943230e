"""Assertions for test cells, with messages a student can act on.

Each helper raises ``AssertionError`` naming what was checked, what was expected and what was
found, e.g. ``"logits: expected shape (64, 10), got (10, 64)"``. Visible and hidden tests use the
same helpers so that a hidden failure reads as clearly as a visible one.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from dlworkshop.gradcheck import rel_error

if TYPE_CHECKING:
    import torch


def _as_numpy(value: object) -> np.ndarray:
    torch = sys.modules.get("torch")  # a tensor exists only if torch is loaded; never import it
    if torch is not None and isinstance(value, torch.Tensor):
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
        raise AssertionError(f"{name}: expected a {wanted}, got {value.__class__.__name__}")


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


def _with_hint(message: str, hint: str) -> str:
    return f"{message}. Hint: {hint}" if hint else message


def check_close(
    name: str,
    actual: object,
    expected: object,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    hint: str = "",
) -> None:
    """``actual`` matches ``expected`` elementwise within ``rtol``/``atol`` (and in shape);
    ``hint`` (what usually causes a difference) ends the message when they differ."""
    a, e = _as_numpy(actual), _as_numpy(expected)
    check_shape(name, a, e.shape)
    check_finite(name, a)
    if not np.allclose(a, e, rtol=rtol, atol=atol):
        diff = np.abs(a.astype(np.float64) - e.astype(np.float64))
        idx = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.ndim else ()
        raise AssertionError(_with_hint(
            f"{name}: values differ from the expected ones; largest difference "
            f"{float(diff.max()):.3g} at index {tuple(int(i) for i in idx)} "
            f"(got {float(a[idx]):.6g}, expected {float(e[idx]):.6g})", hint))


def check_rel_error(
    name: str, actual: object, expected: object, max_error: float, hint: str = ""
) -> float:
    """Relative error (:func:`dlworkshop.gradcheck.rel_error`) at most ``max_error``; returns it.
    ``hint`` (what usually causes such an error) ends the message when it is too large."""
    a, e = _as_numpy(actual), _as_numpy(expected)
    check_shape(name, a, e.shape)
    check_finite(name, a)
    err = rel_error(a, e)
    if not err <= max_error:
        raise AssertionError(_with_hint(
            f"{name}: relative error {err:.2e} against the reference gradient, "
            f"must be at most {max_error:g}", hint))
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
    import torch

    from dlworkshop import testing

    label = f"{mine_cls.__name__}({', '.join(f'{k}={v}' for k, v in hyper.items())})"
    rng = np.random.default_rng(seed)
    initial = {"W": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}
    start = {k: v.copy() for k, v in initial.items()}  # `initial` may be updated in place
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in initial.items()}
    params = testing.place(initial)  # where the optimizer runs, so that in-place updates show
    mine, ref = mine_cls(params, **hyper), torch_cls(list(tparams.values()), **hyper)
    history = []
    for step in range(1, steps + 1):
        grads = {k: rng.normal(size=v.shape) for k, v in initial.items()}
        history.append(grads)
        for k, t in tparams.items():
            t.grad = torch.tensor(grads[k])
        mine.step(grads)
        ref.step()
        current = testing.fetch(params)
        for k in initial:
            name, want = f"{label}: params[{k!r}] after step {step}", tparams[k].detach().numpy()
            try:
                check_close(name, current[k], want, rtol=1e-10, atol=1e-12)
            except AssertionError:
                hint = _optimizer_hint(torch_cls.__name__, hyper, start, history, current)
                check_close(name, current[k], want, rtol=1e-10, atol=1e-12, hint=hint)


def _optimizer_mistakes(kind: str, hyper: dict) -> dict[str, object]:
    """Known wrong versions of torch's SGD (momentum) and Adam, as ``update(p, g, state, t)``
    functions, each with the hint it deserves."""
    lr = hyper.get("lr", 1e-3)
    if kind == "SGD":
        mu = hyper.get("momentum", 0.0)

        def dampened(p, g, s, t):
            s["v"] = mu * s.get("v", 0.0) + (1 - mu) * g
            return p - lr * s["v"]

        def forgets(p, g, s, t):
            return p - lr * g

        return {
            "torch's momentum adds the whole gradient: v <- momentum * v + g (no (1 - momentum) "
            "factor), then p <- p - lr * v": dampened,
            "the velocity must persist between steps (keep it on the optimizer, one array per "
            "parameter, starting at zero); here every step looks like plain SGD": forgets,
        } if mu else {}
    if kind == "Adam":
        b1, b2 = hyper.get("betas", (0.9, 0.999))
        eps = hyper.get("eps", 1e-8)

        def adam(correct_m: bool, correct_v: bool, eps_inside: bool):
            def update(p, g, s, t):
                s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
                s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
                m = s["m"] / (1 - b1**t) if correct_m else s["m"]
                v = s["v"] / (1 - b2**t) if correct_v else s["v"]
                denom = np.sqrt(v + eps) if eps_inside else np.sqrt(v) + eps
                return p - lr * m / denom
            return update

        return {
            "bias correction is missing: divide m by (1 - beta1**t) and v by (1 - beta2**t), "
            "with t the step number starting at 1": adam(False, False, False),
            "the bias correction of v is missing: v_hat = v / (1 - beta2**t)":
                adam(True, False, False),
            "the bias correction of m is missing: m_hat = m / (1 - beta1**t)":
                adam(False, True, False),
            "eps goes outside the square root: p <- p - lr * m_hat / (sqrt(v_hat) + eps)":
                adam(True, True, True),
        }
    return {}


def _optimizer_hint(
    kind: str, hyper: dict, initial: dict, history: list[dict], current: dict
) -> str:
    """The hint of the known mistake (see :func:`_optimizer_mistakes`) whose updates give
    exactly ``current`` after the gradients of ``history``, or ``""``."""
    for hint, update in _optimizer_mistakes(kind, hyper).items():
        ok = True
        for k, p in initial.items():
            state: dict = {}
            for t, grads in enumerate(history, start=1):
                p = update(p, grads[k], state, t)
            mine = np.asarray(current[k], dtype=np.float64)
            ok = ok and mine.shape == p.shape and np.allclose(mine, p, rtol=1e-8, atol=1e-10)
        if ok:
            return hint
    return ""


def require(*names: str, made_by: str) -> None:
    """Each of ``names`` is defined where the calling test cell runs, else a ``NameError``
    saying which task's cell defines it: a test whose input is missing because an earlier
    cell failed says what to fix first (the grader adds which cell that is and how it ended)."""
    namespace = sys._getframe(1).f_globals
    for name in names:
        try:
            namespace[name]
        except KeyError:
            raise NameError(
                f"{name} is not defined: it comes from {made_by}. Run that cell and fix the "
                "error it shows, then run this test again", name=name
            ) from None


class Points:
    """Partial credit inside one test cell: each check earns its own points.

    ``total`` is the cell's points. Wrap each group of checks in ``with points.part(n, "what"):``;
    a part whose checks raise (a failed assertion, or an error in the code under test) earns
    nothing and the cell goes on. End the cell with ``points.total()``: it prints which parts
    passed (and why the others failed) and returns the points earned, which nbgrader takes as
    the cell's score because it is the cell's last value.
    """

    def __init__(self, total: float) -> None:
        self.max = float(total)
        # (what, points, outcome): outcome None (passed), _PENDING, or the failure's message
        self.parts: list[tuple[str, float, object]] = []

    @contextlib.contextmanager
    def part(self, points: float, what: str, when_graded: bool = False) -> Iterator[None]:
        """A group of checks worth ``points``. ``when_graded``: the part's checks are hidden
        tests, so where no grader runs (your own Jupyter) it is only announced, and counted as
        earned, with a note that it is checked when grading."""
        try:
            yield
        except Exception as err:  # noqa: BLE001 (any failure of this part costs its points)
            self.parts.append((what, float(points), _failure(err)))
        else:
            pending = when_graded and not _grading()
            self.parts.append((what, float(points), _PENDING if pending else None))

    def earned(self) -> float:
        """Points of the parts that passed (or wait for grading), at most the cell's total.
        A failed part never counts, whatever its message (a student's error may have none)."""
        return min(self.max, sum(p for _, p, outcome in self.parts
                                 if outcome is None or outcome is _PENDING))

    def total(self) -> float:
        """Print each part's result and return the points earned (the cell's score)."""
        pending = 0.0
        for what, points, outcome in self.parts:
            if outcome is _PENDING:
                mark, pending = "checked when grading (hidden test)", pending + points
            else:
                mark = "passed" if outcome is None else f"FAILED: {outcome}"
            print(f"[{points:g} point{'s' if points != 1 else ''}] {what}: {mark}")
        earned = self.earned()
        note = f" ({pending:g} of them decided when grading)" if pending else ""
        print(f"{earned:g} of {self.max:g} points{note}")
        return earned


#: A part announced where no grader runs: an object, never text a student's error could carry.
_PENDING = object()


def _failure(err: BaseException) -> str:
    """What a failed part prints: the error's type (the student's own for an error of their
    code, when it is a name) and message."""
    kind = getattr(err, "type_name", None)
    if not (isinstance(kind, str) and kind.isidentifier()):
        kind = type(err).__name__
    try:
        text = str(err)
    except Exception:  # noqa: BLE001 (a student's exception whose str() fails)
        text = ""
    return f"{kind}: {text}" if text.strip() else kind


def _grading() -> bool:
    """Whether a grader runs this test (its checks then include the hidden ones)."""
    from dlworkshop import testing

    return getattr(testing, "_kernel", None) is not None
