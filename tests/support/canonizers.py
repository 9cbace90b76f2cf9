"""Canonizer life-cycle helpers: restore checks on the conformance suite's snapshot, small torchvision models
and the function-equivalence measure the canonizer tests share."""

from __future__ import annotations

import math

import torch
from torch import nn

from xai_plugins.conformance.state import ModelState, diff_states, snapshot, summarize

__all__ = ["EPSILON", "EPSILON_JUDGED", "FAMILY_BUILDERS", "FLOAT32_RTOL", "assert_restored", "assert_same",
           "epsilon_share", "relative_change", "small_vgg"]

FLOAT32_RTOL = 1e-5
"""Relative output change a canonizer may cause in float32: merging re-associates a few products per channel
(``(x*a)*w`` becomes ``x*(a*w)``), each a rounding of 2**-24 relative, accumulated over a network's depth and
its sums; 1e-5 leaves room for that and nothing else (an error in a merge is orders of magnitude larger)."""


EPSILON = 1e-6
"""The ε of the dense layers' rule in the conserving composites (Zennit's ``Epsilon``, the Captum adapter's
``ZeroBiasEpsilonRule``)."""
EPSILON_JUDGED = 1e-3
"""Conservation is judged where :func:`epsilon_share` is at most this: the ε-rule then absorbs at most 0.1 % of the
relevance by design, far below the 0.01 bound."""


def epsilon_share(model: nn.Module, x: torch.Tensor, target: int) -> float:
    """``ε / |z|`` for ``z`` the explained logit without its bias: ``W h`` of unit ``target`` (sample 0) at the
    model's last ``Linear`` layer, which computes the logits in every model these tests explain.

    The bias-free ε-rule passes on ``z / (z + ε)`` of the logit's relevance, with ``z`` this bias-free value and
    not the logit: a logit made mostly of its bias (small inputs, small features) has a small ``z`` however large
    the logit is, and the ε absorbs about this share of it by the rule's definition.
    """
    classifier = [module for module in model.modules() if isinstance(module, nn.Linear)][-1]
    seen: list[torch.Tensor] = []
    handle = classifier.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    z = float((seen[-1][0].double() @ classifier.weight[target].detach().double()).abs())
    return EPSILON / z if z > 0 else math.inf


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


def _vgg() -> nn.Module:
    from torchvision.models.vgg import VGG, make_layers

    model = VGG(make_layers([8, "M", 16, "M", 16], batch_norm=True), num_classes=5, init_weights=True)
    model.avgpool = nn.AdaptiveAvgPool2d((2, 2))
    model.classifier = nn.Sequential(nn.Linear(16 * 4, 12), nn.ReLU(True), nn.Dropout(), nn.Linear(12, 5))
    return model


def _resnet(bottleneck: bool = False, groups: int = 1, width: int = 64) -> nn.Module:
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    block = Bottleneck if bottleneck else BasicBlock
    return ResNet(block, [1, 1, 1, 1], num_classes=5, groups=groups, width_per_group=width)


def _densenet() -> nn.Module:
    from torchvision.models import DenseNet

    return DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2, num_classes=5)


def _relation_network() -> nn.Module:
    from xai_plugins.canonizers.relation_network import RelationNetwork

    return RelationNetwork(num_classes=5, channels=8, conv_layers=2, g_width=16, g_layers=2, f_width=16)


def _torchvision(name: str, **kwargs: object):
    def build() -> nn.Module:
        import torchvision.models as tvm

        return getattr(tvm, name)(weights=None, num_classes=5, **kwargs)
    return build


FAMILY_BUILDERS = {
    "vgg_bn": _vgg,
    "resnet": _resnet,
    "resnext": lambda: _resnet(bottleneck=True, groups=4, width=8),
    "densenet": _densenet,
    "efficientnet_b0": _torchvision("efficientnet_b0"),
    "efficientnet_v2_s": _torchvision("efficientnet_v2_s"),
    "mobilenet_v2": _torchvision("mobilenet_v2", width_mult=0.25),
    "mobilenet_v3_small": _torchvision("mobilenet_v3_small"),
    "mobilenet_v3_large": _torchvision("mobilenet_v3_large", width_mult=0.25),
    "regnet_x_400mf": _torchvision("regnet_x_400mf"),
    "regnet_y_400mf": _torchvision("regnet_y_400mf"),
    "relation_network": _relation_network,
}
"""A small model of every supported family (random weights, a few classes), for tests over many draws."""
