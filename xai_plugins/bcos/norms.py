"""Bias-free normalisation layers for B-cos networks: uncentered ones and centered ones over each sample.

A B-cos network stays dynamic linear (``f(x) = W(x) x``) through a norm layer as long as the layer adds no
constant: dividing by a standard deviation is a dynamic scaling, and in explanation mode the statistic is
detached so it counts as part of ``W(x)``. Two kinds of layer qualify (B-cos v2, Böhle et al., TPAMI 2024):

- **uncentered** (``*Uncentered2d``): ``weight · x / sqrt(var + eps)``; the batch-norm variant (BNU) is what
  the authors' CNN checkpoints use.
- **centered over the sample** (:class:`PositionNorm2d`, :class:`LayerNorm2d`, :class:`GroupNorm2d`,
  :class:`TokenLayerNorm`): ``weight · (x - mean(x)) / sqrt(var + eps)`` where the mean is taken over the
  channels (and positions) of the same sample. ``x - mean(x)`` is a fixed linear map of ``x`` (a projection), so
  it is part of ``W(x)`` as it is: only the standard deviation is detached in explanation mode, and the
  contributions stay complete. The mean must *not* be detached (that would turn it into a constant offset).

Centering with a batch statistic or a running mean (standard batch norm) is not in either class: in evaluation it
subtracts a constant, which is a bias the contributions cannot explain. No layer here has a bias term.
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

    running_var: Tensor
    num_batches_tracked: Tensor

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


def _centered(x: Tensor, dims: tuple[int, ...], eps: float, detach_std: bool) -> Tensor:
    """``(x - mean) / sqrt(var + eps)`` over ``dims``; with ``detach_std`` the divisor is a constant."""
    var, mean = torch.var_mean(x, dim=dims, unbiased=False, keepdim=True)
    if detach_std:
        var = var.detach()
    return (x - mean) * (var + eps).rsqrt()


def _channel_weight(weight: Tensor | None, x: Tensor) -> Tensor | None:
    return None if weight is None else weight.view(1, -1, *([1] * (x.dim() - 2)))


class PositionNorm2d(Detachable, nn.Module):
    """Centered, bias-free norm over the channels at each position (ConvNeXt's layer norm; the authors'
    ``DetachablePositionNorm2d`` without bias): ``weight · (x - mean_c x) / sqrt(var_c x + eps)``.

    Completeness holds: the centering is linear in ``x`` and only the std is detached in explanation mode.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        out = _centered(x, (1,), self.eps, self.explanation)
        weight = _channel_weight(self.weight, x)
        return out if weight is None else out * weight

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, affine={self.weight is not None}"


class GroupNorm2d(Detachable, nn.Module):
    """Centered, bias-free group norm: each group of channels of a sample is centered and divided by its std
    (the authors' ``DetachableGroupNorm2d`` without bias); only the std is detached in explanation mode."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        grouped = x.reshape(x.shape[0], self.num_groups, -1)
        out = _centered(grouped, (2,), self.eps, self.explanation).view_as(x)
        weight = _channel_weight(self.weight, x)
        return out if weight is None else out * weight

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.weight is not None}"


class LayerNorm2d(GroupNorm2d):
    """Centered, bias-free layer norm over channels and positions of each sample (one group)."""

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__(1, num_channels, eps, affine)


class TokenLayerNorm(Detachable, nn.Module):
    """Centered, bias-free layer norm over the last dimension (tokens of a transformer; the authors'
    ``DetachableLayerNorm`` without bias); only the std is detached in explanation mode."""

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        out = _centered(x, (-1,), self.eps, self.explanation)
        return out if self.weight is None else out * self.weight

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.weight is not None}"


NORM_LAYERS: dict[str, type[nn.Module]] = {
    "batch": BatchNormUncentered2d,
    "group": GroupNormUncentered2d,
    "layer": LayerNormUncentered2d,
    "position": PositionNormUncentered2d,
    "position_centered": PositionNorm2d,
    "group_centered": GroupNorm2d,
    "layer_centered": LayerNorm2d,
}
"""Norm layers by the short names the model builders accept as ``norm=``."""


def make_norm(kind: str | None, num_channels: int, eps: float = 1e-5) -> nn.Module:
    """A norm layer of that kind for ``num_channels`` channels (``None`` or ``"none"`` gives an identity)."""
    if kind is None or kind == "none":
        return nn.Identity()
    if kind not in NORM_LAYERS:
        raise ValueError(f"unknown norm {kind!r}; use one of: {', '.join(NORM_LAYERS)} or 'none'")
    if kind in ("group", "group_centered"):
        return NORM_LAYERS[kind](_groups_for(num_channels), num_channels, eps=eps)
    return NORM_LAYERS[kind](num_channels, eps=eps)


def _groups_for(num_channels: int, preferred: int = 32) -> int:
    groups = min(preferred, num_channels)
    while num_channels % groups:
        groups -= 1
    return groups
