"""The small model the canonizer's conformance checks run on (``example_model=`` in plugin.py)."""

from __future__ import annotations

from torch import nn


def tiny_convnet(num_classes: int = 10) -> nn.Sequential:
    """conv-BN-ReLU twice, global pooling and a linear classifier; random weights."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes),
    )
