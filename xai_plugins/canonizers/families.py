"""The one table of built-in canonizers, :data:`BUILTIN_CANONIZERS`.

Everything else is derived from it: :data:`~xai_plugins.canonizers.selection.FAMILIES` (the model families
``canonizers_for`` recognises, in matching order), the registrations of the built-in plugin
(:mod:`xai_plugins.canonizers.plugin`) and the error message for an unsupported model. The table is plain data
(import strings), so plugin discovery, ``xai-plugins --help`` and ``list`` import neither torch nor torchvision.
A family's model class is named by its dotted public path (``"torchvision.models.ResNet"``, the form of
``model_types``) and resolved only from modules already imported.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BUILTIN_CANONIZERS", "BuiltinCanonizer"]


@dataclass(frozen=True)
class BuiltinCanonizer:
    """One built-in canonizer: its registry ``name``, the class (as an import string ``module:Class``), a
    one-line ``summary``, the ``model_type`` it canonizes (``None`` for a generic one), a ``label`` for
    messages, whether ``canonizers_for`` picks it for that type (``default``) and further ``register()``
    metadata (``extra``)."""

    name: str
    target: str
    summary: str
    model_type: str | None = None
    label: str = ""
    default: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def model_class(self) -> type | None:
        """The model class, if the module that defines it is already imported (else no model can be one)."""
        if self.model_type is None:
            return None
        module, _, name = self.model_type.rpartition(".")
        return getattr(sys.modules.get(module), name, None)

    def load(self) -> type:
        """The canonizer class."""
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


def _entry(
    name: str,
    target: str,
    *,
    summary: str,
    model_type: str | None = None,
    label: str = "",
    default: bool = True,
    **extra: Any,
) -> BuiltinCanonizer:
    return BuiltinCanonizer(name, target, summary, model_type, label or name, default, dict(extra))


_TV = "xai_plugins.canonizers.torchvision_models"
_HOST: dict[str, Any] = {"zennit": "xai_plugins_zennit.canonizers_for", "captum": "xai_plugins_captum.canonized"}
"""How the hosts reach the family canonizers (``register()`` metadata)."""

BUILTIN_CANONIZERS: tuple[BuiltinCanonizer, ...] = (
    _entry(
        "vgg",
        f"{_TV}:VGGCanonizer",
        model_type="torchvision.models.VGG",
        label="VGG (with and without BatchNorm)",
        summary="torchvision VGG with or without BatchNorm: BN merged into the preceding conv",
        **_HOST,
    ),
    _entry(
        "resnet",
        f"{_TV}:ResNetCanonizer",
        model_type="torchvision.models.ResNet",
        label="ResNet, ResNeXt, Wide ResNet",
        summary="torchvision ResNet/ResNeXt/Wide ResNet: BN merged, residual sums as explicit Sum modules",
        **_HOST,
    ),
    _entry(
        "densenet",
        f"{_TV}:DenseNetCanonizer",
        model_type="torchvision.models.DenseNet",
        label="DenseNet-121/161/169/201",
        summary="torchvision DenseNet: BN merged into preceding or following layers (threshold ReLU), concats explicit",
        **_HOST,
    ),
    _entry(
        "efficientnet",
        f"{_TV}:EfficientNetCanonizer",
        model_type="torchvision.models.EfficientNet",
        label="EfficientNet B0-B7 and V2",
        summary="torchvision EfficientNet B0-B7 and V2: BN merged, residual sums and SE gates explicit",
        **_HOST,
    ),
    _entry(
        "mobilenet_v2",
        f"{_TV}:MobileNetV2Canonizer",
        model_type="torchvision.models.MobileNetV2",
        label="MobileNetV2",
        summary="torchvision MobileNetV2: BN merged, residual sums and functional pooling explicit",
        **_HOST,
    ),
    _entry(
        "mobilenet_v3",
        f"{_TV}:MobileNetV3Canonizer",
        model_type="torchvision.models.MobileNetV3",
        label="MobileNetV3 small and large",
        summary="torchvision MobileNetV3: BN merged, residual sums and SE gates explicit",
        **_HOST,
    ),
    _entry(
        "regnet",
        f"{_TV}:RegNetCanonizer",
        model_type="torchvision.models.RegNet",
        label="RegNet X and Y",
        summary="torchvision RegNet X/Y: BN merged, residual sums and SE gates explicit",
        **_HOST,
    ),
    _entry(
        "densenet_untangled",
        "xai_plugins.canonizers.densenet_untangled:DenseNetUntangledCanonizer",
        model_type="torchvision.models.DenseNet",
        default=False,
        summary="torchvision DenseNet, the paper's untangling variant: each BN slice merged into its own conv copy",
        architecture="densenet",
        variant="untangled",
        zennit="xai_plugins_zennit.canonizers.for_zennit",
        captum="xai_plugins_captum.canonized",
    ),
    _entry(
        "relation_network",
        "xai_plugins.canonizers.relation_network:RelationNetworkCanonizer",
        model_type="xai_plugins.canonizers.relation_network.RelationNetwork",
        label="Relation Network (xai_plugins reference model)",
        summary="Relation Network: encoder BN merged, sum over object pairs explicit",
        zennit="xai_plugins_zennit.canonizers_for",
        captum="xai_plugins_captum.canonized",
        example_model="model:relation_network",
    ),
    _entry(
        "merge_batchnorm_preceding",
        "xai_plugins.canonizers.batchnorm:MergeBatchNormPreceding",
        architecture="generic",
        summary="any traceable model: BatchNorm merged into the conv/linear that feeds it (data flow from torch.fx)",
    ),
    _entry(
        "merge_batchnorm_following",
        "xai_plugins.canonizers.batchnorm:MergeBatchNormFollowing",
        architecture="generic",
        summary="any traceable model: BN [-> ReLU] -> conv merged exactly (threshold ReLU, position-dependent bias "
        "at padded borders)",
        example_model="xai_plugins.conformance.examples:preactivation_net",
    ),
    _entry(
        "merge_batchnorm",
        "xai_plugins.canonizers.batchnorm:MergeBatchNorm",
        architecture="generic",
        summary="any traceable model: every BatchNorm merged into the preceding layer, else the following",
    ),
)
"""Every built-in canonizer, in matching order; ``default=False`` marks a variant ``canonizers_for`` does not
pick (it is used explicitly)."""
