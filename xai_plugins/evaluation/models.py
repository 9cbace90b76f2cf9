"""Small torchvision models with BatchNorm for the ground-truth benchmark, one per canonized family.

They are the stock torchvision classes (or, for ResNet, a subclass that only picks the widths), so the
canonizers for torchvision models apply to them unchanged; the sizes are chosen so that each trains on
:class:`~xai_plugins.evaluation.dataset.DigitsOnCanvas` in a few CPU minutes and its checkpoint is a few
hundred kB. torchvision is imported when a builder is called.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def small_resnet(num_classes: int = 10, widths: Sequence[int] = (16, 32, 48, 64),
                 layers: Sequence[int] = (1, 1, 1, 1)) -> nn.Module:
    """A torchvision ``ResNet`` of ``BasicBlock`` stages with the given widths (ResNet-10 shape by default)."""
    from torchvision.models.resnet import BasicBlock, ResNet

    class SmallResNet(ResNet):
        """torchvision's ResNet with narrow stages; same modules, names and forward as ResNet-18."""

        def __init__(self) -> None:
            nn.Module.__init__(self)
            self._norm_layer = nn.BatchNorm2d
            self.inplanes, self.dilation, self.groups, self.base_width = widths[0], 1, 1, 64
            self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(widths[0])
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._make_layer(BasicBlock, widths[0], layers[0])
            self.layer2 = self._make_layer(BasicBlock, widths[1], layers[1], stride=2)
            self.layer3 = self._make_layer(BasicBlock, widths[2], layers[2], stride=2)
            self.layer4 = self._make_layer(BasicBlock, widths[3], layers[3], stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(widths[3], num_classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    SmallResNet.__qualname__ = "small_resnet.<locals>.SmallResNet"
    return SmallResNet()


def small_densenet(num_classes: int = 10, growth_rate: int = 8, block_config: Sequence[int] = (2, 2, 2),
                   num_init_features: int = 16, bn_size: int = 2) -> nn.Module:
    """A torchvision ``DenseNet``; by default growth rate 8 and three dense blocks of two layers."""
    from torchvision.models import DenseNet

    return DenseNet(growth_rate=growth_rate, block_config=tuple(block_config), num_init_features=num_init_features,
                    bn_size=bn_size, num_classes=num_classes)


def small_efficientnet(num_classes: int = 10) -> nn.Module:
    """A torchvision ``EfficientNet`` (MBConv with squeeze-excitation, SiLU, BatchNorm) with four narrow stages."""
    from torchvision.models.efficientnet import EfficientNet, MBConvConfig

    stages = [MBConvConfig(1, 3, 1, 16, 16, 1, 1.0, 1.0), MBConvConfig(4, 3, 2, 16, 24, 1, 1.0, 1.0),
              MBConvConfig(4, 3, 2, 24, 32, 1, 1.0, 1.0), MBConvConfig(4, 3, 2, 32, 48, 1, 1.0, 1.0)]
    return EfficientNet(stages, dropout=0.1, stochastic_depth_prob=0.0, num_classes=num_classes,
                        last_channel=128)


BN_MODELS = {
    "resnet": small_resnet,
    "densenet": small_densenet,
    "efficientnet": small_efficientnet,
}
