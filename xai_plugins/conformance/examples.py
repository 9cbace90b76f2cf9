"""Small example models the suite uses when a component does not name its own (``example_model``).

``ReferenceNet`` has what canonizers and attributors must cope with in a few milliseconds: a convolution
followed by BatchNorm, a residual ``x + y`` written in ``forward``, functional ReLUs, a module ReLU, pooling
and a linear classifier. ``preactivation_net`` puts BatchNorm before the ReLU and the convolution instead, for
canonizers that merge BatchNorm into the following layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ReferenceNet(nn.Module):
    """conv-BN-ReLU, a residual block with a functional sum, global pooling and a linear classifier."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn1(self.conv1(x)))
        h = F.relu(h + self.bn2(self.conv2(h)))
        return self.fc(torch.flatten(self.pool(h), 1))


def reference_net(in_channels: int = 3, num_classes: int = 10) -> ReferenceNet:
    """The default example model (random weights)."""
    return ReferenceNet(in_channels, num_classes)


def preactivation_net(in_channels: int = 3, num_classes: int = 10, width: int = 8) -> nn.Sequential:
    """A pre-activation CNN (BN → ReLU → conv, as in DenseNet): the pattern a following-merge canonizer folds,
    including a zero-padded convolution (position-dependent bias) and a BN → ReLU → pooling → linear head."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
        nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, width, 1),
        nn.BatchNorm2d(width), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes),
    )


def randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give every BatchNorm random running statistics and affine parameters, in place, so that merging it
    into a neighbour is a real test (fresh statistics make BatchNorm nearly the identity)."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.running_mean is not None \
                    and mod.running_var is not None:
                n = mod.num_features
                mod.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                mod.running_var.copy_(torch.rand(n, generator=generator) * 0.8 + 0.6)
                if mod.affine:
                    mod.weight.copy_(torch.rand(n, generator=generator) * 0.8 + 0.6)
                    mod.bias.copy_(torch.randn(n, generator=generator) * 0.2)
    return model
