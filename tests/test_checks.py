"""The assertion helpers: silent when the check holds, an actionable message when it does not."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from dlworkshop import checks
from dlworkshop.gradcheck import rel_error


def _message(call, *args, **kwargs) -> str:
    with pytest.raises(AssertionError) as info:
        call(*args, **kwargs)
    return str(info.value)


# ------------------------------------------------------------------------------ check_type


def test_check_type_passes():
    assert checks.check_type("n", 3, int) is None
    assert checks.check_type("x", np.zeros(2), (torch.Tensor, np.ndarray)) is None


def test_check_type_fails_naming_both_types():
    msg = _message(checks.check_type, "weights", np.zeros(2), torch.Tensor)
    assert msg == "weights: expected a Tensor, got ndarray"
    msg = _message(checks.check_type, "lr", "0.1", (int, float))
    assert msg == "lr: expected a int or float, got str"


# ------------------------------------------------------------------------------ check_shape


@pytest.mark.parametrize(
    "value", [np.zeros((64, 10)), torch.zeros(64, 10), [[0.0] * 10] * 64], ids=type
)
def test_check_shape_passes(value):
    assert checks.check_shape("logits", value, (64, 10)) is None
    assert checks.check_shape("logits", value, [64, 10]) is None


def test_check_shape_transpose_hint():
    msg = _message(checks.check_shape, "logits", np.zeros((10, 64)), (64, 10))
    assert msg.startswith("logits: ")
    assert "expected shape (64, 10)" in msg and "got (10, 64)" in msg
    assert "transpose" in msg


def test_check_shape_no_hint_for_other_sizes():
    msg = _message(checks.check_shape, "h", torch.zeros(64, 5), (64, 10))
    assert "expected shape (64, 10)" in msg and "got (64, 5)" in msg
    assert "transpose" not in msg
    msg = _message(checks.check_shape, "h", np.zeros(640), (64, 10))
    assert "got (640,)" in msg and "transpose" not in msg


def test_check_shape_none():
    msg = _message(checks.check_shape, "out", None, (3, 2))
    assert "out" in msg and "(3, 2)" in msg and "None" in msg


# ------------------------------------------------------------------------------ check_finite


def test_check_finite_passes():
    assert checks.check_finite("x", np.array([0.0, -1e300, 1e300])) is None
    assert checks.check_finite("x", torch.ones(3, requires_grad=True)) is None


def test_check_finite_counts_bad_values():
    arr = np.array([[1.0, np.nan, 2.0], [np.inf, -np.inf, np.nan]])
    msg = _message(checks.check_finite, "probs", arr)
    assert msg.startswith("probs: 4 of 6 values are NaN or infinite")
    msg = _message(checks.check_finite, "t", torch.tensor([1.0, float("nan")]))
    assert "1 of 2" in msg


# ------------------------------------------------------------------------------ check_close


def test_check_close_passes_within_tolerance():
    expected = np.linspace(-1, 1, 12).reshape(3, 4)
    assert checks.check_close("y", expected * (1 + 1e-7), expected) is None
    assert checks.check_close("y", torch.from_numpy(expected), expected) is None
    assert checks.check_close("y", expected * 1.001, expected, rtol=1e-2) is None


def test_check_close_reports_largest_difference():
    expected = np.zeros((2, 3))
    actual = expected.copy()
    actual[0, 0] = 1.0
    actual[1, 2] = -5.0
    msg = _message(checks.check_close, "out", actual, expected)
    assert msg.startswith("out: values differ")
    assert "largest difference 5 at index (1, 2)" in msg
    assert "got -5, expected 0" in msg


def test_check_close_respects_rtol():
    expected = np.array([100.0, 200.0])
    actual = expected * 1.001
    msg = _message(checks.check_close, "v", actual, expected)
    assert "index (1,)" in msg  # |200.2 - 200| is the larger difference
    assert checks.check_close("v", actual, expected, rtol=2e-3) is None


def test_check_close_scalar():
    assert checks.check_close("loss", 2.0, 2.0) is None
    msg = _message(checks.check_close, "loss", 2.5, 2.0)
    assert "index ()" in msg and "got 2.5, expected 2" in msg


def test_check_close_checks_shape_and_finiteness_first():
    msg = _message(checks.check_close, "W", np.zeros((3, 2)), np.zeros((2, 3)))
    assert "expected shape (2, 3), got (3, 2)" in msg and "transpose" in msg
    msg = _message(checks.check_close, "W", np.array([np.nan, 0.0]), np.zeros(2))
    assert "1 of 2 values are NaN" in msg


# ------------------------------------------------------------------------------ check_rel_error


def test_check_rel_error_returns_the_error():
    expected = np.array([1.0, 2.0, 4.0])
    actual = expected + np.array([0.0, 0.0, 1e-8])
    err = checks.check_rel_error("dx", actual, expected, 1e-6)
    assert err == rel_error(actual, expected)
    assert 0 < err < 1e-6
    assert checks.check_rel_error("dx", torch.tensor(expected), expected, 0.0) == 0.0


@pytest.mark.parametrize("threshold", [1e-6, 1e-9, 2.5e-3, 1.5e-7])
def test_check_rel_error_names_the_threshold(threshold):
    expected = np.array([1.0, -1.0])
    actual = expected * (1 + 10 * threshold)
    msg = _message(checks.check_rel_error, "grads['W1']", actual, expected, threshold)
    assert msg.startswith("grads['W1']: relative error")
    shown = re.search(r"must be at most (\S+)$", msg)
    assert shown, msg
    assert float(shown.group(1)) == threshold, f"threshold {threshold} shown as {shown.group(1)}"
    reported = float(re.search(r"relative error (\S+)", msg).group(1))
    assert reported == pytest.approx(rel_error(actual, expected), rel=1e-2)


def test_check_rel_error_rejects_nan_and_wrong_shape():
    msg = _message(checks.check_rel_error, "db", np.array([np.nan]), np.zeros(1), 1e-6)
    assert "NaN" in msg
    msg = _message(checks.check_rel_error, "db", np.zeros((1, 4)), np.zeros(4), 1e-6)
    assert "expected shape (4,), got (1, 4)" in msg


# ------------------------------------------------------------------------------ bounds


def test_check_at_least():
    assert checks.check_at_least("accuracy", 0.9, 0.8) is None
    assert checks.check_at_least("accuracy", 0.8, 0.8) is None  # the bound itself passes
    msg = _message(checks.check_at_least, "val accuracy", 0.71234, 0.9, why="train longer")
    assert msg == "val accuracy: got 0.7123, need at least 0.9000. train longer"
    assert _message(checks.check_at_least, "acc", 0.5, 0.9).endswith("need at least 0.9000")
    assert "nan" in _message(checks.check_at_least, "acc", float("nan"), 0.0)


def test_check_at_most():
    assert checks.check_at_most("loss", 0.1, 0.5) is None
    assert checks.check_at_most("loss", 0.5, 0.5) is None
    msg = _message(checks.check_at_most, "loss", 2.0, 0.5, why="is the learning rate too high?")
    assert msg == "loss: got 2.0000, need at most 0.5000. is the learning rate too high?"
    assert "nan" in _message(checks.check_at_most, "loss", float("nan"), 1.0)


class _NumpySGD:
    """Plain SGD written independently of the course's solutions (torch's momentum=0 case)."""

    def __init__(self, params, lr=0.1, scale=1.0):
        self.params, self.lr, self.scale = params, lr, scale

    def step(self, grads):
        for k, g in grads.items():
            self.params[k] -= self.scale * self.lr * g


def test_check_optimizer_against_torch_accepts_a_matching_optimizer():
    checks.check_optimizer_against_torch(_NumpySGD, torch.optim.SGD, {"lr": 0.1}, steps=4)


def test_check_optimizer_against_torch_names_the_first_diverging_step():
    class Doubled(_NumpySGD):
        def __init__(self, params, lr=0.1):
            super().__init__(params, lr, scale=2.0)

    with pytest.raises(AssertionError, match=r"Doubled\(lr=0.1\): params\['W'\] after step 1"):
        checks.check_optimizer_against_torch(Doubled, torch.optim.SGD, {"lr": 0.1})


def test_check_optimizer_against_torch_catches_a_late_divergence():
    class Drifts(_NumpySGD):
        calls = 0

        def step(self, grads):
            Drifts.calls += 1
            self.scale = 1.0 if Drifts.calls < 3 else 1.5
            super().step(grads)

    with pytest.raises(AssertionError, match="after step 3"):
        checks.check_optimizer_against_torch(Drifts, torch.optim.SGD, {"lr": 0.1}, steps=5)


# ------------------------------------------------------------------------------ hints
def test_check_close_and_rel_error_end_with_the_hint_only_on_failure():
    assert checks.check_close("x", [1.0], [1.0], hint="never shown") is None
    msg = _message(checks.check_close, "x", [1.0], [2.0], hint="look at the sign")
    assert msg.endswith(". Hint: look at the sign")
    msg = _message(checks.check_rel_error, "dW", np.ones(3), -np.ones(3), 1e-6, "transpose?")
    assert "relative error" in msg and msg.endswith("Hint: transpose?")


class _Momentum:
    """NumPy SGD with momentum, optionally with one of two classic mistakes."""

    def __init__(self, params, lr=0.1, momentum=0.9, mistake=""):
        self.params, self.lr, self.mu, self.mistake, self.v = params, lr, momentum, mistake, {}

    def step(self, grads):
        for k, g in grads.items():
            v = 0.0 if self.mistake == "forgets" else self.v.get(k, 0.0)
            scale = 1 - self.mu if self.mistake == "dampened" else 1.0
            self.v[k] = self.mu * v + scale * g
            self.params[k] -= self.lr * self.v[k]


class _Adam:
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, mistake=""):
        self.params, self.lr, (self.b1, self.b2), self.eps = params, lr, betas, eps
        self.mistake, self.t, self.m, self.v = mistake, 0, {}, {}

    def step(self, grads):
        self.t += 1
        for k, g in grads.items():
            self.m[k] = self.b1 * self.m.get(k, 0.0) + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v.get(k, 0.0) + (1 - self.b2) * g * g
            m, v = self.m[k], self.v[k]
            if self.mistake != "no bias correction":
                m, v = m / (1 - self.b1**self.t), v / (1 - self.b2**self.t)
            denom = np.sqrt(v + self.eps) if self.mistake == "eps inside" else np.sqrt(v) + self.eps
            self.params[k] -= self.lr * m / denom


def _with(cls, mistake):
    return type(cls.__name__, (cls,), {"__init__": lambda self, p, **h: cls.__init__(
        self, p, mistake=mistake, **h)})


@pytest.mark.parametrize(("mistake", "hint"), [("dampened", "no (1 - momentum) factor"),
                                                ("forgets", "persist between steps")])
def test_optimizer_check_names_a_known_sgd_mistake(mistake, hint):
    checks.check_optimizer_against_torch(_Momentum, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9})
    msg = _message(checks.check_optimizer_against_torch, _with(_Momentum, mistake),
                   torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}, steps=3)
    assert "Hint: " in msg and hint in msg


@pytest.mark.parametrize(("mistake", "hint"), [("no bias correction", "bias correction is missing"),
                                                ("eps inside", "eps goes outside")])
def test_optimizer_check_names_a_known_adam_mistake(mistake, hint):
    checks.check_optimizer_against_torch(_Adam, torch.optim.Adam, {"lr": 0.01})
    msg = _message(checks.check_optimizer_against_torch, _with(_Adam, mistake),
                   torch.optim.Adam, {"lr": 0.01}, steps=3)
    assert "Hint: " in msg and hint in msg


def test_optimizer_check_gives_no_hint_for_an_unknown_mistake():
    class Doubled(_NumpySGD):
        def __init__(self, params, lr=0.1, momentum=0.9):
            super().__init__(params, lr, scale=2.0)

    msg = _message(checks.check_optimizer_against_torch, Doubled, torch.optim.SGD,
                   {"lr": 0.1, "momentum": 0.9})
    assert "Hint" not in msg


# ------------------------------------------------------------------------------ require
def test_require_names_the_task_that_defines_a_missing_name():
    namespace = {"checks": checks, "present": 1}
    exec("checks.require('present', made_by='Task 1')", namespace)
    with pytest.raises(NameError, match="mlp_params is not defined: it comes from Task 4") as err:
        exec("checks.require('present', 'mlp_params', made_by='Task 4')", namespace)
    assert err.value.name == "mlp_params"


# ------------------------------------------------------------------------------ Points
def test_points_award_each_part_that_holds(capsys):
    points = checks.Points(3)
    with points.part(1, "first"):
        pass
    with points.part(2, "second"):
        raise AssertionError("dW: wrong")
    assert points.total() == 1.0
    out = capsys.readouterr().out
    assert "[1 point] first: passed" in out
    assert "[2 points] second: FAILED: AssertionError: dW: wrong" in out
    assert "1 of 3 points" in out


def test_points_report_a_student_error_by_its_own_type(capsys):
    class StudentError(Exception):
        type_name = "NotImplementedError"

    points = checks.Points(1)
    with points.part(1, "stub"):
        raise StudentError("")
    assert points.total() == 0.0
    assert "FAILED: NotImplementedError" in capsys.readouterr().out


@pytest.mark.parametrize("type_name", [":", " ", "::", "", "\0pending", None])
def test_a_failed_part_earns_nothing_whatever_its_errors_name_and_message(capsys, type_name):
    """A stub raising an error whose class is named ":" (empty message) once read as passed."""
    from graders.verdict.remote import student_error

    colon = type(":", (Exception,), {})
    points = checks.Points(3)
    with points.part(1, "own class"):
        raise colon()
    with points.part(1, "sent by the kernel"):
        raise student_error(type_name, "") if type_name is not None else colon("")
    with points.part(1, "str() fails"):
        raise type("E", (Exception,), {"__str__": lambda self: 1 / 0})()
    assert points.total() == 0.0
    assert capsys.readouterr().out.count("FAILED") == 3


def test_a_part_checked_when_grading_is_announced_at_home(capsys, monkeypatch):
    from dlworkshop import testing

    monkeypatch.setattr(testing, "_kernel", None)
    points = checks.Points(2)
    with points.part(1, "validation"):
        pass
    with points.part(1, "test accuracy", when_graded=True):
        pass
    assert points.total() == 2.0
    out = capsys.readouterr().out
    assert "test accuracy: checked when grading" in out and "1 of them decided when grading" in out
    monkeypatch.setattr(testing, "_kernel", object())  # a grader runs it: an ordinary part
    points = checks.Points(1)
    with points.part(1, "test accuracy", when_graded=True):
        raise AssertionError("0.5 < 0.9")
    assert points.total() == 0.0


def test_held_out_examples_are_reordered_and_shaken_by_a_secret_seed():
    """A model that looks its inputs up in the test split it can load (by bytes or by order)
    finds nothing; the labels follow their examples; values stay within a grey level and the
    range; the same seed gives the same set (grades stay deterministic)."""
    from dlworkshop import testing

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (200, 1, 4, 4)).astype(np.float32) / 255
    y = np.arange(200)
    X2, y2 = testing.held_out(X, y, seed=987654321)
    assert not np.array_equal(y2, y) and sorted(y2) == list(y)
    assert np.abs(X2 - X[y2]).max() <= 1 / 255 + 1e-7
    assert X2.min() >= X.min() and X2.max() <= X.max() and X2.dtype == X.dtype
    seen = {x.tobytes() for x in X}
    assert not any(x.tobytes() in seen for x in X2)
    X3, y3 = testing.held_out(X, y, seed=987654321)
    assert np.array_equal(X2, X3) and np.array_equal(y2, y3)


def test_held_out_accuracy_must_come_from_the_weights():
    """The shaking is too small to hide an example from a nearest neighbour among the data a
    kernel can load: a forward that looked its inputs up scored full accuracy untrained. The
    accuracy counts only if the model with random weights falls to about chance."""
    from torch import nn

    from dlworkshop import testing

    rng = np.random.default_rng(1)
    means = rng.normal(0, 3, (4, 16)).astype(np.float32)
    y = np.repeat(np.arange(4), 50)
    X = (means[y] + rng.normal(0, 0.5, (200, 16))).astype(np.float32)
    honest = nn.Linear(16, 4)
    with torch.no_grad():  # a nearest-mean classifier as a linear layer: well above chance
        honest.weight.copy_(torch.from_numpy(means))
        honest.bias.copy_(torch.from_numpy(-0.5 * (means**2).sum(1)))
    assert testing.held_out_accuracy(honest, X, y, seed=7, device="cpu") > 0.95
    assert torch.equal(honest.weight, torch.from_numpy(means))  # the weights are put back

    class Lookup(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(16, 4)  # weights it has but does not need

        def forward(self, x):
            nearest = torch.cdist(x.float(), torch.from_numpy(X)).argmin(1)
            return nn.functional.one_hot(torch.from_numpy(y)[nearest], 4).float() + 0 * self.head(x)

    with pytest.raises(AssertionError, match="replaced by random ones"):
        testing.held_out_accuracy(Lookup(), X, y, seed=7, device="cpu", name="Lookup")
