"""Pretrained ResNet-18 for assignment 03, from an explicitly chosen source, and its inputs.

Sources of pretrained weights (``load_pretrained_resnet18(source=...)``):

* ``"course"`` (default, offline): the checkpoint shipped in ``dlworkshop/checkpoints/``, built by
  ``scripts/pretrain_resnet18_glyphs.py`` on synthetic glyphs (:mod:`dlworkshop.glyphs`); its
  SHA-256 is checked against :data:`COURSE_CHECKPOINT_SHA256` (also in the model card).
* ``"imagenet"``: torchvision's ``ResNet18_Weights.IMAGENET1K_V1`` from the local torch hub cache;
  fetched only with ``download=True``.
* ``"none"``: random initialisation (training from scratch).

The architecture is torchvision's ``resnet18`` unchanged, so the same code works for all three.
Images go in as 3 x 32 x 32 tensors normalised with ImageNet's channel statistics
(:func:`to_resnet_input`), whichever weights are used.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlworkshop.data import SPLIT_SEED, DatasetSplits, Split, load_mnist

IMAGE_SIZE = 32
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
COURSE_CHECKPOINT = "resnet18_glyphs.pt"
# pinned by `scripts/pretrain_resnet18_glyphs.py --publish`; the model card states the same hash
COURSE_CHECKPOINT_SHA256 = "aafdf4faca53278844a931d68a0152d4666a8060df75bbc8aadd2c8b0748b4bf"
SOURCES = ("course", "imagenet", "none")


class CheckpointError(RuntimeError):
    """Pretrained weights are missing, damaged or of the wrong kind; the message says what to do."""


@dataclass(frozen=True)
class PretrainedInfo:
    """Where a model's weights came from and what its original head predicted."""

    source: str
    classes: tuple[str, ...]
    path: Path | None
    description: str


def checkpoint_dir() -> Path:
    """The folder of the shipped checkpoint and its model card."""
    return Path(__file__).resolve().parent / "checkpoints"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resnet18(num_classes: int = 1000) -> nn.Module:
    """torchvision's ResNet-18 with random weights and ``num_classes`` outputs."""
    from torchvision.models import resnet18 as tv_resnet18

    return tv_resnet18(weights=None, num_classes=num_classes)


def _load_course(path: Path | None, sha256: str | None) -> tuple[nn.Module, PretrainedInfo]:
    if path is None:
        path, sha256 = checkpoint_dir() / COURSE_CHECKPOINT, COURSE_CHECKPOINT_SHA256
    if not path.is_file():
        raise CheckpointError(
            f"course checkpoint not found at {path}. It ships with the course repository "
            "(git clone, not a bare `pip install` of the package); rebuild it with "
            "`python scripts/pretrain_resnet18_glyphs.py` if it was deleted."
        )
    if sha256:
        actual = sha256_file(path)
        if actual != sha256:
            raise CheckpointError(
                f"{path} has SHA-256 {actual}, expected {sha256} (see the model card). The file "
                f"is damaged or not the course's; restore it with `git checkout -- {path.name}` "
                "in its folder."
            )
    saved = torch.load(path, map_location="cpu", weights_only=True)
    classes = tuple(saved["classes"])
    model = resnet18(num_classes=len(classes))
    model.load_state_dict({k: v.float() for k, v in saved["state_dict"].items()})
    info = PretrainedInfo(
        "course",
        classes,
        path,
        f"ResNet-18 pretrained on synthetic glyphs ({len(classes)} classes of letters and "
        "symbols, no digits)",
    )
    return model, info


def _load_imagenet(download: bool) -> tuple[nn.Module, PretrainedInfo]:
    from torchvision.models import ResNet18_Weights
    from torchvision.models import resnet18 as tv_resnet18

    weights = ResNet18_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file() and not download:
        raise CheckpointError(
            f"ImageNet weights are not cached at {cached}. Pass download=True on a machine with "
            f"internet access (or copy {weights.url} there), or use source='course', the "
            "offline checkpoint that ships with the course."
        )
    try:
        model = tv_resnet18(weights=weights)
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        raise CheckpointError(
            f"could not get ImageNet weights ({err}); use source='course'"
        ) from err
    classes = tuple(weights.meta["categories"])
    return model, PretrainedInfo("imagenet", classes, cached, "ResNet-18 pretrained on ImageNet")


