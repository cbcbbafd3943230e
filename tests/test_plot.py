"""Plots: the right artists with the right content (drawn off-screen with the Agg backend)."""

from __future__ import annotations

from collections import Counter

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.colors import same_color
from matplotlib.contour import ContourSet
from matplotlib.figure import Figure

from dlworkshop import plot
from dlworkshop.train import History

matplotlib.use("Agg")

# before 3.8, contourf added one PathCollection per level instead of a ContourSet artist
MPL_38 = tuple(int(p) for p in matplotlib.__version__.split(".")[:2]) >= (3, 8)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _history(offset: float = 0.0, epochs: int = 3) -> History:
    h = History()
    for e in range(epochs):
        h.append(1.0 - 0.2 * e + offset, 0.5 + 0.1 * e, 1.1 - 0.2 * e, 0.45 + 0.1 * e)
    return h


def _legend(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def _figure_legend(fig: Figure) -> list[str]:
    """The one legend plot_history draws for both panels (on the figure, outside the axes)."""
    assert len(fig.legends) == 1
    return [t.get_text() for t in fig.legends[0].get_texts()]


def _outside_axes(fig: Figure) -> bool:
    """The figure's legend overlaps no axes (it sits beside the curves, not on them)."""
    fig.canvas.draw()
    box = fig.legends[0].get_window_extent()
    return not any(box.overlaps(ax.get_window_extent()) for ax in fig.axes)


# ------------------------------------------------------------------------------ plot_history


def test_plot_history_one_run():
    h = _history()
    fig = plot.plot_history(h, title="my run")
    assert isinstance(fig, Figure)
    ax_loss, ax_acc = fig.axes
    assert fig._suptitle.get_text() == "my run"
    assert ax_loss.get_title() == "loss" and ax_acc.get_title() == "accuracy"
    assert ax_loss.get_xlabel() == ax_acc.get_xlabel() == "epoch"
    assert ax_loss.get_ylabel() == "loss" and ax_acc.get_ylabel() == "accuracy"
    assert len(ax_loss.lines) == 2 and len(ax_acc.lines) == 2
    # one legend for both panels, outside the curves; none on the axes
    assert _figure_legend(fig) == ["train", "val"] and _outside_axes(fig)
    assert _legend(ax_loss) == [] and _legend(ax_acc) == []
    for line, series in zip(ax_loss.lines, (h.train_loss, h.val_loss), strict=True):
        assert np.array_equal(line.get_xdata(), [1, 2, 3])  # epochs count from 1
        assert np.allclose(line.get_ydata(), series)
    for line, series in zip(ax_acc.lines, (h.train_acc, h.val_acc), strict=True):
        assert np.allclose(line.get_ydata(), series)
    for ax in (ax_loss, ax_acc):
        assert ax.lines[0].get_linestyle() == "-" and ax.lines[1].get_linestyle() == "--"
    # a split has one colour in both panels, and train and val differ
    train_color, val_color = ax_loss.lines[0].get_color(), ax_loss.lines[1].get_color()
    assert not same_color(train_color, val_color)
    assert same_color(ax_acc.lines[0].get_color(), train_color)
    assert same_color(ax_acc.lines[1].get_color(), val_color)


def test_plot_history_two_runs():
    runs = {"NumPy": _history(), "PyTorch": _history(offset=0.5, epochs=4)}
    fig = plot.plot_history(runs)
    ax_loss, ax_acc = fig.axes
    assert len(ax_loss.lines) == 4 and len(ax_acc.lines) == 4
    assert _figure_legend(fig) == ["NumPy train", "NumPy val", "PyTorch train", "PyTorch val"]
    assert _outside_axes(fig)
    assert np.allclose(ax_loss.lines[2].get_ydata(), runs["PyTorch"].train_loss)
    assert len(ax_loss.lines[2].get_xdata()) == 4
    # one colour per run (train solid, val dashed), the same in both panels
    for ax in (ax_loss, ax_acc):
        numpy_train, numpy_val, torch_train, torch_val = ax.lines
        assert same_color(numpy_train.get_color(), numpy_val.get_color())
        assert same_color(torch_train.get_color(), torch_val.get_color())
        assert not same_color(numpy_train.get_color(), torch_train.get_color())
        assert same_color(numpy_train.get_color(), ax_loss.lines[0].get_color())
        assert [ln.get_linestyle() for ln in ax.lines] == ["-", "--", "-", "--"]


def test_plot_history_runs_with_different_series_share_the_legend_and_colours():
    """A NumPy history without train_acc next to a torch History: one entry per series, each
    run in its colour in both panels."""
    numpy_hist = {"train_loss": [0.9, 0.5], "val_loss": [1.0, 0.6], "val_acc": [0.7, 0.8]}
    fig = plot.plot_history({"NumPy": numpy_hist, "PyTorch": _history(epochs=2)})
    ax_loss, ax_acc = fig.axes
    assert _figure_legend(fig) == ["NumPy train", "NumPy val", "PyTorch train", "PyTorch val"]
    assert len(ax_acc.lines) == 3
    assert same_color(ax_acc.lines[0].get_color(), ax_loss.lines[1].get_color())  # NumPy val
    assert ax_acc.lines[0].get_linestyle() == "--"


def test_plot_history_dict_with_missing_series():
    fig = plot.plot_history({"train_loss": [0.9, 0.5], "val_acc": [0.6, 0.8]})
    ax_loss, ax_acc = fig.axes
    assert len(ax_loss.lines) == 1 and len(ax_acc.lines) == 1
    assert _figure_legend(fig) == ["train", "val"]
    assert np.allclose(ax_acc.lines[0].get_ydata(), [0.6, 0.8])
    assert not same_color(ax_acc.lines[0].get_color(), ax_loss.lines[0].get_color())

    fig = plot.plot_history({"train_loss": [0.9, 0.5]})
    ax_loss, ax_acc = fig.axes
    assert len(ax_acc.lines) == 0 and _figure_legend(fig) == ["train"]


def test_plot_history_accepts_numpy_arrays():
    hist = {k: np.array([0.9, 0.6, 0.4]) for k in ("train_loss", "val_loss")}
    ax_loss, _ = plot.plot_history({"run": hist}).axes
    assert len(ax_loss.lines) == 2
    assert np.allclose(ax_loss.lines[1].get_ydata(), hist["val_loss"])


# ------------------------------------------------------------------------------ plot_image_grid


def _images(n: int, side: int = 28) -> np.ndarray:
    return np.random.default_rng(0).random((n, side, side)).astype(np.float32)


def _image_axes(fig: Figure) -> list[Axes]:
    return [ax for ax in fig.axes if ax.images]


def test_plot_image_grid_marks_wrong_predictions_in_red():
    labels = [0, 1, 2, 3, 4, 5]
    predictions = [0, 1, 9, 3, 7, 5]
    fig = plot.plot_image_grid(_images(6), labels, predictions, ncols=4, title="grid")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 8  # 2 rows of 4
    shown = _image_axes(fig)
    assert len(shown) == 6
    for ax, label, pred in zip(shown, labels, predictions, strict=True):
        assert ax.get_title() == f"{label}→{pred}"
        expected = "red" if label != pred else "black"
        assert same_color(ax.title.get_color(), expected), (label, pred)
    assert all(not ax.axison for ax in fig.axes)
    assert fig._suptitle.get_text() == "grid"


def test_plot_image_grid_labels_only_and_predictions_only():
    fig = plot.plot_image_grid(_images(3), labels=[7, 8, 9], ncols=3)
    assert [ax.get_title() for ax in fig.axes] == ["7", "8", "9"]
    assert all(same_color(ax.title.get_color(), "black") for ax in fig.axes)
    fig = plot.plot_image_grid(_images(3), predictions=[1, 2, 3], ncols=3)
    assert [ax.get_title() for ax in fig.axes] == ["1", "2", "3"]
    assert all(same_color(ax.title.get_color(), "black") for ax in fig.axes)


@pytest.mark.parametrize("layout", ["flat", "channel", "square"])
def test_plot_image_grid_input_layouts(layout):
    images = _images(5)
    given = {
        "flat": images.reshape(5, -1),
        "channel": images[:, None],
        "square": images,
    }[layout]
    fig = plot.plot_image_grid(given, ncols=10)
    assert len(fig.axes) == 10
    shown = _image_axes(fig)
    assert len(shown) == 5
    for ax, image in zip(shown, images, strict=True):
        assert np.array_equal(ax.images[0].get_array(), image)


# ------------------------------------------------------------------------------ confusion matrix


def test_plot_confusion_matrix_counts():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, size=200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 4, size=200))
    y_pred[y_true == 3] = 3  # row 3 has a single non-zero cell, other cells of it stay empty
    fig = plot.plot_confusion_matrix(y_true, y_pred, num_classes=5)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    expected = Counter(zip(y_true.tolist(), y_pred.tolist(), strict=True))
    written = {}
    for text in ax.texts:
        x, y = text.get_position()
        written[(int(round(y)), int(round(x)))] = int(text.get_text())  # row = true class
    assert written == dict(expected)
    matrix = np.asarray(ax.images[0].get_array())
    assert matrix.shape == (5, 5) and matrix.sum() == 200
    for (t, p), count in expected.items():
        assert matrix[t, p] == count
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"
    assert list(ax.get_xticks()) == list(range(5))


