"""Canonizers for the torchvision classification families, with explicit per-architecture data-flow maps.

Each canonizer (1) merges every BatchNorm exactly into its neighbouring linear layer (into the preceding one
where a conv/linear feeds it, into the following one where BN comes first, as in DenseNet), (2) replaces the
blocks' ``forward`` by an equivalent one that routes residual sums, concatenations and squeeze-and-excitation
gates through explicit modules (:mod:`xai_plugins.canonizers.modules`) and uses a separate module for every
call (no module is called twice), and (3) replaces functional calls of the top-level ``forward``
(``F.relu``, ``F.adaptive_avg_pool2d``, ``torch.flatten``) by modules. New submodules are named ``xai_*``.

torchvision is not imported by this module: its classes are looked up only when a canonizer is applied, at
which point the model (and so torchvision) exists.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from xai_plugins.canonizers.base import Canonizer
from xai_plugins.canonizers.batchnorm import is_batchnorm, merge_following, merge_preceding, sequential_pairs
from xai_plugins.canonizers.modules import Concat, Gate, Sum

__all__ = [
    "DenseNetCanonizer",
    "EfficientNetCanonizer",
    "MobileNetV2Canonizer",
    "MobileNetV3Canonizer",
    "RegNetCanonizer",
    "ResNetCanonizer",
    "TorchvisionCanonizer",
    "VGGCanonizer",
]


def _tv(module: str, name: str) -> type:
    """The torchvision class ``torchvision.<module>.<name>`` (imported lazily)."""
    return getattr(importlib.import_module(f"torchvision.{module}"), name)


# -- canonical forwards (bound to the block instances as instance attributes) -------------------------------

def _gate_forward(self: nn.Module, input: Tensor) -> Tensor:
    return self.xai_gate(input, self._scale(input))


def _flatten_head_forward(body: Callable[[nn.Module, Tensor], Tensor], pool: str, head: str):
    def forward(self: nn.Module, x: Tensor) -> Tensor:
        return getattr(self, head)(self.xai_flatten(getattr(self, pool)(body(self, x))))
    return forward


def _basic_block_forward(self: nn.Module, x: Tensor) -> Tensor:
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.xai_relu_out(self.xai_residual(out, identity))


def _bottleneck_forward(self: nn.Module, x: Tensor) -> Tensor:
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.xai_relu_mid(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return self.xai_relu_out(self.xai_residual(out, identity))


def _resnet_body(self: nn.Module, x: Tensor) -> Tensor:
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _dense_layer_forward(self: nn.Module, input: Tensor | list[Tensor]) -> Tensor:
    features = [input] if isinstance(input, Tensor) else list(input)
    out = self.conv1(self.relu1(self.norm1(self.xai_concat(*features))))
    new = self.conv2(self.relu2(self.norm2(out)))
    if self.drop_rate > 0:
        new = F.dropout(new, p=self.drop_rate, training=self.training)
    return new


def _dense_block_forward(names: list[str]):
    def forward(self: nn.Module, init_features: Tensor) -> Tensor:
        features = [init_features]
        for name in names:
            features.append(self._modules[name](features))
        return self.xai_concat(*features)
    return forward


def _densenet_body(self: nn.Module, x: Tensor) -> Tensor:
    return self.xai_relu(self.features(x))


def _mbconv_forward(self: nn.Module, input: Tensor) -> Tensor:
    result = self.block(input)
    if self.use_res_connect:
        result = self.xai_residual(self.stochastic_depth(result), input)
    return result


def _mobilenet_v2_residual_forward(self: nn.Module, x: Tensor) -> Tensor:
    if self.use_res_connect:
        return self.xai_residual(x, self.conv(x))
    return self.conv(x)


def _mobilenet_v3_residual_forward(self: nn.Module, input: Tensor) -> Tensor:
    result = self.block(input)
    if self.use_res_connect:
        result = self.xai_residual(result, input)
    return result


def _regnet_block_forward(self: nn.Module, x: Tensor) -> Tensor:
    shortcut = x if self.proj is None else self.proj(x)
    return self.activation(self.xai_residual(shortcut, self.f(x)))


def _features_body(self: nn.Module, x: Tensor) -> Tensor:
    return self.features(x)


def _regnet_body(self: nn.Module, x: Tensor) -> Tensor:
    return self.trunk_output(self.stem(x))


# -- canonizers -----------------------------------------------------------------------------------------------

_FORWARD_METHODS = ("forward", "_forward_impl")
"""Methods whose behaviour a canonizer's replacement ``forward`` stands for (torchvision's ``forward`` calls
``_forward_impl`` in some classes)."""


def _own_forward(module: nn.Module, cls: type) -> str | None:
    """The name of the first class between ``type(module)`` and ``cls`` that defines its own ``forward`` (or
    ``_forward_impl``), or ``None`` if ``module`` computes exactly what ``cls`` computes."""
    for klass in type(module).__mro__:
        if klass is cls:
            return None
        if any(name in vars(klass) for name in _FORWARD_METHODS):
            return f"{klass.__module__}.{klass.__qualname__}"
    return None


class TorchvisionCanonizer(Canonizer):
    """Shared steps of the torchvision canonizers; subclasses set ``model_class`` and implement ``restructure``.

    ``canonize`` restructures the blocks, merges the layers ``restructure`` listed (``_following``: BN first,
    merged into the layer after it; ``_preceding``: BN after its layer; a layer listed in both takes both)
    plus every conv/linear → BN pair inside plain ``nn.Sequential`` containers, and finally checks that no
    BatchNorm was left unmerged. A model (or block) whose class overrides the torchvision ``forward`` is
    refused with an error naming the class: its data flow is not the one the canonizer rewrites.
    """

    model_class: tuple[str, str] = ("", "")

    def restructure(self, model: nn.Module) -> None:
        """Add explicit modules, override forwards and record architecture-specific merges."""
        raise NotImplementedError

    def canonize(self, model: nn.Module) -> None:
        cls = _tv(*self.model_class)
        if not isinstance(model, cls):
            raise TypeError(f"{type(self).__name__} canonizes torchvision {cls.__name__} models, got "
                            f"{type(model).__name__}; use xai_plugins.canonizers.canonizers_for(model) to pick "
                            "the right canonizer")
        self._following: list[tuple[Any, Any, Any, tuple[nn.Module, ...]]] = []
        self._preceding: list[tuple[Any, Any]] = []
        self._modules_before = list(model.modules())
        try:
            self.replace_forward(model, cls, None)
            self.restructure(model)
            self._gates()
            norms = [module for module in self._modules_before if is_batchnorm(module)]
            merged: set[int] = set()
            for bn_slot, act_slot, layer_slot, between in self._following:
                merged.add(id(bn_slot[0]._modules[bn_slot[1]]))
                merge_following(self, bn_slot, act_slot, layer_slot, between)
            # a BN merged into the following layer is not merged into a preceding one as well
            for layer_slot, bn_slot in self._preceding + sequential_pairs(self.instances(nn.Sequential)):
                bn = bn_slot[0]._modules[bn_slot[1]]
                if id(bn) not in merged:
                    merged.add(id(bn))
                    merge_preceding(self, layer_slot, bn_slot)
            self._check_all_merged(model, norms)
        finally:
            del self._modules_before, self._following, self._preceding

    def instances(self, classes: type | tuple[type, ...]) -> list[nn.Module]:
        """The model's modules (as found before canonizing) that are instances of ``classes``, in module order."""
        return [module for module in self._modules_before if isinstance(module, classes)]

    def replace_forward(self, module: nn.Module, cls: type, forward: Callable[..., Tensor] | None) -> None:
        """Override the forward of ``module`` (an instance of torchvision's ``cls``) by ``forward``; refuses a
        module whose class overrides torchvision's forward. ``forward=None`` only checks."""
        own = _own_forward(module, cls)
        if own is not None:
            raise TypeError(f"{type(self).__name__}: {own} overrides the forward of torchvision's "
                            f"{cls.__name__}, so its data flow is not the one this canonizer rewrites (it would "
                            "replace that forward and change the function). Canonize the model with a canonizer "
                            "written for this class (register one for its model type), or use "
                            "xai_plugins.canonizers.MergeBatchNorm() for BatchNorm merging alone")
        if forward is not None:
            self.override_forward(module, forward)

    def add(self, parent: nn.Module, name: str, module: nn.Module) -> nn.Module:
        """Add ``module`` (a parameter-free module) as ``parent.<name>``."""
        self.set_child(parent, name, module)
        return module

    def residual_sums(self, block_classes: type | tuple[type, ...], forward: Callable[..., Tensor],
                      adds_residual: Callable[[nn.Module], bool] = lambda block: block.use_res_connect) -> None:
        """Give every block of ``block_classes`` that adds a residual an explicit :class:`Sum` and ``forward``."""
        classes = block_classes if isinstance(block_classes, tuple) else (block_classes,)
        for block in self.instances(classes):
            if adds_residual(block):
                self.add(block, "xai_residual", Sum())
                self.replace_forward(block, next(c for c in classes if isinstance(block, c)), forward)

    def head(self, model: nn.Module, body: Callable[[nn.Module, Tensor], Tensor], pool: str, head: str) -> None:
        """Override the top-level forward: ``head(flatten(pool(body(x))))`` with a ``Flatten`` module."""
        self.add(model, "xai_flatten", nn.Flatten(1))
        self.override_forward(model, _flatten_head_forward(body, pool, head))

    def _gates(self) -> None:
        se_class = _tv("ops.misc", "SqueezeExcitation")
        for module in self.instances(se_class):
            if _own_forward(module, se_class) is None:  # a subclass with its own forward keeps it (and its gate)
                self.add(module, "xai_gate", Gate(signal_takes_all=True))
                self.override_forward(module, _gate_forward)

    def _check_all_merged(self, model: nn.Module, norms: list[nn.Module]) -> None:
        for module in norms:
            if not self.owns(module):  # every merged BN was claimed (its forward overridden) by this canonizer
                name = next(n for n, m in model.named_modules() if m is module)
                raise ValueError(f"{type(self).__name__}: BatchNorm {name!r} has no layer to merge into in this "
                                 f"{type(model).__name__}; the model differs from the torchvision architecture. "
                                 "Try MergeBatchNorm() or register a canonizer for this model")


