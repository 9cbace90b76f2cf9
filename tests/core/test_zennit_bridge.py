"""``xai_plugins_zennit.attributor(name)``: a third-party attributor, installed through its entry point, is a
Zennit attributor that agrees with Zennit's own ``Gradient`` (times the input), with and without a composite."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from zennit.attribution import Attributor, Gradient
from zennit.composites import EpsilonPlusFlat

import xai_plugins
from xai_plugins_zennit import attributor

EPS = torch.finfo(torch.float32).eps


@pytest.fixture
def bridged(install_plugins):
    install_plugins("bridged")


def _model(seed: int, features: int, classes: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 7), nn.ReLU(), nn.Linear(7, classes)).eval()


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    scale = max(a.abs().max().item(), b.abs().max().item(), 1e-30)
    assert (a - b).abs().max().item() <= 64 * EPS * scale


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2**16), st.integers(1, 4), st.integers(2, 6), st.integers(2, 5),
       st.sampled_from([None, "epsilon_plus_flat"]), st.floats(0.25, 4.0))
def test_attributor_is_zennits_gradient_times_input(bridged, seed, batch, features, classes, composite, weight):
    model = _model(seed, features, classes)
    x = torch.randn(batch, features, generator=torch.Generator().manual_seed(seed))
    selection = weight * torch.eye(classes)[[(seed + i) % classes for i in range(batch)]]
    cls = attributor("bridged_gxi")
    assert issubclass(cls, Attributor)
    make = (lambda: EpsilonPlusFlat()) if composite else (lambda: None)
    with cls(model, composite=make()) as attribute:
        output, relevance = attribute(x, selection)
    with Gradient(model, composite=make()) as gradient:
        ref_output, grad = gradient(x, selection)
    _close(output, ref_output)
    _close(relevance, grad * x)


def test_default_explains_the_predicted_class(bridged):
    model = _model(1, 5, 4)
    x = torch.randn(3, 5)
    output, relevance = attributor("bridged_gxi")(model)(x)
    _, reference = Gradient(model)(x, torch.eye(4)[model(x).argmax(1)])
    _close(relevance, reference * x)


def test_selection_of_more_than_one_class_is_a_clear_error(bridged):
    model = _model(1, 5, 4)
    with pytest.raises(ValueError, match="attributor 'bridged_gxi' of plugin 'testbridged' explains one class per "
                                         r"sample: .*got \[4, 4\] non-zero entries per row"):
        attributor("bridged_gxi")(model, attr_output=lambda out: out)(torch.randn(2, 5))


def test_broken_result_is_one_clear_error(bridged):
    with pytest.raises(xai_plugins.ComponentContractError, match="attributor 'bridged_nan' of plugin 'testbridged' "
                                                                 r"returned 10 non-finite value\(s\)"):
        attributor("bridged_nan")(_model(0, 5, 3))(torch.randn(2, 5), torch.eye(3)[[0, 1]])


def test_zennit_needs_no_captum_metadata(bridged):
    model = _model(2, 5, 3)
    x = torch.randn(2, 5)
    _, relevance = attributor("bridged_no_kind")(model)(x, torch.eye(3)[[2, 0]])
    _, grad = Gradient(model)(x, torch.eye(3)[[2, 0]])
    _close(relevance, grad * x)


def test_unknown_name_lists_the_registered_attributors(bridged):
    with pytest.raises(xai_plugins.ComponentNotFoundError, match="registered attributors: bridged_bad_delta, "):
        attributor("nosuch")
