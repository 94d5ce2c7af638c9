"""Retraining searched networks from scratch (`run_retrain`); compound scaling is `dnatool.arch.scale`.

Attributes load lazily so reading a recipe does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_retrain": "dnatool.retrain.train",
    "RetrainRecipe": "dnatool.retrain.recipe",
    "load_retrain_recipe": "dnatool.retrain.recipe",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dnatool.retrain' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
