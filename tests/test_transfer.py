"""The pretrained ResNet-18 of assignment 03: its checkpoint, loader, inputs and target data."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch

from dlworkshop import data, glyphs, transfer

CARD = transfer.checkpoint_dir() / "MODEL_CARD.md"


@pytest.fixture(scope="module")
def course_model():
    return transfer.load_pretrained_resnet18("course")


def test_checkpoint_hash_matches_pin_and_model_card():
    path = transfer.checkpoint_dir() / transfer.COURSE_CHECKPOINT
    digest = transfer.sha256_file(path)
    assert digest == transfer.COURSE_CHECKPOINT_SHA256
    assert re.findall(r"sha256: `([0-9a-f]{64})`", CARD.read_text()) == [digest]


def test_model_card_states_the_recorded_recipe():
    meta = torch.load(
        transfer.checkpoint_dir() / transfer.COURSE_CHECKPOINT, map_location="cpu",
        weights_only=True,
    )["meta"]
    card = CARD.read_text()
    assert f"--steps {meta['steps']}" in card
    assert f"{meta['held_out_acc']:.3f}" in card
    assert f"{meta['images_seen'] / 1e6:.1f} M" in card


def test_course_model_is_an_unmodified_resnet18_without_digit_classes(course_model):
    model, info = course_model
    assert info.source == "course" and len(info.classes) == 112
    assert not any(c.isdigit() for c in info.classes)
    reference = transfer.resnet18(num_classes=112).state_dict()
    state = model.state_dict()
    assert state.keys() == reference.keys()
    assert all(state[k].shape == v.shape for k, v in reference.items())
    assert all(v.dtype == reference[k].dtype for k, v in state.items())  # fp16 -> fp32 on load
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(3, 3, 32, 32)).shape == (3, 112)


def test_course_model_recognises_its_source_glyphs(course_model):
    model, info = course_model
    bank = glyphs.render_glyph_bank()
    assert bank.classes == info.classes  # same class order as when it was trained
    x, y = glyphs.GlyphAugmenter(bank, "cpu", seed=123).batch(256)
    model.eval()
    with torch.no_grad():
        logits = model(transfer.to_resnet_input(x))
    assert (logits.argmax(1) == y).float().mean() > 0.8  # held-out accuracy 0.977 on the card


def test_damaged_checkpoint_is_refused_with_a_remedy(tmp_path):
    src = transfer.checkpoint_dir() / transfer.COURSE_CHECKPOINT
    bad = tmp_path / transfer.COURSE_CHECKPOINT
    shutil.copyfile(src, bad)
    with open(bad, "r+b") as fh:
        fh.seek(-100, 2)
        byte = fh.read(1)
        fh.seek(-100, 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(transfer.CheckpointError, match="SHA-256.*git checkout"):
        transfer.load_pretrained_resnet18(path=bad, sha256=transfer.COURSE_CHECKPOINT_SHA256)
    with pytest.raises(transfer.CheckpointError, match="not found.*pretrain_resnet18_glyphs"):
        transfer.load_pretrained_resnet18(path=tmp_path / "missing.pt")


def test_imagenet_weights_are_never_fetched_implicitly(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(transfer.CheckpointError, match="download=True.*source='course'"):
        transfer.load_pretrained_resnet18("imagenet")
    assert not any(tmp_path.rglob("*.pth"))


def test_other_sources():
    model, info = transfer.load_pretrained_resnet18("none")
    assert info.source == "none" and model.fc.out_features == 1000
    with pytest.raises(ValueError, match="course, imagenet, none"):
        transfer.load_pretrained_resnet18("cifar")


@pytest.mark.parametrize("shape", [(4, 784), (4, 28, 28), (4, 1, 28, 28)])
def test_to_resnet_input_centres_and_normalises(shape):
    x = np.zeros(shape, dtype=np.float32)
    x.reshape(4, -1)[:, 0] = 1.0  # top-left pixel of each digit
    out = transfer.to_resnet_input(x)
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32
    mean = torch.tensor(transfer.IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(transfer.IMAGENET_STD).view(3, 1, 1)
    raw = out * std + mean  # undo the normalisation
    assert torch.allclose(raw[:, :, 2, 2], torch.ones(4, 3))  # 2-pixel border: (0, 0) -> (2, 2)
    raw[:, :, 2, 2] = 0
    assert torch.allclose(raw, torch.zeros_like(raw), atol=1e-6)


def test_few_shot_draws_fixed_balanced_subsets():
    split = data.Split(np.arange(60).reshape(30, 2), np.repeat(np.arange(3), 10))
    a = transfer.few_shot(split, per_class=4)
    b = transfer.few_shot(split, per_class=4)
    assert np.array_equal(a.X, b.X) and np.bincount(a.y).tolist() == [4, 4, 4]
    rows = {tuple(r) for r in split.X}
    assert all(tuple(r) in rows for r in a.X)
    assert all(split.y[r[0] // 2] == label for r, label in zip(a.X, a.y, strict=True))
    assert not np.array_equal(transfer.few_shot(split, 4, seed=1).X, a.X)
    with pytest.raises(ValueError, match="class 0 has 10 examples, 11 asked"):
        transfer.few_shot(split, per_class=11)


def test_few_shot_mnist_and_loaders():
    splits = transfer.few_shot_mnist(per_class=10, val_per_class=20)
    assert len(splits.train) == 100 and len(splits.val) == 200 and len(splits.test) == 1000
    assert np.bincount(splits.train.y).tolist() == [10] * 10
    loaders = transfer.resnet_loaders(splits, batch_size=20, seed=3)
    x, y = next(iter(loaders["train"]))
    assert x.shape == (20, 3, 32, 32) and y.shape == (20,)
    again = next(iter(transfer.resnet_loaders(splits, batch_size=20, seed=3)["train"]))
    assert torch.equal(again[1], y)  # same seed, same order
    assert len(loaders["test"].dataset) == 1000


def test_the_run_checks_count_the_epochs_of_the_budget_cell():
    """03's run checks fix the epoch count themselves (a student's ``EPOCHS = 50`` after the
    budget cell changes no check); it must stay the budget cell's ``EPOCHS``."""
    from graders import notebooks
    from graders.course import REPO_ROOT

    nb = notebooks.read(REPO_ROOT / "source" / "03_transfer_learning" /
                        "03_transfer_learning.ipynb")
    budget = nb.cells[notebooks.cell_index(nb, "budget")].source
    epochs = re.search(r"^EPOCHS = (\d+)$", budget, re.M).group(1)
    fixed = {notebooks.grade_id(c): re.findall(r"^_EPOCHS = (\d+)", c.source, re.M)
             for c in notebooks.test_cells(nb) if "EPOCHS" in c.source}
    assert set(fixed) == {"test_feature_extraction_run", "test_finetune_run",
                          "test_transfer_beats_scratch"}
    assert all(found == [epochs] for found in fixed.values()), fixed
