"""Shared fixtures of the B-cos tests: BN calibration of freshly built models (one intra-op thread for every
test comes from tests/conftest.py)."""

from __future__ import annotations

import torch
from torch import nn

from xai_plugins.bcos.norms import BatchNormUncentered2d


@torch.no_grad()
def calibrate(model: nn.Module, inputs: torch.Tensor) -> nn.Module:
    """Set every uncentered batch norm's running variance from one batch, then switch to eval mode, so the
    activations of a freshly initialised deep B-cos model do not shrink towards zero."""
    norms = [m for m in model.modules() if isinstance(m, BatchNormUncentered2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 1.0
    model.train()
    model(inputs)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
        m.num_batches_tracked.zero_()
    return model.eval()


def model_state(model: nn.Module) -> dict:
    """Everything a component must leave unchanged: tensors, requires_grad, training flags, hooks, attributes."""
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "grads": {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()},
        "training": {k: m.training for k, m in model.named_modules()},
        "hooks": {k: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
                  for k, m in model.named_modules()},
        "dicts": {k: sorted(m.__dict__) for k, m in model.named_modules()},
        "explanation": {k: m.__dict__.get("explanation") for k, m in model.named_modules()},
    }


def assert_same_state(before: dict, after: dict) -> None:
    for key in ("requires_grad", "training", "hooks", "dicts", "explanation"):
        assert before[key] == after[key], key
    assert before["tensors"].keys() == after["tensors"].keys()
    for k, v in before["tensors"].items():
        assert torch.equal(v, after["tensors"][k]), k
    for k, g in before["grads"].items():
        other = after["grads"][k]
        assert (g is None and other is None) or torch.equal(g, other), k
