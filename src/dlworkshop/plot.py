"""Plots the notebooks show: loss/accuracy curves, image grids, confusion matrix, 2-D boundaries."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def plot_history(
    histories: Mapping[str, object] | object, title: str = "Training curves"
) -> Figure:
    """Loss and accuracy per epoch for one run or several (``{"label": history}``).

    A history is anything with ``train_loss``/``val_loss``/``train_acc``/``val_acc`` sequences
    (a :class:`dlworkshop.train.History`) or a dict with those keys; missing series are skipped.
    Training curves are solid and validation curves dashed. One run: one colour per split (train
    blue, val orange), the same in both panels; several runs: one colour per run. The two panels
    share one legend, outside the curves, on the right.
    """
    if not isinstance(histories, Mapping) or "train_loss" in histories:
        histories = {"": histories}
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    one_run = len(histories) == 1
    handles: dict[str, object] = {}  # legend label -> line, in the order first drawn
    for run, (label, hist) in enumerate(histories.items()):
        for key, ax in (
            ("train_loss", ax_loss),
            ("val_loss", ax_loss),
            ("train_acc", ax_acc),
            ("val_acc", ax_acc),
        ):
            series = hist.get(key) if isinstance(hist, Mapping) else getattr(hist, key, None)
            if series is None or len(series) == 0:
                continue
            split = key.split("_")[0]
            color = f"C{(0 if split == 'train' else 1) if one_run else run % 10}"
            name = f"{label} {split}".strip()
            (line,) = ax.plot(np.arange(1, len(series) + 1), series,
                              "-" if split == "train" else "--", color=color, label=name)
            handles.setdefault(name, line)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper")
    fig.suptitle(title)
    return fig


def plot_image_grid(
    images: np.ndarray,
    labels: Sequence[int] | None = None,
    predictions: Sequence[int] | None = None,
    ncols: int = 10,
    title: str | None = None,
) -> Figure:
    """Images (``(N, H, W)``, ``(N, 1, H, W)`` or flattened squares) with labels; wrong
    predictions are titled in red."""
    images = np.asarray(images)
    if images.ndim == 2:
        side = int(round(np.sqrt(images.shape[1])))
        images = images.reshape(len(images), side, side)
    elif images.ndim == 4:
        images = images[:, 0]
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.2 * ncols, 1.35 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray_r")
        text, color = "", "black"
        if labels is not None:
            text = str(labels[i])
        if predictions is not None:
            text = f"{text}→{predictions[i]}" if text else str(predictions[i])
            if labels is not None and predictions[i] != labels[i]:
                color = "red"
        ax.set_title(text, fontsize=9, color=color)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(
    y_true: Sequence[int], y_pred: Sequence[int], num_classes: int, ax: Axes | None = None
) -> Figure:
    """Counts of (true, predicted) class pairs, with the numbers written in the cells."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    matrix = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(matrix, (y_true, y_pred), 1)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 5))
    else:
        fig = ax.figure
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            color = "white" if count > matrix.max() / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color=color)
    ticks = np.arange(num_classes)
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true", title="confusion matrix")
    fig.tight_layout()
    return fig


def plot_decision_boundary(
    predict: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    ax: Axes | None = None,
    title: str = "",
    resolution: int = 200,
) -> Axes:
    """Regions where ``predict`` (2-D points -> class labels) says each class, with the data."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    pad = 0.3
    xs = np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, resolution)
    ys = np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, resolution)
    gx, gy = np.meshgrid(xs, ys)
    grid = np.c_[gx.ravel(), gy.ravel()].astype(X.dtype)
    zz = np.asarray(predict(grid)).reshape(gx.shape)
    ax.contourf(gx, gy, zz, alpha=0.25, cmap="coolwarm")
    ax.scatter(X[:, 0], X[:, 1], c=y, s=10, cmap="coolwarm", edgecolors="k", linewidths=0.2)
    ax.set(title=title, xticks=[], yticks=[], aspect="equal")
    return ax


def _to_numpy(array) -> np.ndarray:
    return array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)


def _panels(images: np.ndarray, ncols: int, title: str, numbered: bool, **imshow) -> Figure:
    """One small image panel per item of ``images`` (``(n, H, W)``), in rows of ``ncols``."""
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.15 * ncols, 1.15 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], **imshow)
            if numbered:
                ax.set_title(str(i), fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_filters(weight, ncols: int = 8, title: str = "first-layer filters") -> Figure:
    """The 2-D kernels of a conv layer's weight ``(F, C, kH, kW)`` (channel 0 of each), on a
    symmetric red-blue scale (red: positive weights)."""
    kernels = _to_numpy(weight)[:, 0]
    limit = float(np.abs(kernels).max()) or 1.0
    return _panels(kernels, ncols, title, False, cmap="RdBu_r", vmin=-limit, vmax=limit)


def plot_feature_maps(maps, ncols: int = 8, title: str = "feature maps") -> Figure:
    """The channels of one image's activation ``(C, H, W)``, one numbered panel each, all on one
    colour scale with a colourbar, so that panels compare at a glance: a symmetric red-blue
    scale when the maps have both signs (red: positive, white: zero), else viridis from the
    smallest to the largest value."""
    maps = _to_numpy(maps)
    low, high = (float(maps.min()), float(maps.max())) if maps.size else (0.0, 1.0)
    if low < 0 < high:
        limit = max(-low, high)
        scale = {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit}
    else:
        scale = {"cmap": "viridis", "vmin": low, "vmax": high if high > low else low + 1.0}
    fig = _panels(maps, ncols, title, True, **scale)
    fig.subplots_adjust(right=0.9)
    colorbar_axes = fig.add_axes((0.92, 0.15, 0.015, 0.7), label="colorbar")
    fig.colorbar(plt.cm.ScalarMappable(plt.Normalize(scale["vmin"], scale["vmax"]),
                                       scale["cmap"]), cax=colorbar_axes)
    return fig
