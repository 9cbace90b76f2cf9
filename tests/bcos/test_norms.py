"""Centered, bias-free norms: completeness in explanation mode, equality with the authors' layers, models."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xai_plugins.bcos import contributions, create_model, encode_input, explanation_mode
from xai_plugins.bcos.norms import GroupNorm2d, LayerNorm2d, PositionNorm2d, TokenLayerNorm, make_norm

CENTERED = {
    "position": lambda c: PositionNorm2d(c),
    "group": lambda c: GroupNorm2d(2, c),
    "layer": lambda c: LayerNorm2d(c),
}


def random_weight(norm: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    with torch.no_grad():
        norm.weight.copy_(0.5 + torch.rand(norm.weight.shape, generator=generator, dtype=norm.weight.dtype))
    return norm


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(sorted(CENTERED)), seed=st.integers(0, 2**31 - 1), channels=st.sampled_from([2, 4, 6]),
       size=st.integers(1, 5), offset=st.floats(-3, 3))
def test_centered_norm_is_complete_in_explanation_mode(kind, seed, channels, size, offset):
    """With only the std detached, y = W(x) x exactly: Σ_i x_i ∂(v·y)/∂x_i = v·y for any v (float64, 1e-12
    relative). Inputs with a common offset are included: centering removes it linearly, it is not a bias."""
    generator = torch.Generator().manual_seed(seed)
    norm = random_weight(CENTERED[kind](channels).double(), generator)
    x = (torch.randn(2, channels, size, size, generator=generator, dtype=torch.float64) + offset).requires_grad_()
    v = torch.randn(2, channels, size, size, generator=generator, dtype=torch.float64)
    with explanation_mode(norm):
        y = norm(x)
        (g,) = torch.autograd.grad((y * v).sum(), x)
    total, expected = (g * x).sum().item(), (y * v).sum().item()
    assert abs(total - expected) <= 1e-12 * max(1.0, (y.abs() * v.abs()).sum().item())


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), features=st.sampled_from([3, 8]), tokens=st.integers(1, 6))
def test_token_layer_norm_is_complete_in_explanation_mode(seed, features, tokens):
    generator = torch.Generator().manual_seed(seed)
    norm = random_weight(TokenLayerNorm(features).double(), generator)
    x = torch.randn(2, tokens, features, generator=generator, dtype=torch.float64).requires_grad_()
    v = torch.randn(2, tokens, features, generator=generator, dtype=torch.float64)
    with explanation_mode(norm):
        y = norm(x)
        (g,) = torch.autograd.grad((y * v).sum(), x)
    assert abs((g * x).sum().item() - (y * v).sum().item()) <= 1e-12 * max(1.0, (y.abs() * v.abs()).sum().item())


@pytest.mark.parametrize("explain", [False, True])
@pytest.mark.parametrize("kind", ["position", "group", "layer", "token"])
def test_centered_norms_equal_the_authors_layers(kind, explain):
    norms = pytest.importorskip("bcos.modules.norms")
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    if kind == "token":
        ours, theirs = TokenLayerNorm(8), norms.NoBias(norms.DetachableLayerNorm)(8)
        shape = (2, 5, 8)
    else:
        ours = {"position": PositionNorm2d(8), "group": GroupNorm2d(2, 8), "layer": LayerNorm2d(8)}[kind]
        theirs = {"position": norms.NoBias(norms.DetachablePositionNorm2d)(8),
                  "group": norms.NoBias(norms.DetachableGroupNorm2d)(2, 8),
                  "layer": norms.NoBias(norms.DetachableGNLayerNorm2d)(8)}[kind]
        shape = (2, 8, 5, 5)
    ours, theirs = ours.double(), theirs.double()
    random_weight(theirs, generator)
    ours.load_state_dict(theirs.state_dict())
    x = (torch.randn(*shape, generator=generator, dtype=torch.float64) + 0.7).requires_grad_()
    v = torch.randn(*shape, generator=generator, dtype=torch.float64)
    ours.set_explanation_mode(explain)
    theirs.set_explanation_mode(explain)
    got, expected = ours(x), theirs(x)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    (g_ours,) = torch.autograd.grad((got * v).sum(), x)
    (g_theirs,) = torch.autograd.grad((expected * v).sum(), x)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("norm", ["position_centered", "group_centered", "layer_centered"])
def test_models_with_centered_norms_are_complete(norm):
    torch.manual_seed(0)
    model = create_model("bcos_resnet18", num_classes=5, width=8, norm=norm).double().eval()
    x6 = encode_input(torch.rand(2, 3, 32, 32, dtype=torch.float64))
    for target in range(5):
        result = contributions(model, x6, target)
        scale = result.explained_logits.abs().max().item()
        assert result.delta.abs().max().item() <= 1e-9 * scale


def test_make_norm_names_the_choices():
    assert isinstance(make_norm("position_centered", 4), PositionNorm2d)
    assert isinstance(make_norm("group_centered", 64), GroupNorm2d) and make_norm("group_centered", 64).num_groups == 32
    with pytest.raises(ValueError, match="unknown norm 'centred'; use one of: batch, .*position_centered"):
        make_norm("centred", 4)
