"""Relative error and central-difference gradients against analytic gradients."""

from __future__ import annotations

import numpy as np
import pytest

from dlworkshop.gradcheck import numerical_gradient, rel_error


def test_rel_error_on_hand_made_arrays():
    a = np.array([1.0, 3.0, -2.0])
    b = np.array([1.0, 1.0, -2.0])
    assert rel_error(a, a) == 0.0
    assert rel_error(a, b) == pytest.approx(2.0 / 4.0)  # |3 - 1| / (3 + 1), the largest
    assert rel_error(b, a) == rel_error(a, b)
    assert rel_error([2.0, -1.0], [1.0, 1.0]) == pytest.approx(1.0)  # |-1 - 1| / (1 + 1)


def test_rel_error_floor_near_zero():
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    # the denominator never drops below 1e-8
    assert rel_error(np.array([0.0]), np.array([1e-9])) == pytest.approx(1e-9 / 1e-8)


def test_rel_error_in_float64():
    a = np.array([1.0], dtype=np.float32)
    b = np.array([1.0 + 2.0**-23], dtype=np.float32)  # the next float32 after 1
    assert rel_error(a, b) == pytest.approx(2.0**-23 / (2.0 + 2.0**-23), rel=1e-12)
    assert isinstance(rel_error(a, b), float)


def test_rel_error_shapes():
    assert rel_error(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(3, 2\)"):
        rel_error(np.zeros((2, 3)), np.zeros((3, 2)))


def test_numerical_gradient_of_sum_of_cubes():
    x = np.random.default_rng(0).normal(size=(4, 3))
    grad = numerical_gradient(lambda v: np.sum(v**3), x)
    assert grad.shape == x.shape and grad.dtype == np.float64
    assert rel_error(grad, 3 * x**2) < 1e-7


def test_numerical_gradient_is_a_central_difference():
    # ((x + h)^3 - (x - h)^3) / 2h = 3x^2 + h^2 exactly; a forward difference gives 3x^2 + 3xh + h^2
    x = np.array([-1.5, 0.5, 2.0])
    h = 1e-2
    grad = numerical_gradient(lambda v: np.sum(v**3), x, h=h)
    assert np.allclose(grad, 3 * x**2 + h**2, rtol=0, atol=1e-9)


def test_numerical_gradient_of_matrix_product_with_upstream_gradient():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 4))
    W = rng.normal(size=(4, 3))
    dout = rng.normal(size=(5, 3))
    dW = numerical_gradient(lambda v: x @ v, W, dout)
    dx = numerical_gradient(lambda v: v @ W, x, dout)
    assert rel_error(dW, x.T @ dout) < 1e-7
    assert rel_error(dx, dout @ W.T) < 1e-7


def test_numerical_gradient_restores_x_and_allows_closures():
    x = np.random.default_rng(2).normal(size=(3, 2))
    original = x.copy()
    grad = numerical_gradient(lambda _: np.sum(np.sin(x)), x)  # reads x itself, not the argument
    assert np.array_equal(x, original)
    assert rel_error(grad, np.cos(x)) < 1e-7


def test_numerical_gradient_when_f_returns_a_view_of_x():
    # f(v) returns v itself: the estimate must not be spoiled by x changing after the call
    x = np.array([1.0, 2.0, 3.0])
    dout = np.array([0.5, -1.0, 2.0])
    assert rel_error(numerical_gradient(lambda v: v, x, dout), dout) < 1e-7


def test_numerical_gradient_needs_float64():
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(lambda v: np.sum(v), np.ones(3, dtype=np.float32))
