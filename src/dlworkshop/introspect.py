"""Looking inside torch models: parameter counts and the output of every stage."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def stage_outputs(
    model: nn.Module, x: torch.Tensor, kinds: tuple[type[nn.Module], ...] | None = None
) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """``(name, module, output)`` of every leaf module (or those of ``kinds``) in call order,
    recorded with forward hooks during one forward pass of ``x`` in eval mode."""
    records: list[tuple[str, nn.Module, torch.Tensor]] = []
    handles = []
    for name, module in model.named_modules():
        is_leaf = not any(True for _ in module.children())
        if (kinds is None and is_leaf) or (kinds is not None and isinstance(module, kinds)):
            handles.append(
                module.register_forward_hook(
                    lambda mod, _inp, out, name=name: records.append((name, mod, out.detach()))
                )
            )
    try:
        with in_mode(model, training=False):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return records


@contextlib.contextmanager
def in_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """``model`` in training mode (``training``) or eval mode inside the block, and in the mode
    it had before afterwards (also when the block raises)."""
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)


def stage_shapes(model: nn.Module, x: torch.Tensor) -> str:
    """A table of every leaf module's output shape for input ``x`` (for printing)."""
    lines = [f"{'input':<28} {tuple(x.shape)}"]
    for name, module, out in stage_outputs(model, x):
        label = f"{name} ({type(module).__name__})"
        lines.append(f"{label:<28} {tuple(out.shape)}")
    return "\n".join(lines)