class VGGCanonizer(TorchvisionCanonizer):
    """torchvision VGG with or without BatchNorm: BN merged into the preceding conv, flatten as a module."""

    model_class = ("models.vgg", "VGG")

    def restructure(self, model: nn.Module) -> None:
        self.head(model, _features_body, "avgpool", "classifier")


class ResNetCanonizer(TorchvisionCanonizer):
    """torchvision ResNet, ResNeXt and Wide ResNet: BN merged, residual sums as :class:`Sum`, one ReLU module
    per call (torchvision reuses one ReLU per block), flatten as a module."""

    model_class = ("models.resnet", "ResNet")

    def restructure(self, model: nn.Module) -> None:
        basic, bottleneck = _tv("models.resnet", "BasicBlock"), _tv("models.resnet", "Bottleneck")
        self._preceding.append(((model, "conv1"), (model, "bn1")))
        for block in self.instances((basic, bottleneck)):
            kind = bottleneck if isinstance(block, bottleneck) else basic
            convs = ("conv1", "conv2", "conv3") if kind is bottleneck else ("conv1", "conv2")
            for index, conv in enumerate(convs, 1):
                self._preceding.append(((block, conv), (block, f"bn{index}")))
            self.add(block, "xai_residual", Sum())
            self.add(block, "xai_relu_out", nn.ReLU())
            if kind is bottleneck:
                self.add(block, "xai_relu_mid", nn.ReLU())
            self.replace_forward(block, kind, _bottleneck_forward if kind is bottleneck else _basic_block_forward)
        self.head(model, _resnet_body, "avgpool", "fc")


