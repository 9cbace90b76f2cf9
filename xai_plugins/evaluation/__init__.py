"""Evaluation with ground truth, in pure torch: the :class:`DigitsOnCanvas` dataset, explanation-quality
metrics (:mod:`~xai_plugins.evaluation.metrics`), the small benchmark models and their training recipes and
shipped checkpoints. The workbench (``xai-plugins evaluate``, ``demo``, ``search``) builds on this.

Names are imported lazily, so importing the package costs nothing until one is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "DigitsOnCanvas": "xai_plugins.evaluation.dataset",
    "NUM_CLASSES": "xai_plugins.evaluation.dataset",
    "RECIPES": "xai_plugins.evaluation.training",
    "Recipe": "xai_plugins.evaluation.training",
    "train": "xai_plugins.evaluation.training",
    "load_checkpoint": "xai_plugins.evaluation.training",
    "available_checkpoints": "xai_plugins.evaluation.training",
    "prepare_input": "xai_plugins.evaluation.training",
    "small_resnet": "xai_plugins.evaluation.models",
    "small_densenet": "xai_plugins.evaluation.models",
    "small_efficientnet": "xai_plugins.evaluation.models",
}
_SUBMODULES = ("metrics", "dataset", "models", "training")

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"xai_plugins.evaluation.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'xai_plugins.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
