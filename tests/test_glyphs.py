"""The synthetic glyph source data of the course checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlworkshop import glyphs


@pytest.fixture(scope="module")
def bank() -> glyphs.GlyphBank:
    return glyphs.render_glyph_bank()


def test_bank_has_many_classes_in_several_fonts_and_no_digit(bank):
    assert bank.num_classes >= 100
    assert not set("0123456789") & set(bank.classes)
    assert not set("OoIlSsZzBbGgqQD") & set(bank.classes)  # digit look-alikes left out
    counts = np.bincount(bank.labels, minlength=bank.num_classes)
    assert counts.min() >= glyphs.MIN_FONTS_PER_CLASS
    assert bank.images.shape == (len(bank.labels), glyphs.BANK_SIZE, glyphs.BANK_SIZE)
    assert bank.images.dtype == np.uint8
    assert bank.images.reshape(len(bank.images), -1).max(1).min() > 64  # no blank glyph


def test_rendering_is_deterministic(bank):
    again = glyphs.render_glyph_bank()
    assert again.classes == bank.classes and np.array_equal(again.images, bank.images)


def test_augmenter_is_seeded_and_varied(bank):
    x1, y1 = glyphs.GlyphAugmenter(bank, "cpu", seed=5).batch(64)
    x2, y2 = glyphs.GlyphAugmenter(bank, "cpu", seed=5).batch(64)
    x3, _ = glyphs.GlyphAugmenter(bank, "cpu", seed=6).batch(64)
    assert x1.shape == (64, 1, glyphs.OUT_SIZE, glyphs.OUT_SIZE) and y1.dtype == torch.int64
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    assert x1.min() >= 0 and x1.max() <= 1
    # every image shows a glyph (bright pixels), placed and sized differently
    bright = (x1 > 0.5).flatten(1)
    assert bright.any(1).all()
    assert len({int(b.sum()) for b in bright}) > 20