class DenseNetCanonizer(TorchvisionCanonizer):
    """torchvision DenseNet-121/161/169/201: concatenations as :class:`Concat`; BN merged into the preceding
    conv where one exists, and into the following conv or classifier (through a :class:`ThresholdReLU`) where
    BN comes first (``norm1`` of every dense layer, every transition, the final ``norm5``)."""

    model_class = ("models.densenet", "DenseNet")

    def restructure(self, model: nn.Module) -> None:
        layer_class = _tv("models.densenet", "_DenseLayer")
        block_class = _tv("models.densenet", "_DenseBlock")
        transition_class = _tv("models.densenet", "_Transition")
        for module in self.instances((block_class, layer_class, transition_class)):
            if isinstance(module, block_class):
                names = list(module._modules)
                self.add(module, "xai_concat", Concat(dim=1))
                self.replace_forward(module, block_class, _dense_block_forward(names))
            elif isinstance(module, layer_class):
                self.add(module, "xai_concat", Concat(dim=1))
                self.replace_forward(module, layer_class, _dense_layer_forward)
                self._following.append(((module, "norm1"), (module, "relu1"), (module, "conv1"), ()))
                self._preceding.append(((module, "conv1"), (module, "norm2")))
            elif isinstance(module, transition_class):
                self.replace_forward(module, transition_class, None)
                self._following.append(((module, "norm"), (module, "relu"), (module, "conv"), ()))
        self.add(model, "xai_relu", nn.ReLU())
        pool = self.add(model, "xai_pool", nn.AdaptiveAvgPool2d((1, 1)))
        self.head(model, _densenet_body, "xai_pool", "classifier")
        self._following.append(((model.features, "norm5"), (model, "xai_relu"), (model, "classifier"),
                                (pool, model.xai_flatten)))


