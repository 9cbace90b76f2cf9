"""Perturbation pyramids: the input at ``L`` increasing strengths, and a mask-driven blend of its levels.

Level ``l`` of ``L`` is the input blurred with a Gaussian of standard deviation ``max_blur * (1 - l / (L - 1))``
(``"blur"``) or scaled by ``l / (L - 1)`` (``"fade"``), so level 0 is the strongest perturbation and level
``L - 1`` the input itself. A mask value ``m`` in [0, 1] reads the pyramid at the fractional level
``m * (L - 1)`` by linear interpolation between its two neighbouring levels. The pyramid is built once per call
for the whole batch and shared by every area and iteration.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PERTURBATIONS = ("blur", "fade")


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur (N, C, H, W) images with a separable Gaussian of std ``sigma`` truncated at ``ceil(4 sigma)``
    and zero padding (the paper's perturbation); ``sigma == 0`` returns the images unchanged."""
    if sigma <= 0:
        return images
    half = math.ceil(4 * sigma)
    taps = torch.arange(-half, half + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    vertical = kernel.reshape(1, 1, -1, 1).expand(channels, 1, -1, 1)
    horizontal = kernel.reshape(1, 1, 1, -1).expand(channels, 1, 1, -1)
    out = F.conv2d(images, vertical, padding=(half, 0), groups=channels)
    return F.conv2d(out, horizontal, padding=(0, half), groups=channels)


def build_pyramid(images: torch.Tensor, num_levels: int = 8, kind: str = "blur",
                  max_blur: float = 20.0) -> torch.Tensor:
    """The (N, L, C, H, W) pyramid of (N, C, H, W) images, level 0 most perturbed, level L-1 the images."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"perturbation must be one of {PERTURBATIONS}; got {kind!r}")
    if int(num_levels) != num_levels or num_levels < 2:
        raise ValueError(f"num_levels must be an integer >= 2; got {num_levels!r}")
    if not max_blur > 0:
        raise ValueError(f"max_blur must be positive; got {max_blur!r}")
    levels = []
    with torch.no_grad():
        for level in range(num_levels):
            strength = level / (num_levels - 1)
            if kind == "blur":
                levels.append(gaussian_blur(images, (1 - strength) * max_blur))
            else:
                levels.append(images * strength)
    return torch.stack(levels, dim=1)


def apply_pyramid(pyramid: torch.Tensor, masks: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Perturbed images (B, C, H, W) from a pyramid (N, L, C, H, W), masks (B, H, W) in [0, 1] and the image
    ``rows[b]`` each mask applies to: linear interpolation between the two levels around ``m * (L - 1)``.

    The levels are read by advanced indexing, so no per-mask copy of the pyramid is made.
    """
    num_levels, channels, height, width = pyramid.shape[1:]
    position = masks[:, None] * (num_levels - 1)  # (B, 1, H, W)
    lower = position.detach().floor().clamp(0, num_levels - 2).long()
    frac = position - lower
    device = pyramid.device
    n = rows.reshape(-1, 1, 1, 1)
    c = torch.arange(channels, device=device).reshape(1, -1, 1, 1)
    y = torch.arange(height, device=device).reshape(1, 1, -1, 1)
    x = torch.arange(width, device=device).reshape(1, 1, 1, -1)
    low = pyramid[n, lower, c, y, x]
    high = pyramid[n, lower + 1, c, y, x]
    return low + frac * (high - low)
