"""A small CNN for small images, as a B-cos network and as the same standard network for comparison."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from xai_plugins.bcos.layers import BcosConv2d, LogitLayer
from xai_plugins.bcos.norms import make_norm


class BcosSimpleCNN(nn.Module):
    """Three 3×3 B-cos convolutions (strides 1, 2, 2) with uncentered norms, a 1×1 B-cos classifier, global
    average pooling and the logit layer. Meant for 16×16 to 64×64 encoded images (6 channels for RGB)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 6, widths: tuple[int, ...] = (32, 64, 128),
                 b: float = 2.0, max_out: int = 1, norm: str | None = "batch", logit_bias: float | None = None,
                 logit_temperature: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        channels = in_channels
        for i, width in enumerate(widths):
            layers += [BcosConv2d(channels, width, 3, 1 if i == 0 else 2, 1, b=b, max_out=max_out),
                       make_norm(norm, width)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = BcosConv2d(channels, num_classes, 1, b=b, max_out=max_out)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.logit_layer = LogitLayer.for_classes(num_classes, logit_temperature, logit_bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.logit_layer(self.avgpool(self.classifier(self.features(x))).flatten(1))


class StandardSimpleCNN(nn.Module):
    """The same architecture as :class:`BcosSimpleCNN` as a standard network: convolutions with biases,
    batch norm and ReLU, a 1×1 classifier and global average pooling, on plain (3-channel) images."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        channels = in_channels
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(channels, width, 3, 1 if i == 0 else 2, 1), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.avgpool(self.classifier(self.features(x))).flatten(1)


def bcos_simple_cnn(**kwargs: Any) -> BcosSimpleCNN:
    """A small B-cos CNN for small images (digits, CIFAR-sized inputs)."""
    return BcosSimpleCNN(**kwargs)
