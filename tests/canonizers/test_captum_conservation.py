"""Captum's ``LRP`` and ``LayerLRP`` inside ``canonized()``, proved over drawn BatchNorm states: conservation with
the adapter's rules wherever the drawn network is alive, finite relevance, and the model exactly as before.

The logit explained is the one Captum computes, the canonized model's (``Σ relevance + δ`` with δ Captum's
convergence delta). Some drawn states are ill-conditioned in float32 (RegNetX-400MF at a calibrated draw: stock
float32 −3.6, float64 −5.5, canonized float32 −17.3), so the explained logit is checked against the float64 output
as test_lrp_conservation.py checks the canonized function: within 1e-5 of the output's magnitude or within 8 times
the stock model's own float32 error.

The adapter's rules are bias-free and complete every unit they cannot divide by (xai_plugins_captum.rules), so
Σ relevance / logit = 1 up to float32 rounding; the bound is the issue's 0.01. ``Linear`` layers keep an ε of 1e-6
(absorbing ``ε / (z + ε)`` of a unit's relevance, with ``z`` the bias-free pre-activation), so conservation is
judged where that share is below 0.1 % at the explained logit (``tests.support.canonizers.epsilon_share``): a
logit made mostly of its bias can be large while its bias-free part is of order ε.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from torch import nn

from tests.support.batchnorm import BatchNormDraw, apply, is_alive, statistics
from tests.support.canonizers import EPSILON_JUDGED, FAMILY_BUILDERS, assert_same, epsilon_share
from xai_plugins.conformance.state import snapshot

pytest.importorskip("captum")
tvm = pytest.importorskip("torchvision.models")
from captum.attr import LRP, LayerLRP  # noqa: E402

from xai_plugins_captum import canonized  # noqa: E402
from xai_plugins_captum.rules import ZPlusRule, linear_map  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

SIZE = 32
CONSERVATION = 0.01
"""The issue's bound on |Σ relevance / logit − 1|."""
FLOAT32_RANGE = (1e-3, 1e15)
"""Output magnitudes at which LRP is judged (as in test_lrp_conservation.py): above, activations times relevances
approach float32's range; below, the dense layers' ε = 1e-6 takes more than 0.1 % by design."""
FAMILIES = sorted(set(FAMILY_BUILDERS) - {"relation_network"})
"""Every supported family's small model; the Relation Network's coordinate tags are constants that receive relevance
Captum does not count (it attributes to the image only), see docs/canonizers.md."""

@functools.cache
def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return FAMILY_BUILDERS[name]()


def _exact(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return copy.deepcopy(model).double()(x.double())


def _assert_explains_the_function(exact: torch.Tensor, output: torch.Tensor, target: int, explained: float) -> None:
    own_error = float((output.double() - exact).abs().max())
    error = abs(explained - float(exact[0, target]))
    assert error <= max(1e-5 * float(exact.abs().max()), 8 * own_error), f"explained {explained} vs {exact[0, target]}"


def _input(seed: int, scale: float) -> torch.Tensor:
    return torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("name", FAMILIES)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draw=statistics(), scale=st.sampled_from((0.5, 1.0, 3.0)))
@example(draw=BatchNormDraw(mode="calibrated", seed=0), scale=1.0)
@example(draw=BatchNormDraw(mode="calibrated", seed=3, gamma=(-1.5, 0.5), near_zero=0.3, beta_scale=0.3), scale=3.0)
@example(draw=BatchNormDraw(mode="uniform", seed=1, log_var=(-3.0, -2.0), mean_scale=2.0, gamma=(-1.5, 1.5),
                            near_zero=0.3, beta_scale=0.3), scale=3.0)
@example(draw=BatchNormDraw(mode="uniform", seed=847, log_var=(0.0, 0.875), mean_scale=0.0, beta_scale=0.0),
         scale=0.5)  # ResNeXt: logit 0.020 with a bias-free part of 1.8e-5, where ε = 1e-6 keeps 0.948 by design
def test_lrp_conserves_on_every_drawn_state(name: str, draw: BatchNormDraw, scale: float) -> None:
    model = apply(_model(name), draw, input_shape=(4, 3, SIZE, SIZE))
    x = _input(draw.seed, scale)
    with torch.no_grad():
        output = model(x)
    target = int(output[0].argmax())
    exact = _exact(model, x)
    before = snapshot(model)
    with canonized(model):
        relevance, delta = LRP(model).attribute(x, target=target, return_convergence_delta=True)
    assert_same(before, snapshot(model))
    magnitude = float(output.abs().max())
    if not FLOAT32_RANGE[0] <= magnitude <= FLOAT32_RANGE[1]:
        return
    assert bool(torch.isfinite(relevance).all()), f"{name} {draw}"
    if is_alive(model, x):
        explained = float(relevance.detach().sum() + delta.detach().sum())
        _assert_explains_the_function(exact, output, target, explained)
        if epsilon_share(model, x, target) > EPSILON_JUDGED:
            return
        ratio = float(relevance.detach().sum()) / explained
        assert abs(ratio - 1) <= CONSERVATION, f"{name} {draw}: Σ relevance / logit = {ratio:.5f}"


