"""The course's PyTorch training loop: one epoch, evaluation, and ``fit`` with a progress bar."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

PROGRESS_ENV = "DLWORKSHOP_PROGRESS"


def progress_enabled() -> bool:
    """Progress bars are on unless ``DLWORKSHOP_PROGRESS=0`` (graders turn them off)."""
    return os.environ.get(PROGRESS_ENV, "1") not in ("0", "false", "no")


@dataclass
class History:
    """Per-epoch metrics of a training run, ready for :func:`dlworkshop.plot.plot_history`."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)

    def append(self, train_loss: float, train_acc: float, val_loss: float, val_acc: float) -> None:
        """Record one epoch."""
        self.train_loss.append(float(train_loss))
        self.train_acc.append(float(train_acc))
        self.val_loss.append(float(val_loss))
        self.val_acc.append(float(val_acc))


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device | str,
    train_mode: Callable[[nn.Module], object] | None = None,
) -> tuple[float, float]:
    """One pass over ``loader`` in train mode; returns mean loss and accuracy over the samples.

    ``train_mode(model)`` replaces ``model.train()`` when some modules must stay in eval mode
    (a frozen backbone whose BatchNorm statistics must not change, for example).
    """
    (train_mode or nn.Module.train)(model)
    total_loss, correct, seen = 0.0, 0, 0
    for X, y in loader:
        X, y = X.to(device), y.to(device)
        optimizer.zero_grad()
        logits = model(X)
        loss = loss_fn(logits, y)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(dim=1) == y).sum().item()
        seen += len(y)
    return total_loss / seen, correct / seen


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``loader``, in eval mode, without gradients."""
    loss_fn = loss_fn or nn.functional.cross_entropy
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    for X, y in loader:
        X, y = X.to(device), y.to(device)
        logits = model(X)
        total_loss += loss_fn(logits, y).item() * len(y)
        correct += (logits.argmax(dim=1) == y).sum().item()
        seen += len(y)
    return total_loss / seen, correct / seen


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device | str) -> torch.Tensor:
    """Predicted class of every sample of ``loader`` (eval mode), on the CPU."""
    model.eval()
    return torch.cat([model(X.to(device)).argmax(dim=1).cpu() for X, _ in loader])


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    device: torch.device | str,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    progress: bool | None = None,
    train_mode: Callable[[nn.Module], object] | None = None,
) -> History:
    """Train for ``epochs`` epochs, validating after each; shows a tqdm bar over the epochs.

    ``train_mode`` is passed to :func:`train_one_epoch` (default: ``model.train()``).
    """
    loss_fn = loss_fn or nn.functional.cross_entropy
    model.to(device)
    history = History()
    show = progress_enabled() if progress is None else progress
    bar = tqdm(range(epochs), desc="epochs", disable=not show)
    for _ in bar:
        train_loss, train_acc = train_one_epoch(
            model, train_loader, optimizer, loss_fn, device, train_mode
        )
        val_loss, val_acc = evaluate(model, val_loader, device, loss_fn)
        history.append(train_loss, train_acc, val_loss, val_acc)
        bar.set_postfix(loss=f"{train_loss:.3f}", val_acc=f"{val_acc:.3f}")
    return history
