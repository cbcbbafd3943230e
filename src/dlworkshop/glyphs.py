"""Synthetic glyph images rendered offline: the source task of the course's pretrained ResNet-18.

The images are letters, Greek letters and symbols drawn from the TrueType fonts that ship with
matplotlib (DejaVu, STIX, Computer Modern; see README, "Data and licences"), one class per
character. **No digit is a class**, and letters that are easily mistaken for digits (O, I, l, S,
Z, B, G, ...) are left out too, so that the target task of assignment 03 (MNIST digits) is not
part of the source task.

Rendering is two-stage and deterministic:

1. :func:`render_glyph_bank` draws every (font, character) pair once with Pillow, white on
   black, fitted into a ``BANK_SIZE`` square canvas (a few thousand small images, seconds).
2. :class:`GlyphAugmenter` turns the bank into an endless stream of varied 32x32 images on any
   torch device: random stroke width, scale, aspect, rotation, shear, position, blur, contrast
   and noise, all drawn from a seeded :class:`torch.Generator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

BANK_SIZE = 64  # side of a rendered glyph canvas (pixels)
OUT_SIZE = 32  # side of an augmented image, the ResNet input size of assignment 03

# Latin letters that do not look like a digit (dropped: O Q D I Z S B G T; o i l j z s b g q t).
LATIN = "ACEFHJKLMNPRUVWXYadefhkmnpruvwxy"
# Greek letters whose shapes differ from Latin ones.
GREEK = "ΓΔΘΛΞΠΣΦΨΩαβγδεζηθλμξπρσφχψω"
SYMBOLS = "+×÷=≠<>≤≥±∞∑∫√∂∇#$%&@?!§¶€£¥©®∀∃∈∩∪⊂⊃⊕⊗←→↑↓↔★♠♣♥♦♪✓✗"
CHARACTERS = LATIN + GREEK + SYMBOLS
MIN_FONTS_PER_CLASS = 3

# Fonts with a useful character repertoire (the *Display and STIXSize* files are fragments).
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf",
)  # fmt: skip


@dataclass(frozen=True)
class GlyphBank:
    """Every rendered (font, character) pair: ``images`` uint8 ``(G, BANK_SIZE, BANK_SIZE)``."""

    images: np.ndarray
    labels: np.ndarray  # class index of each image
    classes: tuple[str, ...]  # the character of each class
    fonts: tuple[str, ...]  # the font file of each image

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def font_dir() -> Path:
    """matplotlib's bundled TrueType folder."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


_CMAPS: dict[str, dict[int, str]] = {}


def _cmap(path: str) -> dict[int, str]:
    if path not in _CMAPS:
        from fontTools.ttLib import TTFont

        with TTFont(path, lazy=True) as font:
            _CMAPS[path] = dict(font.getBestCmap() or {})
    return _CMAPS[path]


