"""Helper library for "Deep Learning Models with Python" (session 5 of the data-science workshop).

One place for what every notebook, hidden test and grader needs: data loading (:mod:`.data`),
seeding and device selection (:mod:`.device`), gradient checking (:mod:`.gradcheck`), the torch
training loop (:mod:`.train`), plotting (:mod:`.plot`), the assertion helpers that give
students actionable test messages (:mod:`.checks`), and the pretrained ResNet-18 of assignment 03
with its synthetic source data (:mod:`.transfer`, :mod:`.glyphs`).

Submodules import lazily, so that ``nbgrader_config.py`` can read :mod:`.grading` without
paying for ``import torch``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "get_device": "dlworkshop.device",
    "seed_everything": "dlworkshop.device",
    "set_num_threads": "dlworkshop.device",
    "numerical_gradient": "dlworkshop.gradcheck",
    "rel_error": "dlworkshop.gradcheck",
}
_SUBMODULES = {
    "checks", "data", "device", "glyphs", "gradcheck", "grading", "introspect", "plot", "train",
    "transfer",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"dlworkshop.{name}")
    raise AttributeError(f"module 'dlworkshop' has no attribute {name!r}")
