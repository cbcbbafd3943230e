"""The training loop on tiny synthetic problems whose answers are known."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from dlworkshop import train

CPU = torch.device("cpu")


def _blobs(n_per_class: int, seed: int) -> TensorDataset:
    """Two well separated Gaussian blobs around (-2, -2) (class 0) and (2, 2) (class 1)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-2.0, -2.0], [2.0, 2.0]])
    y = torch.arange(2).repeat_interleave(n_per_class)
    X = centres[y] + 0.5 * torch.randn(len(y), 2, generator=g)
    return TensorDataset(X, y)


def _loader(ds: TensorDataset, batch_size: int = 16, shuffle: bool = False) -> DataLoader:
    g = torch.Generator().manual_seed(0) if shuffle else None
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=g)


def _dropout_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 2))


@pytest.fixture
def no_progress(monkeypatch):
    monkeypatch.setenv(train.PROGRESS_ENV, "0")


def test_fit_learns_linearly_separable_blobs(no_progress):
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    train_loader = _loader(_blobs(100, seed=1), shuffle=True)
    val_loader = _loader(_blobs(50, seed=2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    history = train.fit(model, train_loader, val_loader, optimizer, epochs=5, device=CPU)

    for series in (history.train_loss, history.train_acc, history.val_loss, history.val_acc):
        assert len(series) == 5 and all(isinstance(v, float) for v in series)
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.val_loss[-1] < history.val_loss[0]
    assert history.train_acc[-1] >= 0.95 and history.val_acc[-1] >= 0.95
    assert all(0.0 <= a <= 1.0 for a in history.train_acc + history.val_acc)

    # the last validation entry is the trained model's validation loss and accuracy
    X_val, y_val = val_loader.dataset.tensors
    with torch.no_grad():
        logits = model(X_val)
    assert history.val_loss[-1] == pytest.approx(F.cross_entropy(logits, y_val).item(), rel=1e-5)
    assert history.val_acc[-1] == (logits.argmax(1) == y_val).float().mean().item()


def test_fit_uses_the_given_loss_function(no_progress):
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    calls = []

    def loss_fn(logits, y):
        calls.append(len(y))
        return F.cross_entropy(logits, y)

    train_loader = _loader(_blobs(20, seed=1), batch_size=10)  # 4 batches
    val_loader = _loader(_blobs(10, seed=2), batch_size=20)  # 1 batch
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train.fit(model, train_loader, val_loader, optimizer, epochs=2, device=CPU, loss_fn=loss_fn)
    assert calls == ([10] * 4 + [20]) * 2


def test_history_append():
    history = train.History()
    history.append(torch.tensor(0.5), 1, 0.25, 0.75)
    history.append(0.4, 0.9, 0.2, 0.8)
    assert history.train_loss == [0.5, 0.4]
    assert history.train_acc == [1.0, 0.9]
    assert history.val_loss == [0.25, 0.2]
    assert history.val_acc == [0.75, 0.8]
    assert all(type(v) is float for v in history.train_loss + history.train_acc)


def test_train_one_epoch_returns_sample_weighted_means():
    """With lr=0 the weights stay put, so the result is the loss and accuracy of the whole set,
    even with a last batch smaller than the others."""
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    ds = _blobs(5, seed=3)  # 10 samples in batches of 4, 4, 2
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    loss, acc = train.train_one_epoch(model, _loader(ds, 4), optimizer, F.cross_entropy, CPU)
    X, y = ds.tensors
    with torch.no_grad():
        logits = model(X)
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert model.training


def test_train_one_epoch_zeroes_gradients():
    """Stale gradients before the epoch, and those of each batch, must not leak into a step."""
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    reference = copy.deepcopy(model)
    ds = _blobs(8, seed=4)
    loader = _loader(ds, batch_size=8)  # two batches

    for p in model.parameters():
        p.grad = torch.full_like(p, 100.0)  # garbage a missing zero_grad would add
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train.train_one_epoch(model, loader, optimizer, F.cross_entropy, CPU)

    # the same two steps by hand, each from a fresh gradient
    for X, y in loader:
        grads = torch.autograd.grad(F.cross_entropy(reference(X), y), reference.parameters())
        with torch.no_grad():
            for p, g in zip(reference.parameters(), grads, strict=True):
                p -= 0.1 * g
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_train_one_epoch_puts_the_model_in_train_mode():
    model = _dropout_model()
    model.eval()
    modes = []
    model.register_forward_pre_hook(lambda m, _: modes.append(m.training))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    train.train_one_epoch(model, _loader(_blobs(4, 0), 4), optimizer, F.cross_entropy, CPU)
    assert modes == [True, True]


def test_evaluate_in_eval_mode_without_gradients():
    model = _dropout_model()
    model.train()
    ds = _blobs(30, seed=5)
    grad_enabled = []

    def loss_fn(logits, y):
        grad_enabled.append(torch.is_grad_enabled() or logits.requires_grad)
        return F.cross_entropy(logits, y)

    first = train.evaluate(model, _loader(ds, 16), CPU, loss_fn)
    assert model.training is False
    assert grad_enabled and not any(grad_enabled)
    assert all(p.grad is None for p in model.parameters())

    # dropout off: repeatable, and equal to the eval-mode model on the whole set at once
    model.train()
    second = train.evaluate(model, _loader(ds, 7), CPU)
    assert second[0] == pytest.approx(first[0], rel=1e-6) and second[1] == first[1]
    X, y = ds.tensors
    model.eval()
    with torch.no_grad():
        logits = model(X)
    assert first[0] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert first[1] == pytest.approx((logits.argmax(1) == y).float().mean().item())


def test_predict_returns_cpu_class_indices():
    model = _dropout_model()
    model.train()
    ds = _blobs(11, seed=6)
    pred = train.predict(model, _loader(ds, 5), CPU)
    assert model.training is False
    assert pred.device.type == "cpu" and pred.dtype == torch.int64
    assert pred.shape == (22,)
    with torch.no_grad():
        expected = model(ds.tensors[0]).argmax(1)
    assert torch.equal(pred, expected)
    model.train()
    assert torch.equal(train.predict(model, _loader(ds, 3), CPU), expected)


@pytest.mark.parametrize(
    ("value", "enabled"),
    [(None, True), ("1", True), ("0", False), ("false", False), ("no", False)],
)
def test_progress_enabled(monkeypatch, value, enabled):
    if value is None:
        monkeypatch.delenv(train.PROGRESS_ENV, raising=False)
    else:
        monkeypatch.setenv(train.PROGRESS_ENV, value)
    assert train.progress_enabled() is enabled


def _fit_quietly_or_not(**kwargs) -> None:
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    loader = _loader(_blobs(4, seed=0), batch_size=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train.fit(model, loader, loader, optimizer, epochs=2, device=CPU, **kwargs)


def test_progress_bar_follows_env_var_and_argument(monkeypatch, capsys):
    monkeypatch.setenv(train.PROGRESS_ENV, "0")
    _fit_quietly_or_not()
    assert "epochs" not in capsys.readouterr().err

    _fit_quietly_or_not(progress=True)  # the argument wins over the variable
    assert "epochs" in capsys.readouterr().err

    monkeypatch.setenv(train.PROGRESS_ENV, "1")
    _fit_quietly_or_not()
    assert "epochs" in capsys.readouterr().err
    _fit_quietly_or_not(progress=False)
    assert "epochs" not in capsys.readouterr().err


def test_train_mode_callback_replaces_model_train(no_progress):
    """With train_mode keeping BatchNorm in eval mode, its running statistics never move."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    loader = _loader(_blobs(16, seed=0))
    calls = []

    def frozen_bn(m: nn.Module) -> None:
        calls.append(m)
        m.train()
        m[1].eval()

    before = model[1].running_mean.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train.fit(model, loader, loader, opt, 2, CPU, train_mode=frozen_bn)
    assert calls == [model, model]  # once per epoch, instead of model.train()
    assert torch.equal(model[1].running_mean, before)
    train.fit(model, loader, loader, opt, 1, CPU)  # default: plain train mode updates them
    assert not torch.equal(model[1].running_mean, before)
