"""Evaluation with ground truth, in pure torch: the :class:`DigitsOnCanvas` dataset, explanation-quality
metrics (:mod:`~xai_plugins.evaluation.metrics`), the small benchmark models and their training recipes and
shipped checkpoints. The workbench (``xai-plugins evaluate``, ``demo``, ``search``) builds on this.

Names are imported lazily, so importing the package costs nothing until one is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xai_plugins._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "DigitsOnCanvas": "xai_plugins.evaluation.dataset",
    "TexturedCanvas": "xai_plugins.evaluation.textured",
    "SortOfClevr": "xai_plugins.evaluation.sort_of_clevr",
    "DATASETS": "xai_plugins.evaluation.training",
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
_SUBMODULES = ("metrics", "dataset", "models", "training", "controls", "textured", "sort_of_clevr", "relational")

if TYPE_CHECKING:  # the lazy exports, visible to type checkers and editors
    from xai_plugins.evaluation.dataset import NUM_CLASSES, DigitsOnCanvas  # noqa: F401
    from xai_plugins.evaluation.models import small_densenet, small_efficientnet, small_resnet  # noqa: F401
    from xai_plugins.evaluation.sort_of_clevr import SortOfClevr  # noqa: F401
    from xai_plugins.evaluation.textured import TexturedCanvas  # noqa: F401
    from xai_plugins.evaluation.training import (  # noqa: F401
        DATASETS,
        RECIPES,
        Recipe,
        available_checkpoints,
        load_checkpoint,
        prepare_input,
        train,
    )

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
