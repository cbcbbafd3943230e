"""Does the course checkpoint transfer? Fine-tuning vs head only vs from scratch, over seeds.

    python scripts/transfer_experiment.py --checkpoint PATH [--seeds 5] [--per-class 10]

The target is assignment 03's: ``per_class`` labelled MNIST digits per class (the notebook's
fixed few-shot draw, or a new draw per seed with ``--vary-subset``), scored on the 1,000-image
test split. The recipes mirror the notebook's reference solution. Prints a markdown table and
writes JSON (``--json``). Used to choose the pretraining run and the notebook's recipe; the
committed calibration of the notebook itself comes from ``scripts/calibrate.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from dlworkshop import data, transfer  # noqa: E402
from dlworkshop.device import get_device, seed_everything  # noqa: E402
from dlworkshop.train import evaluate, fit  # noqa: E402


def head_params(model: nn.Module) -> list[nn.Parameter]:
    return list(model.fc.parameters())


def backbone_params(model: nn.Module) -> list[nn.Parameter]:
    head = {id(p) for p in head_params(model)}
    return [p for p in model.parameters() if id(p) not in head]


def frozen_train_mode(model: nn.Module) -> None:
    """Only the head trains; the backbone (its BatchNorm layers) stays in eval mode."""
    model.eval()
    model.fc.train()


RECIPES = {
    # name: (weights, trainable, optimizer factory)
    "head": ("course", "head", lambda m: torch.optim.Adam(head_params(m), lr=1e-3)),
    "ft": (
        "course",
        "all",
        lambda m: torch.optim.Adam(
            [{"params": backbone_params(m), "lr": 1e-4}, {"params": head_params(m), "lr": 1e-3}]
        ),
    ),
    "ft3": (
        "course",
        "all",
        lambda m: torch.optim.Adam(
            [{"params": backbone_params(m), "lr": 3e-4}, {"params": head_params(m), "lr": 3e-3}]
        ),
    ),
    "scratch": ("none", "all", lambda m: torch.optim.Adam(m.parameters(), lr=1e-3)),
    "scratch3": ("none", "all", lambda m: torch.optim.Adam(m.parameters(), lr=3e-3)),
    "scratch_sgd": (
        "none",
        "all",
        lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9),
    ),
}


def run(recipe: str, checkpoint: Path, seed: int, train, val, test, args, device) -> dict:
    weights, trainable, make_opt = RECIPES[recipe]
    seed_everything(seed)
    if weights == "course":
        model, _ = transfer.load_pretrained_resnet18("course", path=checkpoint)
    else:
        model = transfer.resnet18()
    model.fc = nn.Linear(model.fc.in_features, 10)
    if trainable == "head":
        for p in backbone_params(model):
            p.requires_grad_(False)
    model.to(device)
    optimizer = make_opt(model)
    gen = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, generator=gen)
    val_loader = DataLoader(val, batch_size=500)
    start = time.perf_counter()
    history = fit(
        model,
        train_loader,
        val_loader,
        optimizer,
        args.epochs,
        device,
        progress=False,
        train_mode=frozen_train_mode if trainable == "head" else None,
    )
    seconds = time.perf_counter() - start
    _, test_acc = evaluate(model, DataLoader(test, batch_size=500), device)
    return {
        "recipe": recipe,
        "seed": seed,
        "test_acc": test_acc,
        "val_acc": history.val_acc,
        "seconds": seconds,
    }


def dataset(split: data.Split) -> TensorDataset:
    return TensorDataset(transfer.to_resnet_input(split.X), torch.from_numpy(split.y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, action="append", required=True)
    parser.add_argument("--recipes", default="head,ft,ft3,scratch,scratch3,scratch_sgd")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--val-per-class", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--vary-subset", action="store_true")
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = get_device(args.device)
    mnist = data.load_mnist(flatten=False)
    val = dataset(transfer.few_shot(mnist.val, args.val_per_class))
    test = dataset(mnist.test)
    results = []
    for checkpoint in args.checkpoint:
        for recipe in args.recipes.split(","):
            if RECIPES[recipe][0] == "none" and checkpoint != args.checkpoint[0]:
                continue  # from scratch does not depend on the checkpoint
            accs = []
            for seed in range(args.seeds):
                subset_seed = data.SPLIT_SEED + seed if args.vary_subset else data.SPLIT_SEED
                train = dataset(transfer.few_shot(mnist.train, args.per_class, subset_seed))
                r = run(recipe, checkpoint, seed, train, val, test, args, device)
                r["checkpoint"] = checkpoint.name
                results.append(r)
                accs.append(r["test_acc"])
            print(
                f"| {checkpoint.name} | {recipe} | {statistics.mean(accs):.3f} | {min(accs):.3f} |"
                f" {max(accs):.3f} | {' '.join(f'{a:.3f}' for a in accs)} |"
                f" {statistics.mean(r['seconds'] for r in results[-args.seeds:]):.1f} |"
            )
            sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"checkpoint": [
            str(c) for c in args.checkpoint], "json": str(args.json)}, "results": results}))


if __name__ == "__main__":
    main()
