"""Pretrain the course's ResNet-18 on synthetic glyphs (the checkpoint of assignment 03).

    python scripts/pretrain_resnet18_glyphs.py --out build/pretrain          # train
    python scripts/pretrain_resnet18_glyphs.py --publish build/pretrain/resnet18_glyphs.pt

Training draws an endless stream of augmented glyphs (:mod:`dlworkshop.glyphs`: 112 classes of
letters and symbols in 21 fonts, no digits) from a seeded generator, so the run is defined by its
arguments. On a GPU it takes minutes; on 2 CPU cores about a day (use ``--steps`` to shorten).
Bit-identical weights need the same hardware and library versions; other machines give a
statistically equivalent network. ``--publish`` copies a checkpoint into the package, writes the
model card with the SHA-256, and pins the hash in ``dlworkshop/transfer.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from dlworkshop import glyphs, transfer  # noqa: E402
from dlworkshop.device import get_device, seed_everything  # noqa: E402

CARD = "MODEL_CARD.md"


@torch.no_grad()
def _accuracy(model, images: torch.Tensor, labels: torch.Tensor, batch: int = 2048) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        logits = model(transfer.to_resnet_input(images[i : i + batch]))
        correct += (logits.argmax(1) == labels[i : i + batch]).sum().item()
    model.train()
    return correct / len(images)


def _save(model, bank: glyphs.GlyphBank, path: Path, meta: dict) -> None:
    state = {k: v.detach().to("cpu", torch.float16) for k, v in model.state_dict().items()}
    # integer buffers (BatchNorm's num_batches_tracked) must stay integers
    for k, v in model.state_dict().items():
        if not v.is_floating_point():
            state[k] = v.detach().cpu()
    torch.save({"state_dict": state, "classes": list(bank.classes), "meta": meta}, path)


def train(args: argparse.Namespace) -> None:
    device = get_device(args.device)
    seed_everything(args.seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    bank = glyphs.render_glyph_bank()
    render_s = time.perf_counter() - start
    stream = glyphs.GlyphAugmenter(bank, device, seed=args.seed)
    held_out = glyphs.GlyphAugmenter(bank, device, seed=args.seed + 10_000)
    val_x, val_y = held_out.batch(args.val_size)

    model = transfer.resnet18(num_classes=bank.num_classes).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=args.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.15
    )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    snapshots = {int(s) for s in args.snapshots.split(",") if s} | {args.steps}
    log = {"render_s": render_s, "glyphs": len(bank.images), "classes": bank.num_classes}
    log["points"] = []
    train_start = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = stream.batch(args.batch_size)
        with autocast:
            loss = F.cross_entropy(model(transfer.to_resnet_input(x)), y, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % args.log_every == 0 or step in snapshots:
            acc = _accuracy(model, val_x, val_y)
            elapsed = time.perf_counter() - train_start
            log["points"].append({"step": step, "val_acc": acc, "seconds": elapsed})
            print(f"step {step:6d}  loss {loss.item():.3f}  held-out acc {acc:.3f}  {elapsed:.0f}s")
            sys.stdout.flush()
        if step in snapshots:
            meta = {
                "steps": step,
                "batch_size": args.batch_size,
                "images_seen": step * args.batch_size,
                "lr": args.lr,
                "weight_decay": args.weight_decay,
                "seed": args.seed,
                "held_out_acc": acc,
                "held_out_images": args.val_size,
                "train_seconds": time.perf_counter() - train_start,
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "torch": str(torch.__version__),
                "python": platform.python_version(),
                "glyphs": len(bank.images),
                "classes": bank.num_classes,
            }
            _save(model, bank, out / f"resnet18_glyphs_step{step}.pt", meta)
    log["train_s"] = time.perf_counter() - train_start
    (out / "pretrain_log.json").write_text(json.dumps(log, indent=1))


def publish(checkpoint: Path) -> None:
    """Copy ``checkpoint`` into the package, write its model card, pin its hash."""
    dest = transfer.checkpoint_dir() / transfer.COURSE_CHECKPOINT
    dest.parent.mkdir(exist_ok=True)
    shutil.copyfile(checkpoint, dest)
    digest = transfer.sha256_file(dest)
    meta = torch.load(dest, map_location="cpu", weights_only=True)["meta"]
    module = Path(transfer.__file__)
    text = module.read_text()
    pin = "COURSE_CHECKPOINT_SHA256 = "
    text = re.sub(pin + r'"[0-9a-f]*"', f'{pin}"{digest}"', text)
    module.write_text(text)
    card = dest.parent / CARD
    body = card.read_text() if card.exists() else ""
    body = re.sub(r"sha256: `[0-9a-f]*`", f"sha256: `{digest}`", body)
    card.write_text(body)
    print(json.dumps(meta, indent=1))
    print(f"published {dest} ({dest.stat().st_size / 2**20:.1f} MiB), sha256 {digest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/pretrain", help="folder for checkpoints and log")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-size", type=int, default=10_000)
    parser.add_argument("--log-every", type=int, default=500)
    parser.add_argument("--snapshots", default="", help="extra steps to save, e.g. 2000,4000")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    parser.add_argument("--publish", type=Path, help="publish this checkpoint and exit")
    args = parser.parse_args()
    if args.publish:
        publish(args.publish)
    else:
        train(args)


if __name__ == "__main__":
    main()
