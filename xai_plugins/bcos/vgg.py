"""B-cos VGG-11/13/16/19: B-cos convolutions with uncentered norms, average pooling and a convolutional classifier.

As in B-cos v2, the three fully connected layers of VGG become a 7×7 and two 1×1 B-cos convolutions applied
before global average pooling, so the model accepts any input size.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from xai_plugins.bcos.layers import BcosConv2d, LogitLayer
from xai_plugins.bcos.norms import make_norm

VGG_LAYOUTS: dict[int, tuple[int | str, ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}
"""Configurations A, B, D and E of Simonyan and Zisserman by depth: channel counts, "M" for a 2×2 pooling."""

VGG11_LAYOUT = VGG_LAYOUTS[11]


class BcosVGG(nn.Module):
    """A B-cos VGG for ``in_channels``-channel encoded images (6 for RGB, see ``encode_input``)."""

    def __init__(self, layout: tuple[int | str, ...] = VGG11_LAYOUT, num_classes: int = 1000, in_channels: int = 6,
                 b: float = 2.0, max_out: int = 1, norm: str | None = "batch", classifier_width: int = 4096,
                 logit_bias: float | None = None, logit_temperature: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        channels = in_channels
        for entry in layout:
            if entry == "M":
                layers.append(nn.AvgPool2d(2, 2))
            else:
                layers += [BcosConv2d(channels, int(entry), 3, 1, 1, b=b, max_out=max_out), make_norm(norm, int(entry))]
                channels = int(entry)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            BcosConv2d(channels, classifier_width, 7, 1, 3, b=b, max_out=max_out),
            BcosConv2d(classifier_width, classifier_width, 1, b=b, max_out=max_out),
            BcosConv2d(classifier_width, num_classes, 1, b=b, max_out=max_out))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.logit_layer = LogitLayer.for_classes(num_classes, logit_temperature, logit_bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.logit_layer(self.avgpool(self.classifier(self.features(x))).flatten(1))


def bcos_vgg11(**kwargs: Any) -> BcosVGG:
    """B-cos VGG-11 with uncentered batch norms (the authors' ``vgg11_bnu``; Böhle et al., B-cos v2)."""
    return BcosVGG(VGG_LAYOUTS[11], **kwargs)


def bcos_vgg13(**kwargs: Any) -> BcosVGG:
    """B-cos VGG-13 with uncentered batch norms (the authors' ``vgg13_bnu``)."""
    return BcosVGG(VGG_LAYOUTS[13], **kwargs)


def bcos_vgg16(**kwargs: Any) -> BcosVGG:
    """B-cos VGG-16 with uncentered batch norms (the authors' ``vgg16_bnu``)."""
    return BcosVGG(VGG_LAYOUTS[16], **kwargs)


def bcos_vgg19(**kwargs: Any) -> BcosVGG:
    """B-cos VGG-19 with uncentered batch norms (the authors' ``vgg19_bnu``)."""
    return BcosVGG(VGG_LAYOUTS[19], **kwargs)
