"""The B-cos input encoding ``[x, 1 - x]``.

With only ``x``, a dark pixel (x near 0) has a near-zero norm and can neither contribute nor be told apart
from black; with ``[x, 1 - x]`` every colour has the same norm per pixel and the angle encodes the colour, so
alignment (cosine similarity) sees it (B-cos, Böhle et al., CVPR 2022, Sec. 3.2).
"""

from __future__ import annotations

import torch
from torch import Tensor


def encode_input(x: Tensor, dim: int = 1) -> Tensor:
    """Concatenate ``x`` and ``1 - x`` along the channel dimension (3 → 6 channels for RGB in [0, 1])."""
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError(f"encode_input expects a floating-point tensor with values in [0, 1], got {type(x).__name__}"
                        + (f" of dtype {x.dtype}" if torch.is_tensor(x) else ""))
    return torch.cat([x, 1 - x], dim=dim)


def decode_input(x6: Tensor, dim: int = 1) -> Tensor:
    """The image ``x`` back from its encoding ``[x, 1 - x]`` (the first half of the channels)."""
    channels = x6.shape[dim]
    if channels % 2:
        raise ValueError(f"an encoded input has an even number of channels, got {channels}")
    return x6.narrow(dim, 0, channels // 2)
