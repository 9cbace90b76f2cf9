"""Canonizer life-cycle helpers: restore checks on the conformance suite's snapshot, small torchvision models
and the function-equivalence measure the canonizer tests share."""

from __future__ import annotations

import torch
from torch import nn

from xai_plugins.conformance.state import ModelState, diff_states, snapshot, summarize

__all__ = ["FLOAT32_RTOL", "assert_restored", "assert_same", "relative_change", "small_vgg", "snapshot"]

FLOAT32_RTOL = 1e-5
"""Relative output change a canonizer may cause in float32: merging re-associates a few products per channel
(``(x*a)*w`` becomes ``x*(a*w)``), each a rounding of 2**-24 relative, accumulated over a network's depth and
its sums; 1e-5 leaves room for that and nothing else (an error in a merge is orders of magnitude larger)."""


def assert_same(before: ModelState, after: ModelState) -> None:
    """The two snapshots of one model agree in everything a user can observe (bitwise)."""
    lines = diff_states(before, after)
    assert not lines, summarize(lines)


def assert_restored(before: ModelState, model: nn.Module) -> None:
    """``model`` is exactly as ``before`` recorded it."""
    assert_same(before, snapshot(model))


def relative_change(reference: torch.Tensor, output: torch.Tensor) -> float:
    """``max |output - reference| / max |reference|`` (in float64)."""
    reference, output = reference.double(), output.double()
    return float((output - reference).abs().max() / reference.abs().max())


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