class EfficientNetCanonizer(TorchvisionCanonizer):
    """torchvision EfficientNet B0–B7 and V2 (MBConv and FusedMBConv): BN merged, residual sums as
    :class:`Sum`, squeeze-and-excitation as a signal-takes-all :class:`Gate`, flatten as a module."""

    model_class = ("models.efficientnet", "EfficientNet")

    def restructure(self, model: nn.Module) -> None:
        blocks = (_tv("models.efficientnet", "MBConv"), _tv("models.efficientnet", "FusedMBConv"))
        self.residual_sums(blocks, _mbconv_forward)
        self.head(model, _features_body, "avgpool", "classifier")


class MobileNetV2Canonizer(TorchvisionCanonizer):
    """torchvision MobileNetV2: BN merged, residual sums as :class:`Sum`, the functional global average
    pooling and flatten as modules."""

    model_class = ("models.mobilenetv2", "MobileNetV2")

    def restructure(self, model: nn.Module) -> None:
        self.residual_sums(_tv("models.mobilenetv2", "InvertedResidual"), _mobilenet_v2_residual_forward)
        self.add(model, "xai_pool", nn.AdaptiveAvgPool2d((1, 1)))
        self.head(model, _features_body, "xai_pool", "classifier")


class MobileNetV3Canonizer(TorchvisionCanonizer):
    """torchvision MobileNetV3 small and large: BN merged, residual sums as :class:`Sum`, squeeze-and-excitation
    as a signal-takes-all :class:`Gate`, flatten as a module."""

    model_class = ("models.mobilenetv3", "MobileNetV3")

    def restructure(self, model: nn.Module) -> None:
        self.residual_sums(_tv("models.mobilenetv3", "InvertedResidual"), _mobilenet_v3_residual_forward)
        self.head(model, _features_body, "avgpool", "classifier")


class RegNetCanonizer(TorchvisionCanonizer):
    """torchvision RegNet X and Y: BN merged, residual sums as :class:`Sum`, squeeze-and-excitation (RegNet Y)
    as a signal-takes-all :class:`Gate`, flatten as a module."""

    model_class = ("models.regnet", "RegNet")

    def restructure(self, model: nn.Module) -> None:
        self.residual_sums(_tv("models.regnet", "ResBottleneckBlock"), _regnet_block_forward,
                           adds_residual=lambda block: True)
        self.head(model, _regnet_body, "avgpool", "fc")
