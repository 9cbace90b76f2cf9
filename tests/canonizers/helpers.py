"""Shared helpers for the canonizer tests: BatchNorm randomisation, model snapshots and small models."""

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


def snapshot(model: nn.Module) -> dict:
    """Everything a canonizer could leave behind: state (bitwise), structure, attributes, hooks, flags."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict(keep_vars=False).items()},
        "params": [(name, id(p), p.requires_grad) for name, p in model.named_parameters()],
        "modules": [_module_snapshot(name, m) for name, m in model.named_modules()],
    }


def _module_snapshot(name: str, m: nn.Module) -> tuple:
    # hooks read first: an ExplicitModule makes its hook containers on first read, which adds them to __dict__
    hooks = (dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks))
    return (name, id(m), type(m), sorted(m.__dict__), list(m._modules), m.training, *hooks)


def assert_same(before: dict, after: dict) -> None:
    assert list(before["state"]) == list(after["state"])
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
        assert value.dtype == after["state"][key].dtype, key
    assert before["params"] == after["params"]
    assert before["modules"] == after["modules"]


def small_vgg(config: str = "A", batch_norm: bool = True, num_classes: int = 10) -> nn.Module:
    """A torchvision VGG (config "A" = VGG-11, "D" = VGG-16) with a narrow classifier so tests stay light."""
    from torchvision.models.vgg import VGG, cfgs, make_layers

    with torch.device("meta"):  # skip allocating and initialising the 100M-parameter stock classifier
        model = VGG(make_layers(cfgs[config], batch_norm=batch_norm), num_classes=num_classes, init_weights=False)
    model.features.to_empty(device="cpu")
    for module in model.features.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    model.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 64), nn.ReLU(True), nn.Dropout(),
                                     nn.Linear(64, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, num_classes))
    return model
