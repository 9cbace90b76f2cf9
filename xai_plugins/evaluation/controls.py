"""Control attributions that know nothing of the model: the input itself, its edges, and noise.

A localisation benchmark is only valid if these rank at the bottom: a dataset on which the input itself (or an
edge detector) localises the object as well as an explanation does measures the image, not the explanation.
Each control has the signature of an explanation method, ``fn(model, inputs, target) -> attributions`` shaped
like ``inputs``; the model and target are ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["edge_attribution", "input_attribution", "random_attribution"]

_SOBEL = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])


def input_attribution(model: nn.Module | None, inputs: Tensor, target: Tensor | None = None) -> Tensor:
    """The input itself as the attribution."""
    return inputs.detach().clone()


def edge_attribution(model: nn.Module | None, inputs: Tensor, target: Tensor | None = None) -> Tensor:
    """Sobel gradient magnitude of each channel (replicate padding), averaged over channels and repeated."""
    x = inputs.detach()
    n, c, h, w = x.shape
    kernels = torch.stack([_SOBEL, _SOBEL.t()])[:, None].to(x)
    gradients = F.conv2d(F.pad(x.reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="replicate"), kernels)
    magnitude = gradients.pow(2).sum(1).sqrt().reshape(n, c, h, w).mean(1, keepdim=True)
    return magnitude.expand(n, c, h, w).clone()


def random_attribution(model: nn.Module | None, inputs: Tensor, target: Tensor | None = None, *,
                       seed: int = 0) -> Tensor:
    """Uniform noise in [0, 1) of the inputs' shape, from a fixed seed (the same for every call)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(inputs.shape, generator=generator, dtype=inputs.dtype).to(inputs.device)
