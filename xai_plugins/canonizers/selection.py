"""``canonizers_for(model)``: pick the canonizers for a model by its type.

Built-in families are matched first (by class, without importing torchvision: a torchvision model can only
exist if torchvision is already imported). Otherwise canonizers registered by plugins are matched through the
``model_types`` they declared (``"package.module.Class"``, or a package prefix such as
``"torchvision.models.ResNet"``), most derived class first. Any other model gets the graph canonizer
(:class:`~xai_plugins.canonizers.graph.GraphCanonizer`) if it can canonize it.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

from torch import nn

from xai_plugins.canonizers.base import Canonizer

__all__ = ["FAMILIES", "Family", "canonizers_for"]


@dataclass(frozen=True)
class Family:
    """A built-in model family: display name, the model class it covers and its canonizer (import string)."""

    name: str
    label: str
    module: str
    cls: str
    canonizer: str

    @property
    def model_type(self) -> str:
        return f"{self.module}.{self.cls}"


_TV = "xai_plugins.canonizers.torchvision_models"
FAMILIES: tuple[Family, ...] = (
    Family("vgg", "VGG (with and without BatchNorm)", "torchvision.models.vgg", "VGG", f"{_TV}:VGGCanonizer"),
    Family("resnet", "ResNet, ResNeXt, Wide ResNet", "torchvision.models.resnet", "ResNet",
           f"{_TV}:ResNetCanonizer"),
    Family("densenet", "DenseNet-121/161/169/201", "torchvision.models.densenet", "DenseNet",
           f"{_TV}:DenseNetCanonizer"),
    Family("efficientnet", "EfficientNet B0-B7 and V2", "torchvision.models.efficientnet", "EfficientNet",
           f"{_TV}:EfficientNetCanonizer"),
    Family("mobilenet_v2", "MobileNetV2", "torchvision.models.mobilenetv2", "MobileNetV2",
           f"{_TV}:MobileNetV2Canonizer"),
    Family("mobilenet_v3", "MobileNetV3 small and large", "torchvision.models.mobilenetv3", "MobileNetV3",
           f"{_TV}:MobileNetV3Canonizer"),
    Family("regnet", "RegNet X and Y", "torchvision.models.regnet", "RegNet", f"{_TV}:RegNetCanonizer"),
    Family("relation_network", "Relation Network (xai_plugins reference model)",
           "xai_plugins.canonizers.relation_network", "RelationNetwork",
           "xai_plugins.canonizers.relation_network:RelationNetworkCanonizer"),
)
"""The built-in families, in the order they are matched."""


def _load(target: str) -> type[Canonizer]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _builtin(model: nn.Module) -> Family | None:
    for family in FAMILIES:
        module = sys.modules.get(family.module)
        cls = getattr(module, family.cls, None) if module is not None else None
        if cls is not None and isinstance(model, cls):
            return family
    return None


def _matches(declared: str, cls: type) -> bool:
    full = f"{cls.__module__}.{cls.__qualname__}"
    if declared == full:
        return True
    prefix, _, name = declared.rpartition(".")
    return name == cls.__qualname__ and bool(prefix) and cls.__module__.startswith(prefix + ".")


def _registered(model: nn.Module):
    from xai_plugins import list_components

    components = [c for c in list_components("canonizer") if c.model_types]
    for cls in type(model).__mro__:
        for component in components:
            if any(_matches(declared, cls) for declared in component.model_types):
                return component
    return None


def _unsupported_message(model: nn.Module) -> str:
    families = "; ".join(f"{f.label} ({f.model_type})" for f in FAMILIES)
    cls = type(model)
    return (
        f"no canonizer is known for {cls.__module__}.{cls.__qualname__}. Supported families: {families}. "
        "For BatchNorm merging alone try xai_plugins.canonizers.MergeBatchNorm(). To support this model, "
        "write a canonizer (subclass xai_plugins.canonizers.Canonizer) and register it from a plugin: "
        "'@xai_plugins.hookimpl def xai_register_canonizers(register): register(\"my_model\", MyCanonizer, "
        "summary=..., paper=..., model_types=(\"my_package.MyModel\",))' with the plugin module listed under "
        "the entry-point group 'xai_plugins'; canonizers_for then picks it by model type"
    )


def canonizers_for(model: nn.Module) -> list[Canonizer]:
    """Fresh canonizer instances that canonize ``model`` (a list, as Zennit's ``Composite`` expects).

    Raises ``TypeError`` for something that is not a module and ``ValueError`` listing the supported
    families and how to register a canonizer when the model type is unknown.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"canonizers_for expects a torch.nn.Module, got {type(model).__name__}")
    family = _builtin(model)
    if family is not None:
        return [_load(family.canonizer)()]
    component = _registered(model)
    if component is not None:
        return [component.load()()]
    # no hand-written family: the graph canonizer, if it can canonize the model (xai_plugins.canonizers.graph)
    from xai_plugins.canonizers.graph import graph_canonizer_for

    canonizer, reason = graph_canonizer_for(model)
    if canonizer is not None:
        return [canonizer]
    raise ValueError(f"{_unsupported_message(model)}. The graph canonizer cannot canonize it either: {reason}")