def load_pretrained_resnet18(
    source: str = "course",
    *,
    path: str | os.PathLike | None = None,
    sha256: str | None = None,
    download: bool = False,
) -> tuple[nn.Module, PretrainedInfo]:
    """A ResNet-18 with weights from ``source`` (``"course"``, ``"imagenet"`` or ``"none"``).

    Returns the model (on the CPU, train mode, original head) and where its weights came from.
    ``source="course"`` reads the shipped checkpoint and checks its pinned SHA-256; ``path``
    reads another checkpoint of the same format instead (checked against ``sha256`` if given).
    Raises :class:`CheckpointError` with a remedy when the weights are missing or damaged.
    """
    if source == "course":
        return _load_course(Path(path) if path else None, sha256)
    if source == "imagenet":
        return _load_imagenet(download)
    if source == "none":
        return resnet18(), PretrainedInfo("none", (), None, "ResNet-18, random initialisation")
    raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")


def to_resnet_input(X: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Grey images in [0, 1] (``(N, 784)``, ``(N, 28, 28)`` or ``(N, 1, H, W)``) as normalised
    ``(N, 3, 32, 32)`` float32 tensors (on the input's device): centred on a black 32 x 32
    canvas, grey copied to RGB."""
    x = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).float()
    if x.ndim == 2:
        side = int(round(x.shape[1] ** 0.5))
        x = x.reshape(len(x), 1, side, side)
    elif x.ndim == 3:
        x = x.unsqueeze(1)
    h, w = x.shape[-2:]
    if h > IMAGE_SIZE or w > IMAGE_SIZE:
        x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    else:
        top, left = (IMAGE_SIZE - h) // 2, (IMAGE_SIZE - w) // 2
        x = F.pad(x, (left, IMAGE_SIZE - w - left, top, IMAGE_SIZE - h - top))
    x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def few_shot(split: Split, per_class: int, seed: int = SPLIT_SEED) -> Split:
    """``per_class`` examples of every class of ``split``, drawn with ``seed``, in class order."""
    rng = np.random.default_rng(seed)
    picks = []
    for label in np.unique(split.y):
        candidates = np.flatnonzero(split.y == label)
        if len(candidates) < per_class:
            raise ValueError(f"class {label} has {len(candidates)} examples, {per_class} asked")
        picks.append(rng.choice(candidates, size=per_class, replace=False))
    idx = np.concatenate(picks)
    return Split(split.X[idx], split.y[idx])


def few_shot_mnist(per_class: int = 10, val_per_class: int = 20) -> DatasetSplits:
    """Assignment 03's target task: ``per_class`` labelled MNIST digits per class to train on,
    ``val_per_class`` to validate on (both fixed draws), and the full 1,000-digit test split."""
    mnist = load_mnist(flatten=False)
    return DatasetSplits(
        f"MNIST, {per_class} labelled digits per class",
        few_shot(mnist.train, per_class),
        few_shot(mnist.val, val_per_class),
        mnist.test,
        image_shape=mnist.image_shape,
        num_classes=mnist.num_classes,
    )


def resnet_loaders(
    splits: DatasetSplits, batch_size: int = 20, seed: int = 0, eval_batch_size: int = 250
) -> dict[str, DataLoader]:
    """``train`` (shuffled with a generator seeded by ``seed``), ``val`` and ``test`` loaders of
    ResNet inputs (:func:`to_resnet_input`) and labels."""
    loaders = {}
    for name in ("train", "val", "test"):
        split = getattr(splits, name)
        ds = TensorDataset(to_resnet_input(split.X), torch.from_numpy(split.y))
        if name == "train":
            gen = torch.Generator().manual_seed(seed)
            loaders[name] = DataLoader(ds, batch_size=batch_size, shuffle=True, generator=gen)
        else:
            loaders[name] = DataLoader(ds, batch_size=eval_batch_size)
    return loaders
