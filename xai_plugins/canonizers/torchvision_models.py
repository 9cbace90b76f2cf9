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
from torch.nn.modules.batchnorm import _BatchNorm

from xai_plugins.canonizers.base import Canonizer, modules_of
from xai_plugins.canonizers.batchnorm import (
    batchnorm_affines,
    merge_between,
    merge_following,
    merge_preceding,
    sequential_pairs,
)
from xai_plugins.canonizers.modules import Concat, Gate, Sum, new_module

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

class TorchvisionCanonizer(Canonizer):
    """Shared steps of the torchvision canonizers; subclasses set ``model_class`` and implement ``restructure``.

    ``canonize`` restructures the blocks, merges the layers ``restructure`` listed (``_between``: a layer with a
    BN on each side; ``_following``; ``_preceding``) plus every conv/linear → BN pair inside plain
    ``nn.Sequential`` containers, and finally checks that no BatchNorm was left unmerged.
    """

    model_class: tuple[str, str] = ("", "")
    family: str = ""

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
        self._between: list[tuple[Any, Any, Any, Any]] = []
        self._preceding: list[tuple[Any, Any]] = []
        self._modules_before = modules_of(model)
        self._types = {type(module) for module in self._modules_before}
        try:
            self.restructure(model)
            self._gates()
            norms = self.instances(_BatchNorm)
            affines = batchnorm_affines(norms)
            preceding = self._preceding + sequential_pairs(self.instances(nn.Sequential))
            layer_slots = [t[2] for t in self._between] + [t[2] for t in self._following] + [p[0] for p in preceding]
            layers = {id(layer): layer for layer in (slot[0]._modules[slot[1]] for slot in layer_slots)}
            self.reserve(layer.weight for layer in layers.values())
            # a BN merged into the following layer is not merged into a preceding one as well
            merged = {id(slot[0]._modules[slot[1]]) for slot in [t[0] for t in self._between + self._following]}
            for bn_slot, act_slot, layer_slot, out_slot in self._between:
                out_bn = out_slot[0]._modules[out_slot[1]]
                if id(out_bn) in merged:
                    self._following.append((bn_slot, act_slot, layer_slot, ()))
                    continue
                merged.add(id(out_bn))
                affine, out_affine = affines.get(id(bn_slot[0]._modules[bn_slot[1]])), affines.get(id(out_bn))
                if affine is None or out_affine is None or not merge_between(
                        self, bn_slot, act_slot, layer_slot, out_slot, affine, out_affine):
                    # one side at a time; the preceding merge right after, while the new weight is in cache
                    merge_following(self, bn_slot, act_slot, layer_slot, (), affine)
                    merge_preceding(self, layer_slot, out_slot, out_affine)
            for bn_slot, act_slot, layer_slot, between in self._following:
                merge_following(self, bn_slot, act_slot, layer_slot, between,
                                affines.get(id(bn_slot[0]._modules[bn_slot[1]])))
            for layer_slot, bn_slot in preceding:
                bn = bn_slot[0]._modules[bn_slot[1]]
                if id(bn) not in merged:
                    merged.add(id(bn))
                    merge_preceding(self, layer_slot, bn_slot, affines.get(id(bn)))
            self._check_all_merged(model, norms)
        finally:
            del self._modules_before, self._types, self._following, self._between, self._preceding

    def instances(self, classes: type | tuple[type, ...]) -> list[nn.Module]:
        """The model's modules (as found before canonizing) that are instances of ``classes``, in module order;
        one pass with a set lookup per module, and none when no module's type matches."""
        wanted = {kind for kind in self._types if issubclass(kind, classes)}
        return [module for module in self._modules_before if type(module) in wanted] if wanted else []

    def add(self, parent: nn.Module, name: str, module: nn.Module) -> nn.Module:
        """Add ``module`` (a parameter-free module) as ``parent.<name>``."""
        self.set_child(parent, name, module)
        return module

    def residual_sums(self, block_classes: type | tuple[type, ...], forward: Callable[..., Tensor],
                      adds_residual: Callable[[nn.Module], bool] = lambda block: block.use_res_connect) -> None:
        """Give every block of ``block_classes`` that adds a residual an explicit :class:`Sum` and ``forward``."""
        for block in self.instances(block_classes):
            if adds_residual(block):
                self.add(block, "xai_residual", new_module(Sum))
                self.override_forward(block, forward)

    def head(self, model: nn.Module, body: Callable[[nn.Module, Tensor], Tensor], pool: str, head: str) -> None:
        """Override the top-level forward: ``head(flatten(pool(body(x))))`` with a ``Flatten`` module."""
        self.add(model, "xai_flatten", nn.Flatten(1))
        self.override_forward(model, _flatten_head_forward(body, pool, head))

    def _gates(self) -> None:
        se_class = _tv("ops.misc", "SqueezeExcitation")
        for module in self.instances(se_class):
            if type(module) is se_class:  # exactly torchvision's block, not a subclass with another forward
                self.add(module, "xai_gate", new_module(Gate, signal_takes_all=True))
                self.override_forward(module, _gate_forward)

    def _check_all_merged(self, model: nn.Module, norms: list[_BatchNorm]) -> None:
        claimed = self._claimed  # every merged BN was claimed (its forward overridden) by this canonizer
        for module in norms:
            if id(module) not in claimed:
                name = next(n for n, m in model.named_modules() if m is module)
                raise ValueError(f"{type(self).__name__}: BatchNorm {name!r} has no layer to merge into in this "
                                 f"{type(model).__name__}; the model differs from the torchvision architecture. "
                                 "Try MergeBatchNorm() or register a canonizer for this model")


