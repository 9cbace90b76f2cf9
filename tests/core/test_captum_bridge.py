"""``xai_plugins_captum.attribution(name)``: a third-party attributor, installed through its entry point, is a
native Captum attribution that agrees with Captum's own implementation of the same method, also inside
``NoiseTunnel``, ``sensitivity_max`` and ``infidelity``; broken results and metadata are clear errors."""

from __future__ import annotations

import pytest
import torch
from captum.attr import (
    FeatureAblation,
    GradientAttribution,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    PerturbationAttribution,
)
from captum.metrics import infidelity, sensitivity_max
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import xai_plugins
from xai_plugins_captum import attribution

EPS = torch.finfo(torch.float32).eps
SHARED_PLUGINS = [HealthCheck.function_scoped_fixture]  # the installed plugins are the same for every draw


@pytest.fixture
def bridged(install_plugins):
    install_plugins("bridged")


def _mlp(seed: int, features: int, classes: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 7), nn.Tanh(), nn.Linear(7, classes)).eval()


def _close(a: torch.Tensor, b: torch.Tensor, factor: float = 64) -> None:
    """Equal up to float32 rounding of the two evaluation orders, relative to the attributions' size."""
    scale = max(a.abs().max().item(), b.abs().max().item(), 1e-30)
    assert (a - b).abs().max().item() <= factor * EPS * scale


draws = st.tuples(st.integers(0, 2**16), st.integers(1, 4), st.integers(1, 6), st.integers(2, 5))
target_forms = st.sampled_from(["int", "list", "tensor"])


def _target(form: str, batch: int, classes: int, seed: int):
    values = [(seed + 3 * i) % classes for i in range(batch)]
    return {"int": values[0], "list": values, "tensor": torch.tensor(values)}[form]


@settings(max_examples=25, deadline=None, suppress_health_check=SHARED_PLUGINS)
@given(draws, target_forms)
def test_gradient_attributor_is_captums_input_x_gradient(bridged, draw, form):
    seed, batch, features, classes = draw
    model = _mlp(seed, features, classes)
    x = torch.randn(batch, features, generator=torch.Generator().manual_seed(seed))
    target = _target(form, batch, classes, seed)
    cls = attribution("bridged_gxi")
    assert issubclass(cls, GradientAttribution) and cls(model).multiplies_by_inputs
    assert not cls(model).has_convergence_delta()
    _close(cls(model).attribute(x, target=target), InputXGradient(model).attribute(x, target=target))


