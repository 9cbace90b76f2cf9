"""An initializer of spatial filters: random-width Gaussian blobs, written to the xai-plugins contract
``init(shape, generator=None) -> Tensor``."""

from __future__ import annotations

import torch

MIN_SIGMA = 0.5
MAX_SIGMA = 1.5


def gaussian_filters(shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """Filters ``(out, in, *kernel)``: each an isotropic Gaussian centred on the kernel, of a width drawn from
    [0.5, 1.5] pixels, with a random sign, scaled to unit L2 norm. The same generator state gives the same
    filters, bitwise."""
    shape = tuple(int(s) for s in shape)
    if len(shape) < 3 or any(s < 1 for s in shape):
        raise ValueError(f"gaussian_filters needs a filter bank shape (out_channels, in_channels, *kernel) with "
                         f"positive sizes; got {shape}")
    out_in, kernel = shape[:2], shape[2:]
    sigma = MIN_SIGMA + (MAX_SIGMA - MIN_SIGMA) * torch.rand(out_in, generator=generator, dtype=torch.float64)
    sign = torch.where(torch.rand(out_in, generator=generator) < 0.5, -1.0, 1.0).double()
    grids = torch.meshgrid(*[torch.arange(k, dtype=torch.float64) - (k - 1) / 2 for k in kernel], indexing="ij")
    radius2 = sum(g ** 2 for g in grids)
    blobs = torch.exp(-radius2 / (2 * sigma.reshape(*out_in, *[1] * len(kernel)) ** 2))
    norms = blobs.reshape(*out_in, -1).norm(dim=-1).reshape(*out_in, *[1] * len(kernel))
    filters = sign.reshape(*out_in, *[1] * len(kernel)) * blobs / norms
    return filters.float()
