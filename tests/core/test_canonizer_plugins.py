"""Canonizer plugins installed through their entry points (the ``tests/plugins`` packages), as a user would:
``canonizers_for`` picks a third-party canonizer by the model type it declares, never by a container type
(issue 22's model-type capture), and two plugins declaring the same model type give a deterministic pick and a
warning naming both (issue 17)."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from torch import nn

import xai_plugins
from tests.support.batchnorm import BatchNormDraw, apply, is_alive
from xai_plugins.canonizers import CanonizerConflictWarning, canonizers_for

tvm = pytest.importorskip("torchvision.models")

GENERIC = ["torch.nn.Module", "torch.nn.modules.module.Module", "torch.nn.Sequential", "torch.nn.ModuleList"]


class Vision(nn.Module):
    """Stands in for a ViT: a model no canonizer knows (its LayerNorm also stops the graph canonizer)."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4)
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(x))


@pytest.fixture
def greedy(install_plugins):
    install_plugins("greedy")
    components = {c.name: c for c in xai_plugins.list_components("canonizer")}
    assert components["greedy_module"].plugin == "testgreedy"
    assert components["greedy_module"].distribution == "xai-plugins-testgreedy"
    return components


def test_container_declarations_never_capture_an_unknown_model(greedy) -> None:
    with pytest.raises(ValueError) as info:
        canonizers_for(Vision())
    message = str(info.value)
    assert message.startswith("no canonizer is known for tests.core.test_canonizer_plugins.Vision")
    assert "Ignored as too generic" in message
    for name, declared in zip(["greedy_module", "greedy_module_path", "greedy_sequential", "greedy_modulelist"],
                              GENERIC):
        assert f"'{name}' of plugin 'testgreedy' declares {declared}" in message
    (plain,) = canonizers_for(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)))
    assert type(plain).__name__ == "GraphCanonizer"  # the graph canonizer, never the greedy plugin's


def test_a_specific_subclass_of_a_container_is_still_matched(greedy) -> None:
    from xai_testgreedy import IdentityCanonizer, Stack

    (chosen,) = canonizers_for(Stack(nn.Identity()))
    assert type(chosen) is IdentityCanonizer


def _wrapped(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    resnet = apply(tvm.resnet18(num_classes=5), BatchNormDraw(seed=seed), input_shape=(2, 3, 32, 32))
    return nn.Sequential(nn.Identity(), resnet).eval()


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), target=st.integers(0, 4))
@example(seed=0, target=0)
def test_a_wrapper_gets_the_builtin_canonizer_and_conserves(greedy, seed: int, target: int) -> None:
    """``nn.Sequential(Identity(), resnet)`` is a wrapper the greedy plugin declares (nn.Sequential): it still gets
    the built-in ResNet canonizer for the inner model, and Zennit's LRP conserves (1 ± 0.01, the tolerance of the
    conservation suite, tests/canonizers/test_lrp_conservation.py) where the drawn network is alive."""
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    from xai_plugins_zennit import canonizers_for as zennit_canonizers_for

    model = _wrapped(seed)
    assert [type(c.canonizer).__name__ for c in canonizers_for(model)] == ["ResNetCanonizer"]
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        logit = model(x)[0, target]
    if not is_alive(model, x) or abs(float(logit)) < 1e-3:
        return
    composite = EpsilonPlusFlat(zero_params="bias", canonizers=zennit_canonizers_for(model))
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x, torch.eye(5)[[target]] * logit)
    assert abs(float(relevance.sum() / logit) - 1) <= 1e-2


@pytest.mark.parametrize("order", [("rivals_a", "rivals_b"), ("rivals_b", "rivals_a")])
def test_two_plugins_for_one_type_warn_and_pick_by_plugin_name(install_plugins, order) -> None:
    install_plugins(*order)
    from xai_testrivala import RivalACanonizer, Tiny

    with pytest.warns(CanonizerConflictWarning) as caught:
        (chosen,) = canonizers_for(Tiny())
    message = str(caught[0].message)
    assert message.startswith("several canonizers declare xai_testrivala.Tiny: 'tiny_z' of plugin 'testrival_a', "
                              "'tiny_y' of plugin 'testrival_b'; canonizers_for picks 'tiny_z'")
    assert "XAI_PLUGINS_BLOCK" in message
    assert type(chosen) is RivalACanonizer  # plugin 'testrival_a' sorts first, though its component name is later


def test_blocking_one_rival_removes_the_conflict(install_plugins, monkeypatch) -> None:
    install_plugins("rivals_a", "rivals_b")
    monkeypatch.setenv("XAI_PLUGINS_BLOCK", "testrival_a")
    xai_plugins.reset_registry()
    from xai_testrivala import Tiny
    from xai_testrivalb import RivalBCanonizer

    with warnings.catch_warnings():
        warnings.simplefilter("error", CanonizerConflictWarning)
        (chosen,) = canonizers_for(Tiny())
    assert type(chosen) is RivalBCanonizer


def test_the_builtin_wins_over_a_plugin_declaring_the_same_family(install_plugins) -> None:
    install_plugins("rivals_b")
    with pytest.warns(CanonizerConflictWarning, match="'resnet' of plugin 'canonizers', 'my_resnet' of plugin "
                                                      "'testrival_b'; canonizers_for picks 'resnet'"):
        (chosen,) = canonizers_for(tvm.resnet18(num_classes=3))
    assert type(chosen).__name__ == "ResNetCanonizer"
