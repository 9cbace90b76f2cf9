"""The Zennit-facing promises that must hold on every supported Zennit release (``make test`` runs this file on
zennit 0.5.1 and again on 1.0.0): an attribution through our adapter leaves the model exactly as it was, and every
way a user can obtain a canonizer gives conserving LRP inside a Zennit composite."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.support.batchnorm import BatchNormDraw, apply
from tests.support.canonizers import assert_same
from xai_plugins.conformance.state import snapshot

tvm = pytest.importorskip("torchvision.models")
zennit = pytest.importorskip("zennit")
from zennit.attribution import Gradient  # noqa: E402
from zennit.composites import EpsilonAlpha2Beta1, EpsilonPlusFlat  # noqa: E402

import xai_plugins  # noqa: E402
import xai_plugins_zennit  # noqa: E402
from xai_plugins import canonizers as core  # noqa: E402
from xai_plugins_zennit import compat  # noqa: E402

SIZE = 32


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    return apply(tvm.resnet18(num_classes=10), BatchNormDraw(seed=3), input_shape=(4, 3, SIZE, SIZE))


def _ratio(model: nn.Module, composite) -> float:
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        output = model(x)
    target = int(output[0].argmax())
    start = torch.zeros_like(output)
    start[0, target] = output[0, target]
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x, start)
    return float(relevance.sum() / output[0, target])


def _state(model: nn.Module) -> dict:
    return {
        "parameters": [(name, id(p), p.requires_grad) for name, p in model.named_parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "hooks": [len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()],
    }


def test_release_is_supported() -> None:
    assert compat.SUPPORTED[0] <= compat.ZENNIT_VERSION < compat.SUPPORTED[1]
    assert zennit.__file__  # the release under test is the one imported


WAYS = {
    "adapter canonizers_for": lambda model: xai_plugins_zennit.canonizers_for(model),
    "core canonizers_for": lambda model: core.canonizers_for(model),
    "core class": lambda model: [core.ResNetCanonizer()],
    "registry": lambda model: [xai_plugins.get("canonizer", "resnet")()],
}


@pytest.mark.parametrize("way", sorted(WAYS))
@pytest.mark.parametrize("composite", ["EpsilonPlusFlat", "EpsilonAlpha2Beta1"])
def test_every_way_to_a_canonizer_conserves_and_restores(way: str, composite: str) -> None:
    """Issue 20: a core canonizer dropped into a Zennit composite used to give Σ relevance / logit = 65,536 (the
    explicit modules had no Zennit rules); the adapter's apply extension now gives it the same rules."""
    model = _resnet()
    before, full = _state(model), snapshot(model)
    make = {"EpsilonPlusFlat": EpsilonPlusFlat, "EpsilonAlpha2Beta1": EpsilonAlpha2Beta1}[composite]
    ratio = _ratio(model, make(zero_params="bias", canonizers=WAYS[way](model)))
    assert abs(ratio - 1) <= 0.01, f"{way}: Σ relevance / logit = {ratio}"
    after = _state(model)
    assert after["parameters"] == before["parameters"]
    assert list(after["state"]) == list(before["state"])
    assert all(torch.equal(before["state"][k], after["state"][k]) for k in before["state"])
    assert after["training"] == before["training"] and after["hooks"] == before["hooks"]
    assert_same(full, snapshot(model))


def test_core_canonizer_outside_zennit_gets_no_zennit_rules() -> None:
    """The apply extension acts only when Zennit applies the canonizer: a user's own apply adds no hooks."""
    model = _resnet()
    canonizer = core.ResNetCanonizer()
    canonizer.apply(model)
    try:
        assert not any(m._forward_hooks for m in model.modules())
    finally:
        canonizer.remove()


def test_optimizer_built_before_an_attribution_still_trains_the_model() -> None:
    """Zennit 1.0.0's ParamMod puts new Parameter objects into the model; the adapter puts the user's back."""
    model = _resnet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    _ratio(model, EpsilonPlusFlat(zero_params="bias", canonizers=xai_plugins_zennit.canonizers_for(model)))
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(x)
    model(x).square().sum().backward()
    optimizer.step()
    with torch.no_grad():
        assert not torch.equal(model(x), before)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_parameter_identity_restores_only_same_storage() -> None:
    layer = nn.Linear(3, 2)
    guard = compat.ParameterIdentity()
    guard.record(layer)
    original_weight, original_bias = layer.weight, layer.bias
    layer._parameters["weight"] = nn.Parameter(original_weight.data)  # what ParamMod 1.0.0 leaves: same storage
    replaced = nn.Parameter(torch.zeros(2))  # a user's own assignment: other storage, kept
    layer._parameters["bias"] = replaced
    guard.restore()
    assert layer.weight is original_weight and layer.bias is replaced and original_bias is not replaced
