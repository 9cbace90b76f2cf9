"""Canonizers (Pahde et al., "Optimizing Explanations by Network Canonization and Hyperparameter Search",
CVPRW 2023): rewrite a model into an equivalent form that rule-based attribution (LRP) explains correctly.

Pure torch; the canonizers have Zennit's duck-typed interface (``apply(model) -> handles``, ``remove()``,
``copy()``). Start with :func:`canonizers_for`. Names are imported lazily so that plugin discovery stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xai_plugins._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "canonizers_for": "xai_plugins.canonizers.selection",
    "FAMILIES": "xai_plugins.canonizers.selection",
    "families": "xai_plugins.canonizers.selection",
    "SubmoduleCanonizer": "xai_plugins.canonizers.selection",
    "CanonizerConflictWarning": "xai_plugins.canonizers.selection",
    "TrainingModeWarning": "xai_plugins.canonizers.base",
    "Canonizer": "xai_plugins.canonizers.base",
    "CanonizerHandle": "xai_plugins.canonizers.base",
    "Sum": "xai_plugins.canonizers.modules",
    "Concat": "xai_plugins.canonizers.modules",
    "Gate": "xai_plugins.canonizers.modules",
    "ThresholdReLU": "xai_plugins.canonizers.modules",
    "PositionalBiasConv2d": "xai_plugins.canonizers.modules",
    "GraphCanonizer": "xai_plugins.canonizers.graph",
    "explain_canonization": "xai_plugins.canonizers.graph",
    "canonize": "xai_plugins.canonizers.graph",
    "MergeBatchNorm": "xai_plugins.canonizers.batchnorm",
    "MergeBatchNormPreceding": "xai_plugins.canonizers.batchnorm",
    "MergeBatchNormFollowing": "xai_plugins.canonizers.batchnorm",
    "VGGCanonizer": "xai_plugins.canonizers.torchvision_models",
    "ResNetCanonizer": "xai_plugins.canonizers.torchvision_models",
    "DenseNetCanonizer": "xai_plugins.canonizers.torchvision_models",
    "DenseNetUntangledCanonizer": "xai_plugins.canonizers.densenet_untangled",
    "EfficientNetCanonizer": "xai_plugins.canonizers.torchvision_models",
    "MobileNetV2Canonizer": "xai_plugins.canonizers.torchvision_models",
    "MobileNetV3Canonizer": "xai_plugins.canonizers.torchvision_models",
    "RegNetCanonizer": "xai_plugins.canonizers.torchvision_models",
    "RelationNetwork": "xai_plugins.canonizers.relation_network",
    "RelationNetworkCanonizer": "xai_plugins.canonizers.relation_network",
}

if TYPE_CHECKING:  # the lazy exports, visible to type checkers and editors
    from xai_plugins.canonizers.base import Canonizer, CanonizerHandle, TrainingModeWarning  # noqa: F401
    from xai_plugins.canonizers.batchnorm import (  # noqa: F401
        MergeBatchNorm,
        MergeBatchNormFollowing,
        MergeBatchNormPreceding,
    )
    from xai_plugins.canonizers.densenet_untangled import DenseNetUntangledCanonizer  # noqa: F401
    from xai_plugins.canonizers.graph import GraphCanonizer, canonize, explain_canonization  # noqa: F401
    from xai_plugins.canonizers.modules import Concat, Gate, PositionalBiasConv2d, Sum, ThresholdReLU  # noqa: F401
    from xai_plugins.canonizers.relation_network import RelationNetwork, RelationNetworkCanonizer  # noqa: F401
    from xai_plugins.canonizers.selection import (  # noqa: F401
        FAMILIES,
        CanonizerConflictWarning,
        SubmoduleCanonizer,
        canonizers_for,
        families,
    )
    from xai_plugins.canonizers.torchvision_models import (  # noqa: F401
        DenseNetCanonizer,
        EfficientNetCanonizer,
        MobileNetV2Canonizer,
        MobileNetV3Canonizer,
        RegNetCanonizer,
        ResNetCanonizer,
        VGGCanonizer,
    )

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
