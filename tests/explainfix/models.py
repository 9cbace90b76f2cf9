"""Small models for the ExplainFix tests: residual sums, concatenation, depthwise, 1-D/3-D, sigmoid heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xai_plugins.conformance.state import ModelState, diff_states, snapshot


class Block(nn.Module):
    """conv-BN-ReLU-conv-BN plus identity, then ReLU (a ResNet basic block)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class TinyResNet(nn.Module):
    """Stem, two residual blocks, a concatenation of two branches, a depthwise conv, a 1x1 conv, a head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 8, sigmoid: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.block1 = Block(width)
        self.block2 = Block(width)
        self.left = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.right = nn.Conv2d(width, width, (3, 5), padding=(1, 2), bias=False)
        self.bn_cat = nn.BatchNorm2d(2 * width)
        self.depthwise = nn.Conv2d(2 * width, 2 * width, 3, padding=1, groups=2 * width, bias=False)
        self.bn_dw = nn.BatchNorm2d(2 * width)
        self.pointwise = nn.Conv2d(2 * width, width, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)
        self.sigmoid = sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.stem(x)))
        h = self.block2(self.block1(h))
        h = F.relu(self.bn_cat(torch.cat([self.left(h), self.right(h)], dim=1)))
        h = F.relu(self.bn_dw(self.depthwise(h)))
        h = F.relu(self.pointwise(h))
        out = self.fc(torch.flatten(self.pool(h), 1))
        return torch.sigmoid(out) if self.sigmoid else out


class Net1d(nn.Module):
    """Conv1d stack with BN and a flatten into a linear layer (spatial features of size > 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(2, 6, 5, padding=2)
        self.bn1 = nn.BatchNorm1d(6)
        self.conv2 = nn.Conv1d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.adaptive_avg_pool1d(F.relu(self.conv2(h)), 4)
        return self.fc(h.flatten(1))


class Net3d(nn.Module):
    """A Conv3d classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean((2, 3, 4)))


class NoSpatial(nn.Module):
    """Only 1x1 convolutions and a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3)))


class DataDependent(nn.Module):
    """A block whose forward branches on tensor values, which torch.fx cannot trace."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.conv(x)
        return x


class Untraceable(nn.Module):
    """A model with a data-dependent block inside."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.gate = DataDependent()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.gate(self.stem(x)).mean((2, 3)))


def assert_unchanged(model: nn.Module, before: ModelState) -> None:
    """Assert ``model`` matches a :func:`snapshot` exactly (the conformance suite's full snapshot)."""
    assert diff_states(before, snapshot(model)) == []
