"""Uncentered, bias-free normalisation layers for B-cos networks.

Subtracting a mean or adding a bias would add terms that are not of the form ``W(x) x``; dividing by a
standard deviation is a (dynamic) scaling, so a norm layer that only divides (and multiplies by a learned
per-channel weight) keeps the network dynamic linear. In explanation mode the statistics are detached,
so they count as part of ``W(x)``. (B-cos v2, Böhle et al., TPAMI 2024, Sec. 3.)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xai_plugins.bcos.mode import Detachable


class BatchNormUncentered2d(Detachable, nn.Module):
    """Batch norm without centering and without bias: ``weight · x / sqrt(var + eps)``.

    Training uses the batch variance (over N, H, W) and updates ``running_var``; evaluation uses
    ``running_var``, so in eval mode the layer is a fixed per-channel scaling.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            dims = (0, *range(2, x.dim()))
            var = (x.detach() if self.explanation else x).var(dim=dims, unbiased=False)
            with torch.no_grad():
                count = x.numel() // x.shape[1]
                unbiased = var.detach() * (count / max(count - 1, 1))
                self.running_var.lerp_(unbiased, self.momentum)
                self.num_batches_tracked.add_(1)
        else:
            var = self.running_var
        scale = (var + self.eps).rsqrt()
        if self.weight is not None:
            scale = scale * self.weight
        return x * scale.view(1, -1, *([1] * (x.dim() - 2)))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.weight is not None}"


class GroupNormUncentered2d(Detachable, nn.Module):
    """Group norm without centering and without bias: each group of channels is divided by its std."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        grouped = x.view(n, self.num_groups, -1)
        var = (grouped.detach() if self.explanation else grouped).var(dim=2, unbiased=False, keepdim=True)
        out = (grouped * (var + self.eps).rsqrt()).view_as(x)
        if self.weight is not None:
            out = out * self.weight.view(1, -1, *([1] * (x.dim() - 2)))
        return out

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.weight is not None}"


class LayerNormUncentered2d(GroupNormUncentered2d):
    """Layer norm (one group over channels and positions) without centering and without bias."""

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__(1, num_channels, eps, affine)


class PositionNormUncentered2d(Detachable, nn.Module):
    """Per-position norm over channels (the layer norm of ConvNeXt-style CNNs) without centering or bias."""

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        var = (x.detach() if self.explanation else x).var(dim=1, unbiased=False, keepdim=True)
        out = x * (var + self.eps).rsqrt()
        if self.weight is not None:
            out = out * self.weight.view(1, -1, *([1] * (x.dim() - 2)))
        return out

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, affine={self.weight is not None}"


NORM_LAYERS: dict[str, type[nn.Module]] = {
    "batch": BatchNormUncentered2d,
    "group": GroupNormUncentered2d,
    "layer": LayerNormUncentered2d,
    "position": PositionNormUncentered2d,
}
"""Norm layers by the short names the model builders accept as ``norm=``."""


def make_norm(kind: str | None, num_channels: int) -> nn.Module:
    """A norm layer of that kind for ``num_channels`` channels (``None`` or ``"none"`` gives an identity)."""
    if kind is None or kind == "none":
        return nn.Identity()
    if kind == "group":
        return GroupNormUncentered2d(_groups_for(num_channels), num_channels)
    try:
        return NORM_LAYERS[kind](num_channels)
    except KeyError:
        raise ValueError(f"unknown norm {kind!r}; use one of: {', '.join(NORM_LAYERS)} or 'none'") from None


def _groups_for(num_channels: int, preferred: int = 32) -> int:
    groups = min(preferred, num_channels)
    while num_channels % groups:
        groups -= 1
    return groups
