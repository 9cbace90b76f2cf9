"""Canonizers for the torchvision classification families: presets of the graph canonizer.

Each family canonizer is a :class:`~xai_plugins.canonizers.graph.GraphCanonizer` limited to one torchvision
model class. The graph canonizer reads the model's real data flow, so a family canonizer (1) merges every
BatchNorm exactly into its neighbouring linear layer (into the preceding one where a conv/linear feeds it, into
the following one where BN comes first, as in DenseNet, through a
:class:`~xai_plugins.canonizers.modules.ThresholdReLU`), (2) routes residual sums, concatenations and
squeeze-and-excitation gates through explicit modules (:mod:`xai_plugins.canonizers.modules`) and gives every
call of a parameter-free module its own module, and (3) replaces functional calls (``F.relu``,
``F.adaptive_avg_pool2d``, ``torch.flatten``) by modules; blocks and stages stay called modules. What a preset
adds to the graph canonizer is the family's promise: it refuses a model of another class, and a model of its
class whose canonical form would be incomplete (a BatchNorm with no layer to merge into, an operation without an
exact canonical form), instead of leaving part of it as is. ``tests/canonizers/test_family_presets.py`` checks
each family's canonical form, placements included, over drawn BatchNorm states.

The probe verification is off by default (``verify=False``): the family's form is exact by the tests above, and
the check would cost four forward passes at every apply. ``verify=True`` turns it on.

torchvision is not imported by this module: its classes are looked up only when a canonizer is applied, at
which point the model (and so torchvision) exists.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Sequence

from torch import nn

from xai_plugins.canonizers.graph import GraphCanonizer, UnsupportedModelError, plan_for

__all__ = [
    "DenseNetCanonizer",
    "EfficientNetCanonizer",
    "FamilyCanonizer",
    "MobileNetV2Canonizer",
    "MobileNetV3Canonizer",
    "RegNetCanonizer",
    "ResNetCanonizer",
    "VGGCanonizer",
]


def _tv(module: str, name: str) -> type:
    """The torchvision class ``torchvision.<module>.<name>`` (imported lazily)."""
    return getattr(importlib.import_module(f"torchvision.{module}"), name)


class FamilyCanonizer(GraphCanonizer):
    """A graph canonizer for one torchvision model class (``model_class``: module and class name under
    ``torchvision``) that promises the complete canonical form: a model of another class is refused with a
    ``TypeError``, a model whose BatchNorms do not all merge with a ``ValueError``, one with an operation without
    an exact canonical form with :class:`~xai_plugins.canonizers.graph.UnsupportedModelError`; the model is
    left untouched in each case."""

    model_class: tuple[str, str] = ("", "")

    def __init__(self, input_shape: Sequence[int] | None = None, verify: bool = False,
                 tolerance: float = 1e-5) -> None:
        super().__init__(input_shape, verify, tolerance)

    def canonize(self, model: nn.Module) -> None:
        cls = _tv(*self.model_class)
        if not isinstance(model, cls):
            raise TypeError(f"{type(self).__name__} canonizes torchvision {cls.__name__} models, got "
                            f"{type(model).__name__}; use xai_plugins.canonizers.canonizers_for(model) to pick "
                            "the right canonizer")
        with _in_eval_mode(model):  # a model in training mode gets the eval-mode function (apply warns)
            plan = plan_for(model, self.input_shape)
            if plan.unsupported:
                row = plan.unsupported[0]
                raise UnsupportedModelError(f"{type(self).__name__}: node '{row.node}' in module '{row.module}': "
                                            f"{row.detail}; the model differs from the torchvision architecture, "
                                            "and the model was not changed")
            if plan.unmerged:
                path, detail = plan.unmerged[0]
                raise ValueError(f"{type(self).__name__}: BatchNorm {path!r}: {detail}; the model was not changed. "
                                 "Fix that BatchNorm, or use GraphCanonizer(), which canonizes the rest and leaves "
                                 "it as is (explain_canonization(model) shows the plan)")
            self.canonize_planned(model, plan)


@contextlib.contextmanager
def _in_eval_mode(model: nn.Module) -> Iterator[None]:
    """Every module of ``model`` in eval mode inside the block (its ``training`` flag, as ``eval()`` sets it),
    the modules that were training put back afterwards."""
    training = [module for module in model.modules() if module.training]
    for module in training:
        module.training = False
    try:
        yield
    finally:
        for module in training:
            module.training = True


class VGGCanonizer(FamilyCanonizer):
    """torchvision VGG with or without BatchNorm: BN merged into the preceding conv, flatten as a module."""

    model_class = ("models.vgg", "VGG")


class ResNetCanonizer(FamilyCanonizer):
    """torchvision ResNet, ResNeXt and Wide ResNet: BN merged, residual sums as :class:`Sum`, one ReLU module
    per call (torchvision reuses one ReLU per block), flatten as a module."""

    model_class = ("models.resnet", "ResNet")


class DenseNetCanonizer(FamilyCanonizer):
    """torchvision DenseNet-121/161/169/201: concatenations as :class:`Concat`; BN merged into the preceding
    conv where one exists, and into the following conv or classifier (through a :class:`ThresholdReLU`) where
    BN comes first (``norm1`` of every dense layer, every transition, the final ``norm5``)."""

    model_class = ("models.densenet", "DenseNet")


class EfficientNetCanonizer(FamilyCanonizer):
    """torchvision EfficientNet B0–B7 and V2 (MBConv and FusedMBConv): BN merged, residual sums as
    :class:`Sum`, squeeze-and-excitation as a :class:`Gate`, flatten as a module."""

    model_class = ("models.efficientnet", "EfficientNet")


class MobileNetV2Canonizer(FamilyCanonizer):
    """torchvision MobileNetV2: BN merged, residual sums as :class:`Sum`, the functional global average
    pooling and flatten as modules."""

    model_class = ("models.mobilenetv2", "MobileNetV2")


class MobileNetV3Canonizer(FamilyCanonizer):
    """torchvision MobileNetV3 small and large: BN merged, residual sums as :class:`Sum`, squeeze-and-excitation
    as a :class:`Gate`, flatten as a module."""

    model_class = ("models.mobilenetv3", "MobileNetV3")


class RegNetCanonizer(FamilyCanonizer):
    """torchvision RegNet X and Y: BN merged, residual sums as :class:`Sum`, squeeze-and-excitation (RegNet Y)
    as a :class:`Gate`, flatten as a module."""

    model_class = ("models.regnet", "RegNet")
