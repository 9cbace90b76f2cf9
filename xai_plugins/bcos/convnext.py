"""B-cos ConvNeXt (B-cos v2, Böhle et al., TPAMI 2024): ConvNeXt blocks with B-cos convolutions, no GELU.

Each block is a 7×7 depthwise B-cos convolution, a norm, two 1×1 B-cos convolutions (4× expansion and back),
a per-channel layer scale and the residual sum; stages are joined by a norm and a 2×2 stride-2 B-cos
convolution; the classifier (norm, 1×1 B-cos convolution) comes before global average pooling. Every piece is
linear or a detached scaling in explanation mode, so the contributions are complete. Module names are the
authors' (``features.<i>``, ``block``, ``layer_scale``, ``classifier``), so their checkpoints load
(:mod:`xai_plugins.bcos.authors`). Their ``_pn`` checkpoints use the centered position norm with eps 1e-6
(``norm="position_centered"``, the default here), their ``_bnu`` ones uncentered batch norm (``norm="batch"``,
eps 1e-5).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xai_plugins.bcos.layers import BcosConv2d, LogitLayer
from xai_plugins.bcos.norms import make_norm

CONVNEXT_STAGES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "atto": ((40, 80, 160, 320), (2, 2, 6, 2)),
    "tiny": ((96, 192, 384, 768), (3, 3, 9, 3)),
    "small": ((96, 192, 384, 768), (3, 3, 27, 3)),
    "base": ((128, 256, 512, 1024), (3, 3, 27, 3)),
    "large": ((192, 384, 768, 1536), (3, 3, 27, 3)),
}
"""Stage widths and depths of the ConvNeXt sizes (Liu et al., 2022)."""

_NORM_EPS = {"position_centered": 1e-6}


def _norm(kind: str | None, channels: int) -> nn.Module:
    return make_norm(kind, channels, eps=_NORM_EPS.get(kind or "", 1e-5))


class StochasticDepth(nn.Module):
    """Drops the residual branch of whole samples with probability ``p`` in training (scaled by ``1/(1-p)``);
    the identity in evaluation and in explanation."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"the stochastic depth probability must be in [0, 1), got {p!r}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * keep.bernoulli_(1.0 - self.p).div_(1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class CNBlock(nn.Module):
    """Depthwise 7×7, norm, 1×1 (×4), 1×1 back, layer scale, residual sum."""

    def __init__(self, dim: int, layer_scale: float, drop: float, b: float, max_out: int, norm: str | None) -> None:
        super().__init__()
        self.block = nn.Sequential(
            BcosConv2d(dim, dim, 7, 1, 3, groups=dim, b=b, max_out=max_out),
            _norm(norm, dim),
            BcosConv2d(dim, 4 * dim, 1, b=b, max_out=max_out),
            BcosConv2d(4 * dim, dim, 1, b=b, max_out=max_out))
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), float(layer_scale)))
        self.stochastic_depth = StochasticDepth(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.stochastic_depth(self.layer_scale * self.block(x)) + x


class BcosConvNeXt(nn.Module):
    """A B-cos ConvNeXt for ``in_channels``-channel encoded images (6 for RGB, see ``encode_input``)."""

    def __init__(self, widths: tuple[int, ...] = CONVNEXT_STAGES["tiny"][0],
                 depths: tuple[int, ...] = CONVNEXT_STAGES["tiny"][1], num_classes: int = 1000,
                 in_channels: int = 6, b: float = 2.0, max_out: int = 1, norm: str | None = "position_centered",
                 layer_scale: float = 1e-6, stochastic_depth_prob: float = 0.1, logit_bias: float | None = None,
                 logit_temperature: float = 1.0) -> None:
        super().__init__()
        if len(widths) != len(depths) or not widths:
            raise ValueError(f"widths and depths need one entry per stage, got {widths!r} and {depths!r}")
        self.num_classes = num_classes
        layers: list[nn.Module] = [BcosConv2d(in_channels, widths[0], 4, 4, b=b, max_out=max_out),
                                   _norm(norm, widths[0])]
        total, index = sum(depths), 0
        for stage, (width, depth) in enumerate(zip(widths, depths)):
            blocks = []
            for _ in range(depth):
                drop = stochastic_depth_prob * index / max(total - 1, 1)
                blocks.append(CNBlock(width, layer_scale, drop, b, max_out, norm))
                index += 1
            layers.append(nn.Sequential(*blocks))
            if stage < len(widths) - 1:
                layers.append(nn.Sequential(_norm(norm, width),
                                            BcosConv2d(width, widths[stage + 1], 2, 2, b=b, max_out=max_out)))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(_norm(norm, widths[-1]),
                                        BcosConv2d(widths[-1], num_classes, 1, b=b, max_out=max_out))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.logit_layer = LogitLayer.for_classes(num_classes, logit_temperature, logit_bias)
        for m in self.modules():
            if isinstance(m, BcosConv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        return self.logit_layer(self.avgpool(self.classifier(self.features(x))).flatten(1))


def _convnext(size: str, kwargs: dict[str, object]) -> BcosConvNeXt:
    widths, depths = CONVNEXT_STAGES[size]
    settings: dict[str, object] = {"widths": widths, "depths": depths, **kwargs}
    return BcosConvNeXt(**settings)  # type: ignore[arg-type]


def bcos_convnext_atto(**kwargs: object) -> BcosConvNeXt:
    """B-cos ConvNeXt-Atto (widths 40–320)."""
    return _convnext("atto", kwargs)


def bcos_convnext_tiny(**kwargs: object) -> BcosConvNeXt:
    """B-cos ConvNeXt-Tiny (widths 96–768, depths 3, 3, 9, 3)."""
    return _convnext("tiny", kwargs)


def bcos_convnext_small(**kwargs: object) -> BcosConvNeXt:
    """B-cos ConvNeXt-Small (widths 96–768, depths 3, 3, 27, 3)."""
    return _convnext("small", kwargs)


def bcos_convnext_base(**kwargs: object) -> BcosConvNeXt:
    """B-cos ConvNeXt-Base (widths 128–1024, depths 3, 3, 27, 3)."""
    return _convnext("base", kwargs)


def bcos_convnext_large(**kwargs: object) -> BcosConvNeXt:
    """B-cos ConvNeXt-Large (widths 192–1536, depths 3, 3, 27, 3)."""
    return _convnext("large", kwargs)
