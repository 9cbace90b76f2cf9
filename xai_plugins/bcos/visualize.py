"""Pictures of B-cos explanations: the colour explanation image of the papers and a contribution heat map.

The colour image shows, per pixel, the colour the dynamic weights ``W(x)`` respond to: the weights of the
six channels ``[r, g, b, 1 - r, 1 - g, 1 - b]`` are made non-negative and each pair ``(c, 1 - c)`` is turned
into an intensity ``w_c / (w_c + w_{1-c})``; the opacity is the weight norm, kept only where the pixel's
contribution is positive, smoothed and normalised by a high percentile (B-cos, CVPR 2022, Sec. 4).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

_TINY = 1e-12


def explanation_image(weights: Tensor, inputs6: Tensor, smooth: int = 15, alpha_percentile: float = 99.5) -> np.ndarray:
    """RGBA explanation image(s) from dynamic weights and encoded inputs.

    Args:
        weights: dynamic linear weights ``W(x)[target]``, shape ``(6, H, W)`` or ``(N, 6, H, W)``.
        inputs6: the encoded inputs ``[x, 1 - x]`` of the same shape.
        smooth: side of the box filter applied to the opacity (odd; 0 or 1 for none).
        alpha_percentile: opacity percentile mapped to fully opaque.

    Returns:
        float array in [0, 1] of shape ``(H, W, 4)`` or ``(N, H, W, 4)``.
    """
    if weights.shape != inputs6.shape:
        raise ValueError(f"weights and inputs must have the same shape, got {tuple(weights.shape)} and "
                         f"{tuple(inputs6.shape)}")
    single = weights.dim() == 3
    w = weights.detach().float()[None] if single else weights.detach().float()
    x = inputs6.detach().float()[None] if single else inputs6.detach().float()
    if w.dim() != 4 or w.shape[1] % 2:
        raise ValueError(f"expected encoded inputs (N, 2C, H, W) such as [x, 1 - x], got shape {tuple(weights.shape)}")
    if not 0 < alpha_percentile <= 100:
        raise ValueError(f"alpha_percentile must be in (0, 100], got {alpha_percentile}")
    half = w.shape[1] // 2
    contribution = (w * x).sum(1, keepdim=True)
    direction = (w / (w.abs().amax(1, keepdim=True) + _TINY)).clamp_min(0)
    colour = direction[:, :half] / (direction[:, :half] + direction[:, half:] + _TINY)
    alpha = torch.linalg.vector_norm(w, dim=1, keepdim=True)
    alpha = torch.where(contribution > 0, alpha, torch.zeros_like(alpha))
    if smooth and smooth > 1:
        alpha = F.avg_pool2d(alpha, smooth, stride=1, padding=smooth // 2, count_include_pad=False)
        alpha = alpha[..., : w.shape[2], : w.shape[3]]
    cutoff = torch.quantile(alpha.flatten(1), alpha_percentile / 100, dim=1).view(-1, 1, 1, 1)
    alpha = (alpha / (cutoff + _TINY)).clamp(0, 1)
    image = torch.cat([colour, alpha], 1).permute(0, 2, 3, 1).cpu().numpy()
    return image[0] if single else image


def contribution_heatmap(contributions: Tensor, percentile: float = 99.5) -> np.ndarray:
    """Blue-white-red RGBA heat map of a contribution map (negative blue, positive red, symmetric scale).

    ``contributions`` is a map ``(H, W)``, a batch of maps ``(N, H, W)``, or per-channel contributions
    ``(N, C, H, W)`` that are summed over channels first. Values beyond the ``percentile`` of the absolute
    values saturate. Returns floats in [0, 1] of shape ``(..., H, W, 4)``.
    """
    c = contributions.detach().float()
    if c.dim() == 4:
        c = c.sum(1)
    if c.dim() not in (2, 3):
        raise ValueError(f"expected a contribution map (H, W), (N, H, W) or (N, C, H, W), got shape "
                         f"{tuple(c.shape)}")
    maps = c if c.dim() == 3 else c[None]
    cutoff = torch.quantile(maps.abs().flatten(1), percentile / 100, dim=1).clamp_min(_TINY)
    scaled = (maps / cutoff.view(-1, 1, 1)).clamp(-1, 1)
    positive, negative = scaled.clamp_min(0), (-scaled).clamp_min(0)
    red = 1 - negative
    green = 1 - positive - negative
    blue = 1 - positive
    rgba = torch.stack([red, green, blue, torch.ones_like(scaled)], -1).cpu().numpy()
    return rgba[0] if c.dim() == 2 else rgba
