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


def draw_batchnorm(model: nn.Module, seed: int, log10_var: tuple[float, float] = (-1.0, 1.0),
                   mean_scale: float = 1.0, gamma_scale: float = 1.0, beta_scale: float = 0.3,
                   near_zero: float = 0.0, inputs: torch.Tensor | None = None) -> nn.Module:
    """Running statistics and affine parameters for property tests, model in eval mode.

    Gamma normal with standard deviation ``gamma_scale`` (both signs), a fraction ``near_zero`` of channels set
    to ``±1e-6 * gamma_scale``, beta normal with standard deviation ``beta_scale``. With ``inputs``, the
    statistics of the activations are first measured on them (a training-mode pass), so that a deep network
    neither overflows nor vanishes; variances are then those (or 1) times a factor log-uniform over
    ``log10_var`` (orders of magnitude either way), means those (or 0) plus a normal shift of ``mean_scale``
    standard deviations (both signs). Also sets torchvision's ``FrozenBatchNorm2d`` buffers (not measured).
    """
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if getattr(m, "running_var", None) is not None]
    for bn in norms:
        n = bn.running_var.numel()
        gamma = torch.randn(n, generator=g) * gamma_scale
        tiny = torch.rand(n, generator=g) < near_zero
        gamma[tiny] = torch.where(gamma[tiny] < 0, -1.0, 1.0) * 1e-6 * gamma_scale
        weight = bn.weight.data if isinstance(bn.weight, nn.Parameter) else bn.weight
        bias = bn.bias.data if isinstance(bn.bias, nn.Parameter) else bn.bias
        weight.copy_(gamma)
        bias.copy_(torch.randn(n, generator=g) * beta_scale)
    measured = [bn for bn in norms if isinstance(bn, _BatchNorm)] if inputs is not None else []
    for bn in measured:
        bn.reset_running_stats()
        bn.momentum = None
    if measured:
        model.train()
        with torch.no_grad():
            model(inputs)
        for bn in measured:
            bn.momentum = 0.1
    low, high = log10_var
    for bn in norms:
        n = bn.running_var.numel()
        var = bn.running_var.double() if bn in measured else torch.ones(n, dtype=torch.float64)
        mean = bn.running_mean.double() if bn in measured else torch.zeros(n, dtype=torch.float64)
        var = var.clamp(min=1e-12) * 10.0 ** (torch.rand(n, generator=g, dtype=torch.float64) * (high - low) + low)
        bn.running_var.copy_(var)
        bn.running_mean.copy_(mean + torch.randn(n, generator=g, dtype=torch.float64) * mean_scale * var.sqrt())
    return model.eval()