class VGGCanonizer(TorchvisionCanonizer):
    """torchvision VGG with or without BatchNorm: BN merged into the preceding conv, flatten as a module."""

    model_class = ("models.vgg", "VGG")
    family = "vgg"

    def restructure(self, model: nn.Module) -> None:
        self.head(model, _features_body, "avgpool", "classifier")


class ResNetCanonizer(TorchvisionCanonizer):
    """torchvision ResNet, ResNeXt and Wide ResNet: BN merged, residual sums as :class:`Sum`, one ReLU module
    per call (torchvision reuses one ReLU per block), flatten as a module."""

    model_class = ("models.resnet", "ResNet")
    family = "resnet"

    def restructure(self, model: nn.Module) -> None:
        basic, bottleneck = _tv("models.resnet", "BasicBlock"), _tv("models.resnet", "Bottleneck")
        self._preceding.append(((model, "conv1"), (model, "bn1")))
        for block in self.instances((basic, bottleneck)):
            convs = ("conv1", "conv2") if isinstance(block, basic) else ("conv1", "conv2", "conv3")
            for index, conv in enumerate(convs, 1):
                self._preceding.append(((block, conv), (block, f"bn{index}")))
            self.add(block, "xai_residual", new_module(Sum))
            self.add(block, "xai_relu_out", nn.ReLU())
            if isinstance(block, bottleneck):
                self.add(block, "xai_relu_mid", nn.ReLU())
                self.override_forward(block, _bottleneck_forward)
            else:
                self.override_forward(block, _basic_block_forward)
        self.head(model, _resnet_body, "avgpool", "fc")


class DenseNetCanonizer(TorchvisionCanonizer):
    """torchvision DenseNet-121/161/169/201: concatenations as :class:`Concat`; BN merged into the preceding
    conv where one exists, and into the following conv or classifier (through a :class:`ThresholdReLU`) where
    BN comes first (``norm1`` of every dense layer, every transition, the final ``norm5``)."""

    model_class = ("models.densenet", "DenseNet")
    family = "densenet"

    def restructure(self, model: nn.Module) -> None:
        layer_class = _tv("models.densenet", "_DenseLayer")
        block_class = _tv("models.densenet", "_DenseBlock")
        transition_class = _tv("models.densenet", "_Transition")
        for module in self.instances((block_class, layer_class, transition_class)):
            if isinstance(module, block_class):
                names = list(module._modules)
                self.add(module, "xai_concat", new_module(Concat, dim=1))
                self.override_forward(module, _dense_block_forward(names))
            elif isinstance(module, layer_class):
                self.add(module, "xai_concat", new_module(Concat, dim=1))
                self.override_forward(module, _dense_layer_forward)
                self._between.append(((module, "norm1"), (module, "relu1"), (module, "conv1"), (module, "norm2")))
            elif isinstance(module, transition_class):
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
    family = "efficientnet"

    def restructure(self, model: nn.Module) -> None:
        blocks = (_tv("models.efficientnet", "MBConv"), _tv("models.efficientnet", "FusedMBConv"))
        self.residual_sums(blocks, _mbconv_forward)
        self.head(model, _features_body, "avgpool", "classifier")


class MobileNetV2Canonizer(TorchvisionCanonizer):
    """torchvision MobileNetV2: BN merged, residual sums as :class:`Sum`, the functional global average
    pooling and flatten as modules."""

    model_class = ("models.mobilenetv2", "MobileNetV2")
    family = "mobilenet_v2"

    def restructure(self, model: nn.Module) -> None:
        self.residual_sums(_tv("models.mobilenetv2", "InvertedResidual"), _mobilenet_v2_residual_forward)
        self.add(model, "xai_pool", nn.AdaptiveAvgPool2d((1, 1)))
        self.head(model, _features_body, "xai_pool", "classifier")


class MobileNetV3Canonizer(TorchvisionCanonizer):
    """torchvision MobileNetV3 small and large: BN merged, residual sums as :class:`Sum`, squeeze-and-excitation
    as a signal-takes-all :class:`Gate`, flatten as a module."""

    model_class = ("models.mobilenetv3", "MobileNetV3")
    family = "mobilenet_v3"

    def restructure(self, model: nn.Module) -> None:
        self.residual_sums(_tv("models.mobilenetv3", "InvertedResidual"), _mobilenet_v3_residual_forward)
        self.head(model, _features_body, "avgpool", "classifier")


class RegNetCanonizer(TorchvisionCanonizer):
    """torchvision RegNet X and Y: BN merged, residual sums as :class:`Sum`, squeeze-and-excitation (RegNet Y)
    as a signal-takes-all :class:`Gate`, flatten as a module."""

    model_class = ("models.regnet", "RegNet")
    family = "regnet"

    def restructure(self, model: nn.Module) -> None:
        self.residual_sums(_tv("models.regnet", "ResBottleneckBlock"), _regnet_block_forward,
                           adds_residual=lambda block: True)
        self.head(model, _regnet_body, "avgpool", "fc")
