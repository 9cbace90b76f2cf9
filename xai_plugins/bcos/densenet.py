"""B-cos DenseNet-121: densely connected B-cos convolutions with uncentered, bias-free norms and no ReLUs."""

from __future__ import annotations

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


class Transition(nn.Sequential):
    """Norm, 1×1 B-cos convolution and 2×2 average pooling between dense blocks."""

    def __init__(self, in_channels: int, out_channels: int, b: float, max_out: int, norm: str | None) -> None:
        super().__init__(make_norm(norm, in_channels), BcosConv2d(in_channels, out_channels, 1, b=b, max_out=max_out),
                         nn.AvgPool2d(2, 2))


class BcosDenseNet(nn.Module):
    """A B-cos DenseNet for ``in_channels``-channel encoded images (6 for RGB, see ``encode_input``)."""

    def __init__(self, growth: int = 32, blocks: tuple[int, ...] = (6, 12, 24, 16), init_features: int = 64,
                 bn_size: int = 4, num_classes: int = 1000, in_channels: int = 6, b: float = 2.0, max_out: int = 1,
                 norm: str | None = "batch", small_inputs: bool = False, logit_bias: float | None = None,
                 logit_temperature: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        if small_inputs:
            stem: list[nn.Module] = [BcosConv2d(in_channels, init_features, 3, 1, 1, b=b, max_out=max_out),
                                     make_norm(norm, init_features)]
        else:
            stem = [BcosConv2d(in_channels, init_features, 7, 2, 3, b=b, max_out=max_out),
                    make_norm(norm, init_features), nn.AvgPool2d(3, 2, 1)]
        layers = stem
        channels = init_features
        for i, depth in enumerate(blocks):
            for _ in range(depth):
                layers.append(DenseLayer(channels, growth, bn_size, b, max_out, norm))
                channels += growth
            if i < len(blocks) - 1:
                layers.append(Transition(channels, channels // 2, b, max_out, norm))
                channels //= 2
        layers.append(make_norm(norm, channels))
        self.features = nn.Sequential(*layers)
        self.classifier = BcosConv2d(channels, num_classes, 1, b=b, max_out=max_out)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.logit_layer = LogitLayer.for_classes(num_classes, logit_temperature, logit_bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.logit_layer(self.avgpool(self.classifier(self.features(x))).flatten(1))


def bcos_densenet121(**kwargs: object) -> BcosDenseNet:
    """B-cos DenseNet-121 (Böhle et al., B-cos v2)."""
    settings = {"growth": 32, "blocks": (6, 12, 24, 16), "init_features": 64, **kwargs}
    return BcosDenseNet(**settings)