def _resnet_layers(model: nn.Module) -> dict[str, tuple[nn.Module, bool]]:
    return {"stem conv output": (model.conv1, False), "classifier input": (model.fc, True)}


def _mobilenet_v2_layers(model: nn.Module) -> dict[str, tuple[nn.Module, bool]]:
    return {"last conv output": (model.features[-1][0], False), "classifier input": (model.classifier[-1], True)}


def _efficientnet_layers(model: nn.Module) -> dict[str, tuple[nn.Module, bool]]:
    return {"stem conv output": (model.features[0][0], False), "head conv output": (model.features[-1][0], False),
            "classifier input": (model.classifier[-1], True)}


LAYERS = {"resnet": _resnet_layers, "mobilenet_v2": _mobilenet_v2_layers, "efficientnet_b0": _efficientnet_layers}
"""Layers whose input or output is a cut through the whole network: all relevance passes there."""


@pytest.mark.parametrize("name", sorted(LAYERS))
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draw=statistics(modes=("calibrated",)), scale=st.sampled_from((0.5, 1.0, 3.0)))
@example(draw=BatchNormDraw(mode="calibrated", seed=7, near_zero=0.1), scale=1.0)
def test_layer_lrp_conserves_at_a_cut(name: str, draw: BatchNormDraw, scale: float) -> None:
    """The relevance LayerLRP reports at a layer's output or input that every path passes sums to the logit, and
    Captum's convergence delta at the input is within the same bound."""
    model = apply(_model(name), draw, input_shape=(4, 3, SIZE, SIZE))
    x = _input(draw.seed + 1, scale)
    with torch.no_grad():
        output = model(x)
    target = int(output[0].argmax())
    logit = float(output[0, target])
    assert is_alive(model, x) and FLOAT32_RANGE[0] <= abs(logit) <= FLOAT32_RANGE[1]
    exact = _exact(model, x)
    before = snapshot(model)
    with canonized(model):
        for label, (layer, at_input) in LAYERS[name](model).items():
            relevance, delta = LayerLRP(model, layer).attribute(
                x, target=target, attribute_to_layer_input=at_input, return_convergence_delta=True)
            assert bool(torch.isfinite(relevance).all()), label
            explained = float(relevance.detach().sum() + delta.detach().sum())
            _assert_explains_the_function(exact, output, target, explained)
            ratio = float(relevance.detach().sum()) / explained
            assert abs(ratio - 1) <= CONSERVATION, f"{name} {label}: Σ relevance / logit = {ratio:.5f}"
    assert_same(before, snapshot(model))


class _BiasOnly(nn.Module):
    """A depthwise convolution whose receptive field is all zeros after ReLU at some positions, kept alive there by
    its bias alone: the MobileNet case where Captum's stand-in has nothing to divide by."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, groups=3)
        self.relu = nn.ReLU()
        self.project = nn.Conv2d(3, 2, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(self.project(self.relu(self.conv(x)))))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), zeros=st.floats(0.3, 0.9), bias=st.floats(0.1, 2.0))
def test_units_alive_through_their_bias_keep_their_relevance(seed: int, zeros: float, bias: float) -> None:
    torch.manual_seed(seed)
    model = _BiasOnly().eval()
    with torch.no_grad():
        model.conv.bias.fill_(bias)
        model.project.weight.abs_()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, 8, 8, generator=g)
    x = x * (torch.rand(1, 1, 8, 8, generator=g) > zeros)  # zero patches: all-zero receptive fields
    with torch.no_grad():
        logit = float(model(x)[0, 0])
    with canonized(model, canonizers=[]):
        relevance = LRP(model).attribute(x, target=0)
    assert abs(float(relevance.detach().sum()) / logit - 1) <= 1e-5  # float32 rounding of a few hundred terms


def test_z_plus_map_keeps_the_dynamic_padding_of_a_conv_with_its_own_forward() -> None:
    """timm's ``Conv2dSame`` pads in its ``forward``; the rule's maps must see the same padding."""
    timm = pytest.importorskip("timm")
    conv = timm.layers.Conv2dSame(3, 4, 5, stride=2).eval()
    x = torch.randn(1, 3, 9, 9)
    with torch.no_grad():
        mapped = linear_map(conv, x, conv.weight)
        assert torch.allclose(mapped + conv.bias.view(1, -1, 1, 1), conv(x), atol=1e-6)
        z = ZPlusRule().stand_in(conv, (x,), conv(x))
    assert z.shape == conv(x).shape
    assert "weight" in conv._parameters and isinstance(conv.weight, nn.Parameter)
