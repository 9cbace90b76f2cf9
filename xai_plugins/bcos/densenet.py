"""B-cos DenseNets (121/161/169/201): densely connected B-cos convolutions, bias-free norms and no ReLUs.

Module names follow torchvision's and the authors' (``features.conv0``, ``features.denseblock1.denselayer1``,
``features.transition1``, ``features.norm5``, ``classifier``), so their state dicts map onto these models by a
key rename (:mod:`xai_plugins.bcos.authors`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from xai_plugins.bcos.layers import BcosConv2d, LogitLayer
from xai_plugins.bcos.norms import make_norm


class DenseLayer(nn.Module):
    """Norm, 1×1 B-cos bottleneck, norm, 3×3 B-cos convolution; the output is concatenated to the input."""

    def __init__(self, in_channels: int, growth: int, bn_size: int, b: float, max_out: int, norm: str | None) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, in_channels)
        self.conv1 = BcosConv2d(in_channels, bn_size * growth, 1, b=b, max_out=max_out)
        self.norm2 = make_norm(norm, bn_size * growth)
        self.conv2 = BcosConv2d(bn_size * growth, growth, 3, 1, 1, b=b, max_out=max_out)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.conv2(self.norm2(self.conv1(self.norm1(x))))], 1)


class DenseBlock(nn.Sequential):
    """``depth`` dense layers named ``denselayer1`` ... (each sees every earlier layer's output)."""

    def __init__(self, depth: int, in_channels: int, growth: int, bn_size: int, b: float, max_out: int,
                 norm: str | None) -> None:
        super().__init__()
        for i in range(depth):
            self.add_module(f"denselayer{i + 1}", DenseLayer(in_channels + i * growth, growth, bn_size, b, max_out,
                                                               norm))


class Transition(nn.Sequential):
    """Norm, 1×1 B-cos convolution and 2×2 average pooling between dense blocks."""

    def __init__(self, in_channels: int, out_channels: int, b: float, max_out: int, norm: str | None) -> None:
        super().__init__()
        self.norm = make_norm(norm, in_channels)
        self.conv = BcosConv2d(in_channels, out_channels, 1, b=b, max_out=max_out)
        self.pool = nn.AvgPool2d(2, 2)


class BcosDenseNet(nn.Module):
    """A B-cos DenseNet for ``in_channels``-channel encoded images (6 for RGB, see ``encode_input``).

    ``small_inputs=True`` uses a 3×3 stride-1 stem convolution without norm and pooling, as the authors do for
    CIFAR-sized images.
    """

    def __init__(self, growth: int = 32, blocks: tuple[int, ...] = (6, 12, 24, 16), init_features: int = 64,
                 bn_size: int = 4, num_classes: int = 1000, in_channels: int = 6, b: float = 2.0, max_out: int = 1,
                 norm: str | None = "batch", small_inputs: bool = False, logit_bias: float | None = None,
                 logit_temperature: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential()
        if small_inputs:
            self.features.add_module("conv0", BcosConv2d(in_channels, init_features, 3, 1, 1, b=b, max_out=max_out))
        else:
            self.features.add_module("conv0", BcosConv2d(in_channels, init_features, 7, 2, 3, b=b, max_out=max_out))
            self.features.add_module("norm0", make_norm(norm, init_features))
            self.features.add_module("pool0", nn.AvgPool2d(3, 2, 1))
        channels = init_features
        for i, depth in enumerate(blocks):
            self.features.add_module(f"denseblock{i + 1}", DenseBlock(depth, channels, growth, bn_size, b, max_out,
                                                                      norm))
            channels += depth * growth
            if i < len(blocks) - 1:
                self.features.add_module(f"transition{i + 1}", Transition(channels, channels // 2, b, max_out, norm))
                channels //= 2
        self.features.add_module(f"norm{len(blocks) + 1}", make_norm(norm, channels))
        self.num_features = channels
        self.classifier = BcosConv2d(channels, num_classes, 1, b=b, max_out=max_out)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.logit_layer = LogitLayer.for_classes(num_classes, logit_temperature, logit_bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.logit_layer(self.avgpool(self.classifier(self.features(x))).flatten(1))


def _densenet(growth: int, blocks: tuple[int, ...], init_features: int, kwargs: dict[str, Any]) -> BcosDenseNet:
    settings: dict[str, Any] = {"growth": growth, "blocks": blocks, "init_features": init_features, **kwargs}
    return BcosDenseNet(**settings)


def bcos_densenet121(**kwargs: object) -> BcosDenseNet:
    """B-cos DenseNet-121: growth 32, blocks (6, 12, 24, 16), 64 stem features (Böhle et al., B-cos v2)."""
    return _densenet(32, (6, 12, 24, 16), 64, kwargs)


def bcos_densenet161(**kwargs: object) -> BcosDenseNet:
    """B-cos DenseNet-161: growth 48, blocks (6, 12, 36, 24), 96 stem features."""
    return _densenet(48, (6, 12, 36, 24), 96, kwargs)


def bcos_densenet169(**kwargs: object) -> BcosDenseNet:
    """B-cos DenseNet-169: growth 32, blocks (6, 12, 32, 32), 64 stem features."""
    return _densenet(32, (6, 12, 32, 32), 64, kwargs)


def bcos_densenet201(**kwargs: object) -> BcosDenseNet:
    """B-cos DenseNet-201: growth 32, blocks (6, 12, 48, 32), 64 stem features."""
    return _densenet(32, (6, 12, 48, 32), 64, kwargs)
