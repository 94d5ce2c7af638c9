"""Retraining searched networks from scratch (`run_retrain`) and compound scaling (`scale_*`).

Attributes load lazily so `dnatool.retrain.scale` stays free of torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_retrain": "dnatool.retrain.train",
    "RetrainRecipe": "dnatool.retrain.recipe",
    "load_retrain_recipe": "dnatool.retrain.recipe",
    "scale_arch": "dnatool.retrain.scale",
    "scale_phi": "dnatool.retrain.scale",
    "scale_to": "dnatool.retrain.scale",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dnatool.retrain' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
