"""The example model: registered as ``example_tiny_convnet`` and the model the canonizer is meant for."""

from __future__ import annotations

import torch
from torch import nn


class TinyConvNet(nn.Sequential):
    """conv-BN-ReLU twice, global pooling and a linear classifier on (N, 3, H, W) images; random weights."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes); an input that is not (N, 3, H, W) is a ValueError saying so."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"TinyConvNet takes images of shape (N, 3, H, W) with 3 channels; got an input of "
                             f"shape {tuple(x.shape)}")
        return super().forward(x)


def tiny_convnet(num_classes: int = 10) -> TinyConvNet:
    """The registered builder: a :class:`TinyConvNet` with random weights (nothing is downloaded)."""
    return TinyConvNet(num_classes)