def test_plot_confusion_matrix_on_given_axes():
    fig, (left, right) = plt.subplots(1, 2)
    returned = plot.plot_confusion_matrix([0, 1, 1], [0, 1, 0], num_classes=2, ax=right)
    assert returned is fig
    assert right.images and not left.images
    assert sorted(t.get_text() for t in right.texts) == ["1", "1", "1"]


# ------------------------------------------------------------------------------ decision boundary


@pytest.mark.skipif(not MPL_38, reason="needs matplotlib >= 3.8 (ContourSet as an artist)")
def test_plot_decision_boundary():
    X = np.array([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]], dtype=np.float32)
    y = np.array([0, 1, 0, 1])
    calls = []

    def predict(points):
        calls.append(points)
        return (points[:, 0] > 0).astype(int)

    ax = plot.plot_decision_boundary(predict, X, y, title="sign of x", resolution=30)
    assert isinstance(ax, Axes)
    assert ax.get_title() == "sign of x"
    (grid,) = calls
    assert grid.shape == (30 * 30, 2) and grid.dtype == np.float32
    assert grid[:, 0].min() == pytest.approx(-1.3) and grid[:, 0].max() == pytest.approx(1.3)
    contours = [c for c in ax.collections if isinstance(c, ContourSet)]
    assert len(contours) == 1 and contours[0].filled
    levels = contours[0].levels
    assert levels.min() <= 0 and levels.max() >= 1  # both predicted classes are filled
    (points,) = [c for c in ax.collections if type(c) is PathCollection]
    assert np.allclose(points.get_offsets(), X)


def test_plot_decision_boundary_on_given_axes():
    _, ax = plt.subplots()
    X = np.random.default_rng(0).normal(size=(20, 2))
    returned = plot.plot_decision_boundary(
        lambda p: np.zeros(len(p), dtype=int), X, np.zeros(20), ax=ax, resolution=10
    )
    assert returned is ax
