"""B-cos ResNets (B-cos v2): torchvision's ResNet layout with B-cos convolutions, no ReLUs and no biases.

The alignment scaling replaces the activation function, norms are uncentered and bias-free, max pooling is
replaced by average pooling, and the classifier is a 1×1 B-cos convolution applied before global average
pooling, followed by the logit layer.
"""

from __future__ import annotations

from torch import Tensor, nn

from xai_plugins.bcos.layers import BcosConv2d, LogitLayer
from xai_plugins.bcos.norms import make_norm


class BasicBlock(nn.Module):
    """Two 3×3 B-cos convolutions with a residual connection."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, b: float,
                 max_out: int, norm: str | None, groups: int = 1, base_width: int = 64) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock (ResNet-18/34) supports groups=1 and width_per_group=64 only, got "
                             f"groups={groups}, width_per_group={base_width}; use a Bottleneck ResNet for ResNeXt or "
                             "Wide ResNet")
        self.conv1 = BcosConv2d(inplanes, planes, 3, stride, 1, b=b, max_out=max_out)
        self.bn1 = make_norm(norm, planes)
        self.conv2 = BcosConv2d(planes, planes, 3, 1, 1, b=b, max_out=max_out)
        self.bn2 = make_norm(norm, planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.bn2(self.conv2(self.bn1(self.conv1(x)))) + identity


class Bottleneck(nn.Module):
    """1×1, 3×3 (strided, ``groups``-grouped) and 1×1 B-cos convolutions with a residual connection (ResNet v1.5).

    The inner width is ``int(planes · base_width / 64) · groups``, as in torchvision: ResNeXt-50 (32×4d) has
    ``groups=32, base_width=4``, Wide ResNet-50-2 ``base_width=128``.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, b: float,
                 max_out: int, norm: str | None, groups: int = 1, base_width: int = 64) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = BcosConv2d(inplanes, width, 1, b=b, max_out=max_out)
        self.bn1 = make_norm(norm, width)
        self.conv2 = BcosConv2d(width, width, 3, stride, 1, groups=groups, b=b, max_out=max_out)
        self.bn2 = make_norm(norm, width)
        self.conv3 = BcosConv2d(width, planes * 4, 1, b=b, max_out=max_out)
        self.bn3 = make_norm(norm, planes * 4)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.bn1(self.conv1(x))))
        return self.bn3(self.conv3(out)) + identity


class BcosResNet(nn.Module):
    """A B-cos ResNet for ``in_channels``-channel encoded images (6 for RGB, see ``encode_input``).

    ``small_inputs=True`` uses a 3×3 stride-1 stem without pooling (for 32×32 images and smaller).
    ``width`` is the stem width (64 in the papers; stages have 1, 2, 4, 8 times it), ``groups`` and
    ``width_per_group`` shape the bottlenecks (ResNeXt, Wide ResNet).
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int], num_classes: int = 1000,
                 in_channels: int = 6, b: float = 2.0, max_out: int = 1, norm: str | None = "batch",
                 width: int = 64, small_inputs: bool = False, logit_bias: float | None = None,
                 logit_temperature: float = 1.0, groups: int = 1, width_per_group: int = 64) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.groups, self.base_width = groups, width_per_group
        if small_inputs:
            self.conv1 = BcosConv2d(in_channels, width, 3, 1, 1, b=b, max_out=max_out)
            self.pool: nn.Module = nn.Identity()
        else:
            self.conv1 = BcosConv2d(in_channels, width, 7, 2, 3, b=b, max_out=max_out)
            self.pool = nn.AvgPool2d(3, 2, 1)
        self.bn1 = make_norm(norm, width)
        self.inplanes = width
        stages = []
        for i, depth in enumerate(layers):
            stages.append(self._make_stage(block, width * 2 ** i, depth, 1 if i == 0 else 2, b, max_out, norm))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features = self.inplanes
        self.fc = BcosConv2d(self.num_features, num_classes, 1, b=b, max_out=max_out)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.logit_layer = LogitLayer.for_classes(num_classes, logit_temperature, logit_bias)

    def _make_stage(self, block: type[BasicBlock] | type[Bottleneck], planes: int, depth: int, stride: int,
                    b: float, max_out: int, norm: str | None) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                BcosConv2d(self.inplanes, planes * block.expansion, 1, stride, b=b, max_out=max_out),
                make_norm(norm, planes * block.expansion))
        shape = (self.groups, self.base_width)
        blocks = [block(self.inplanes, planes, stride, downsample, b, max_out, norm, *shape)]
        self.inplanes = planes * block.expansion
        blocks += [block(self.inplanes, planes, 1, None, b, max_out, norm, *shape) for _ in range(1, depth)]
        return nn.Sequential(*blocks)

    def forward_features(self, x: Tensor) -> Tensor:
        """The feature map before the classifier."""
        x = self.pool(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.logit_layer(self.avgpool(self.fc(self.forward_features(x))).flatten(1))


def bcos_resnet18(**kwargs: object) -> BcosResNet:
    """B-cos ResNet-18 (Böhle et al., B-cos v2)."""
    return BcosResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


def bcos_resnet34(**kwargs: object) -> BcosResNet:
    """B-cos ResNet-34 (Böhle et al., B-cos v2)."""
    return BcosResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


def bcos_resnet50(**kwargs: object) -> BcosResNet:
    """B-cos ResNet-50 (Böhle et al., B-cos v2)."""
    return BcosResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


def bcos_resnet101(**kwargs: object) -> BcosResNet:
    """B-cos ResNet-101 (Böhle et al., B-cos v2)."""
    return BcosResNet(Bottleneck, [3, 4, 23, 3], **kwargs)


def bcos_resnet152(**kwargs: object) -> BcosResNet:
    """B-cos ResNet-152 (Böhle et al., B-cos v2)."""
    return BcosResNet(Bottleneck, [3, 8, 36, 3], **kwargs)


def bcos_resnext50_32x4d(**kwargs: object) -> BcosResNet:
    """B-cos ResNeXt-50 (32×4d): 32 groups of width 4 in each bottleneck (Böhle et al., B-cos v2)."""
    return BcosResNet(Bottleneck, [3, 4, 6, 3], **{"groups": 32, "width_per_group": 4, **kwargs})


def bcos_wide_resnet50_2(**kwargs: object) -> BcosResNet:
    """B-cos Wide ResNet-50-2: bottlenecks twice as wide (Böhle et al., B-cos v2)."""
    return BcosResNet(Bottleneck, [3, 4, 6, 3], **{"width_per_group": 128, **kwargs})