@settings(max_examples=15, deadline=None, suppress_health_check=SHARED_PLUGINS)
@given(draws)
def test_tuple_inputs_and_additional_forward_args(bridged, draw):
    seed, batch, features, classes = draw
    torch.manual_seed(seed)
    first, second = nn.Linear(features, classes), nn.Linear(3 * 2, classes)

    def forward(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
        return torch.tanh(first(a) + second(b.reshape(b.shape[0], -1))) * scale

    gen = torch.Generator().manual_seed(seed)
    inputs = (torch.randn(batch, features, generator=gen), torch.randn(batch, 3, 2, generator=gen))
    ours = attribution("bridged_gxi")(forward).attribute(inputs, target=1 % classes, additional_forward_args=2.5)
    theirs = InputXGradient(forward).attribute(inputs, target=1 % classes, additional_forward_args=2.5)
    assert isinstance(ours, tuple) and len(ours) == 2
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        _close(a, b)


@settings(max_examples=15, deadline=None, suppress_health_check=SHARED_PLUGINS)
@given(draws, target_forms)
def test_perturbation_attributor_is_captums_feature_ablation(bridged, draw, form):
    seed, batch, features, classes = draw
    model = _mlp(seed, features, classes)
    x = torch.randn(batch, features, generator=torch.Generator().manual_seed(seed))
    target = _target(form, batch, classes, seed)
    cls = attribution("bridged_occlusion")
    assert issubclass(cls, PerturbationAttribution) and not issubclass(cls, GradientAttribution)
    _close(cls(model).attribute(x, target=target), FeatureAblation(model).attribute(x, target=target))


@settings(max_examples=10, deadline=None, suppress_health_check=SHARED_PLUGINS)
@given(draws)
def test_convergence_delta_is_captums(bridged, draw):
    seed, batch, features, classes = draw
    model = _mlp(seed, features, classes)
    x = torch.randn(batch, features, generator=torch.Generator().manual_seed(seed))
    ours = attribution("bridged_ig")(model)
    assert ours.has_convergence_delta()
    attr, delta = ours.attribute(x, target=0, return_convergence_delta=True, n_steps=16)
    ref, ref_delta = IntegratedGradients(model).attribute(x, target=0, method="riemann_middle", n_steps=16,
                                                          return_convergence_delta=True)
    _close(attr, ref)
    assert delta.shape == (batch,)
    outputs = model(x)[:, 0].abs().max().item() + model(torch.zeros_like(x))[:, 0].abs().max().item()
    assert (delta - ref_delta).abs().max().item() <= 64 * EPS * max(outputs, 1.0)


def test_noise_tunnel_sensitivity_and_infidelity_match_captum(bridged):
    model = _mlp(3, 5, 4)
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    ours, theirs = attribution("bridged_gxi")(model), InputXGradient(model)
    results = []
    for method in (ours, theirs):
        torch.manual_seed(7)
        smooth = NoiseTunnel(method).attribute(x, nt_type="smoothgrad_sq", nt_samples=6, stdevs=0.3, target=2)
        torch.manual_seed(8)
        sens = sensitivity_max(method.attribute, x, target=2, n_perturb_samples=4)
        torch.manual_seed(9)
        infid = infidelity(model, lambda inp: (torch.randn_like(inp) * 0.1, inp - torch.randn_like(inp) * 0.1),
                           x, method.attribute(x, target=2), target=2, n_perturb_samples=4)
        results.append((smooth, sens, infid))
    for a, b in zip(*results):
        _close(a, b, factor=256)
    torch.manual_seed(1)
    _, delta = NoiseTunnel(attribution("bridged_ig")(model)).attribute(
        x, nt_samples=3, stdevs=0.1, target=1, return_convergence_delta=True, n_steps=8)
    assert delta.shape == (9,) and torch.isfinite(delta).all()


@pytest.mark.parametrize(("name", "message"), [
    ("bridged_nan", "attributor 'bridged_nan' of plugin 'testbridged' returned 8 non-finite value(s) (NaN or inf) "
                    "of 8; the attribution is unusable"),
    ("bridged_wrong_shape", "attributor 'bridged_wrong_shape' of plugin 'testbridged' returned shape (2,) for "
                            "inputs of shape (2, 4); it must return the inputs' shape"),
])
def test_broken_results_are_one_clear_error(bridged, name, message):
    model = _mlp(0, 4, 3)
    with pytest.raises(xai_plugins.ComponentContractError) as exc:
        attribution(name)(model).attribute(torch.randn(2, 4), target=1)
    assert str(exc.value) == message


@pytest.mark.parametrize(("name", "message"), [
    ("bridged_no_kind", "attributor 'bridged_no_kind' of plugin 'testbridged' cannot be a Captum attribution: it "
                        "declares no attribution_kind; the plugin must pass attribution_kind='gradient' or "
                        "'perturbation' to register()"),
    ("bridged_bad_delta", "attributor 'bridged_bad_delta' of plugin 'testbridged' declares "
                          "has_convergence_delta=True with attribution_kind='perturbation'; a convergence delta is "
                          "computed from input gradients, so it needs attribution_kind='gradient'"),
])
def test_metadata_that_does_not_allow_captum_is_a_clear_error(bridged, name, message):
    with pytest.raises(xai_plugins.HostMetadataError) as exc:
        attribution(name)
    assert str(exc.value) == message


def test_delta_asked_of_a_method_without_one(bridged):
    with pytest.raises(xai_plugins.HostMetadataError, match="'bridged_gxi' of plugin 'testbridged' has no "
                                                            "convergence delta: it does not declare "
                                                            "has_convergence_delta=True"):
        attribution("bridged_gxi")(_mlp(0, 4, 3)).attribute(torch.randn(2, 4), target=0,
                                                              return_convergence_delta=True)


def test_unknown_name_lists_the_registered_attributors(bridged):
    with pytest.raises(xai_plugins.ComponentNotFoundError) as exc:
        attribution("bridged_gxx")
    assert str(exc.value).startswith(
        "no attributor named 'bridged_gxx' is registered; registered attributors: bridged_bad_delta, bridged_gxi, "
        "bridged_ig, bridged_nan, bridged_no_kind, bridged_occlusion, bridged_wrong_shape.")


def test_target_is_required(bridged):
    with pytest.raises(ValueError, match="attributor 'bridged_gxi' of plugin 'testbridged' needs a target"):
        attribution("bridged_gxi")(_mlp(0, 4, 3)).attribute(torch.randn(2, 4))


def test_model_is_left_as_it_was(bridged):
    model = _mlp(0, 4, 3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attribution("bridged_gxi")(model).attribute(torch.randn(2, 4), target=0)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