def _render(font, char: str) -> np.ndarray | None:
    """One glyph, white on black, scaled to fit ``BANK_SIZE - 8`` and centred; None if blank."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (160, 160), 0)
    ImageDraw.Draw(canvas).text((80, 80), char, fill=255, font=font, anchor="mm")
    box = canvas.getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    inner = BANK_SIZE - 8
    scale = inner / max(glyph.size)
    size = (max(1, round(glyph.size[0] * scale)), max(1, round(glyph.size[1] * scale)))
    glyph = glyph.resize(size, Image.Resampling.LANCZOS)
    out = Image.new("L", (BANK_SIZE, BANK_SIZE), 0)
    out.paste(glyph, ((BANK_SIZE - size[0]) // 2, (BANK_SIZE - size[1]) // 2))
    arr = np.asarray(out, dtype=np.uint8)
    return arr if arr.max() > 64 else None


def render_glyph_bank(
    characters: str = CHARACTERS, fonts: tuple[str, ...] = FONT_FILES, point_size: int = 96
) -> GlyphBank:
    """Render every character in every font that has it; keep characters found in >= 3 fonts."""
    from PIL import ImageFont

    per_char: dict[str, list[tuple[str, np.ndarray]]] = {c: [] for c in characters}
    for name in fonts:
        path = font_dir() / name
        if not path.is_file():
            continue
        font = ImageFont.truetype(str(path), point_size)
        cmap = _cmap(str(path))
        for char in characters:
            if ord(char) not in cmap:
                continue
            img = _render(font, char)
            if img is not None:
                per_char[char].append((name, img))
    classes = tuple(c for c in characters if len(per_char[c]) >= MIN_FONTS_PER_CLASS)
    images, labels, font_names = [], [], []
    for label, char in enumerate(classes):
        for name, img in per_char[char]:
            images.append(img)
            labels.append(label)
            font_names.append(name)
    return GlyphBank(np.stack(images), np.asarray(labels, np.int64), classes, tuple(font_names))


class GlyphAugmenter:
    """Endless, seeded batches of augmented ``(B, 1, OUT_SIZE, OUT_SIZE)`` glyphs in [0, 1].

    Everything runs on ``device`` as batched tensor operations, so the stream keeps a GPU busy.
    """

    def __init__(self, bank: GlyphBank, device: torch.device | str, seed: int = 0) -> None:
        self.device = torch.device(device)
        self.images = torch.from_numpy(bank.images).to(self.device).float().div_(255).unsqueeze(1)
        self.labels = torch.from_numpy(bank.labels).to(self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        u = torch.rand(n, device=self.device, generator=self.generator)
        return low + (high - low) * u

    def _stroke(self, x: torch.Tensor) -> torch.Tensor:
        """Per image: thinner, unchanged, thicker or much thicker strokes."""
        thin = -F.max_pool2d(-x, 3, 1, 1)
        thick = F.max_pool2d(x, 3, 1, 1)
        thicker = F.max_pool2d(thick, 3, 1, 1)
        choice = torch.randint(0, 4, (len(x),), device=self.device, generator=self.generator)
        options = torch.stack([thin, x, thick, thicker])
        return options[choice, torch.arange(len(x), device=self.device)]

    def _affine(self, n: int) -> torch.Tensor:
        """Output-to-input sampling matrices: random scale, aspect, rotation, shear, shift."""
        scale = self._uniform(n, 0.45, 1.0)  # glyph height as a share of the output image
        aspect = torch.exp(self._uniform(n, -0.3, 0.3))
        angle = self._uniform(n, -math.pi / 8, math.pi / 8)
        shear = self._uniform(n, -0.3, 0.3)
        room = (1.0 - scale * (BANK_SIZE - 8) / BANK_SIZE).clamp(min=0.0)
        tx = self._uniform(n, -1.0, 1.0) * room
        ty = self._uniform(n, -1.0, 1.0) * room
        # forward map (input glyph -> output image) = T @ R @ Sh @ S; sample with its inverse
        cos, sin = torch.cos(angle), torch.sin(angle)
        sx, sy = scale * aspect.sqrt(), scale / aspect.sqrt()
        a = torch.zeros(n, 3, 3, device=self.device)
        a[:, 0, 0] = cos * sx
        a[:, 0, 1] = (cos * shear - sin) * sy
        a[:, 1, 0] = sin * sx
        a[:, 1, 1] = (sin * shear + cos) * sy
        a[:, 0, 2], a[:, 1, 2], a[:, 2, 2] = tx, ty, 1.0
        return torch.linalg.inv(a)[:, :2, :]

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, labels)``: ``images`` float ``(B, 1, 32, 32)`` in [0, 1], labels int64."""
        idx = torch.randint(
            0, len(self.images), (batch_size,), device=self.device, generator=self.generator
        )
        x = self._stroke(self.images[idx])
        grid = F.affine_grid(
            self._affine(batch_size), [batch_size, 1, OUT_SIZE, OUT_SIZE], align_corners=False
        )
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        blur = self._uniform(batch_size, 0, 1) < 0.3
        x = torch.where(blur.view(-1, 1, 1, 1), F.avg_pool2d(x, 3, 1, 1), x)
        x = x * self._uniform(batch_size, 0.6, 1.0).view(-1, 1, 1, 1)
        noise = self._uniform(batch_size, 0.0, 0.12).view(-1, 1, 1, 1)
        x = x + noise * torch.randn(x.shape, device=self.device, generator=self.generator)
        return x.clamp_(0, 1), self.labels[idx]
