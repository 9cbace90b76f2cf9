"""Small models with known answers for the extremal perturbation tests."""

from __future__ import annotations

import pytest
import torch

from xai_plugins.conformance.state import ModelState, diff_states, snapshot


class RegionModel(torch.nn.Module):
    """Two logits: a statistic of the pixels inside ``box`` and of those outside, times ``scale``.

    With ``contrast=False`` the statistic is the mean intensity (the answer under the fade perturbation);
    with ``contrast=True`` it is the mean squared deviation from 0.5 (removed by blurring noise).
    """

    def __init__(self, box: tuple[int, int, int, int] = (12, 44, 16, 48), size: int | tuple[int, int] = 64,
                 contrast: bool = False, scale: float = 100.0) -> None:
        super().__init__()
        region = torch.zeros(*((size, size) if isinstance(size, int) else size))
        region[box[0]:box[1], box[2]:box[3]] = 1
        self.register_buffer("region", region)
        self.contrast = contrast
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = ((x - 0.5) ** 2).mean(1) * 4 if self.contrast else x.mean(1)
        inside = (value * self.region).sum((1, 2)) / self.region.sum()
        outside = (value * (1 - self.region)).sum((1, 2)) / (1 - self.region).sum()
        return torch.stack([inside, outside], dim=1) * self.scale


class SmallNet(torch.nn.Module):
    """A tiny CNN with batch norm and dropout (training-mode behaviour differs from eval)."""

    def __init__(self, classes: int = 5, extra: bool = False) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(6)
        self.conv2 = torch.nn.Conv2d(6, 8, 3, padding=1)
        self.drop = torch.nn.Dropout(0.5)
        self.fc = torch.nn.Linear(8, classes)
        self.extra = extra

    def forward(self, x: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.relu(self.conv2(torch.relu(self.bn(self.conv1(x)))))
        out = self.fc(self.drop(h.mean(dim=(2, 3))))
        return out if offset is None else out + offset


def off_centre_box(height: int, width: int) -> tuple[int, int, int, int]:
    """A box in the upper right, neither centred nor symmetric under a horizontal or vertical flip."""
    return round(0.10 * height), round(0.52 * height), round(0.50 * width), round(0.88 * width)


def top_iou(masks: torch.Tensor, region: torch.Tensor) -> list[float]:
    """IoU between the region and the ``region.sum()`` largest mask values, per mask of (N, H, W)."""
    k = int(region.sum())
    flat = masks.flatten(1)
    chosen = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, flat.topk(k, dim=1).indices, True)
    truth = region.flatten().bool()
    return ((chosen & truth).sum(1) / (chosen | truth).sum(1)).tolist()


def assert_same(model: torch.nn.Module, before: ModelState) -> None:
    """Assert the model is exactly as in the ``snapshot`` taken before (the conformance suite's full snapshot)."""
    assert diff_states(before, snapshot(model)) == []


@pytest.fixture
def noise() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def small_net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet().eval()
