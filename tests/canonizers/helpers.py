"""BatchNorm randomisation for the canonizer tests (model snapshots and small models: ``tests.support``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorms(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


def randomize_batchnorm(model: nn.Module, seed: int = 0, negative_gamma: bool = True) -> nn.Module:
    """Random running statistics and affine parameters (gamma may be negative or zero), model in eval mode.

    For function-equivalence checks: the merged maps have no special structure to hide errors behind.
    """
    g = torch.Generator().manual_seed(seed)
    for bn in batchnorms(model):
        n = bn.num_features
        bn.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
        bn.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
        low = -1.5 if negative_gamma else 0.5
        bn.weight.data.copy_(torch.rand(n, generator=g) * (1.5 - low) + low)
        if negative_gamma and n > 1:
            bn.weight.data[0] = 0.0
        bn.bias.data.copy_(torch.randn(n, generator=g) * 0.3)
    return model.eval()


def calibrate_batchnorm(model: nn.Module, size: int, seed: int = 0, scale: float = 0.02) -> nn.Module:
    """Randomised statistics on the scale of the real activations (for attribution checks).

    Running variances are measured on a random batch (so activations neither vanish nor explode with depth)
    and then multiplied by random factors in [0.5, 2]; running means are random with standard deviation
    ``scale`` times the measured standard deviation; gamma is uniform in [0.5, 1.5] and beta normal with
    standard deviation ``scale``.
    """
    g = torch.Generator().manual_seed(seed)
    bns = batchnorms(model)
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, size, size, generator=g))
    for bn in bns:
        n = bn.num_features
        bn.momentum = 0.1
        std = bn.running_var.sqrt()
        bn.running_var.mul_(torch.rand(n, generator=g) * 1.5 + 0.5)
        bn.running_mean.copy_(torch.randn(n, generator=g) * scale * std)
        bn.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
        bn.bias.data.copy_(torch.randn(n, generator=g) * scale)
    return model.eval()
