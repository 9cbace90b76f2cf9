"""B-cos layers: patch norms, the B-cos transform, explanation mode, equivalence with the bcos package."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from xai_plugins.bcos import BcosConv2d, BcosLinear, encode_input, explanation_mode, patch_norms
from xai_plugins.bcos.encoding import decode_input
from xai_plugins.bcos.layers import LogitLayer

PATCH_CASES = [
    # kernel, stride, padding, dilation, groups
    (3, 1, 1, 1, 1),
    (2, 1, 0, 1, 1),
    (4, 2, 1, 1, 1),
    (3, 2, 1, 1, 1),
    (5, 2, 2, 1, 1),
    (3, 1, 2, 2, 1),
    (2, 2, 1, 2, 1),
    (3, 1, 1, 1, 4),
    (4, 2, 3, 2, 2),
    ((3, 2), (2, 1), (1, 0), (1, 2), 2),
    (1, 2, 0, 1, 1),
    (7, 2, 3, 1, 1),
    (3, 1, 3, 1, 1),
]


def unfold_reference(x: torch.Tensor, kernel, stride, padding, dilation, groups) -> torch.Tensor:
    """Patch norms by explicitly unfolding every patch of every group."""
    n, c, h, w = x.shape
    per_group = []
    for g in x.chunk(groups, 1):
        cols = F.unfold(g, kernel, dilation=dilation, padding=padding, stride=stride)
        per_group.append(cols.square().sum(1))
    out = torch.stack(per_group, 1)
    size = [(length + 2 * p - d * (k - 1) - 1) // s + 1
            for length, k, s, p, d in zip((h, w), *(_pair(v) for v in (kernel, stride, padding, dilation)))]
    return (out.view(n, groups, *size) + 1e-6).sqrt()


@pytest.mark.parametrize("kernel,stride,padding,dilation,groups", PATCH_CASES)
def test_patch_norms_equal_unfold_reference(kernel, stride, padding, dilation, groups):
    x = torch.randn(2, 8, 11, 10, dtype=torch.float64)
    ours = patch_norms(x, kernel, stride, padding, dilation, groups)
    ref = unfold_reference(x, kernel, stride, padding, dilation, groups)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernel,stride,padding,dilation,groups", PATCH_CASES)
def test_conv_b2_equals_cos_times_linear_output(kernel, stride, padding, dilation, groups):
    """Output = |cos| * (ŵ·x) with cos computed from explicitly unfolded patches."""
    torch.manual_seed(0)
    layer = BcosConv2d(8, 4, kernel, stride, padding, dilation, groups, b=2).double()
    x = torch.randn(2, 8, 11, 10, dtype=torch.float64)
    linear = F.conv2d(x, layer.effective_weight(), None, stride, padding, dilation, groups)
    norms = unfold_reference(x, kernel, stride, padding, dilation, groups).repeat_interleave(4 // groups, 1)
    torch.testing.assert_close(layer(x), linear.abs() / norms * linear, rtol=1e-10, atol=1e-12)


def test_weights_are_used_with_unit_norm():
    layer = BcosConv2d(3, 5, 3, b=1)
    with torch.no_grad():
        layer.weight.mul_(7.0)
    norms = torch.linalg.vector_norm(layer.effective_weight(), dim=(1, 2, 3))
    torch.testing.assert_close(norms, torch.ones(5))
    linear = BcosLinear(4, 3, b=1)
    torch.testing.assert_close(torch.linalg.vector_norm(linear.effective_weight(), dim=1), torch.ones(3))


def test_maxout_takes_the_larger_unit():
    torch.manual_seed(0)
    layer = BcosLinear(6, 2, b=1, max_out=2)
    x = torch.randn(3, 6)
    units = F.linear(x, layer.effective_weight()).view(3, 2, 2)
    torch.testing.assert_close(layer(x), units.amax(-1))


@pytest.mark.parametrize("b", [1.0, 1.5, 2.0, 3.0])
def test_explanation_mode_gradient_is_dynamic_weight(b):
    """In explanation mode a single layer is linear in x: grad · x reproduces the output."""
    torch.manual_seed(1)
    layer = BcosConv2d(6, 3, 3, 2, 1, b=b, max_out=2).double()
    x = torch.randn(1, 6, 7, 7, dtype=torch.float64, requires_grad=True)
    with explanation_mode(layer):
        out = layer(x)
        grad, = torch.autograd.grad(out[0, 1, 2, 1], x)
    torch.testing.assert_close((grad * x).sum(), out[0, 1, 2, 1], rtol=1e-10, atol=1e-12)
    assert layer.explanation is False and "explanation" not in layer.__dict__


def test_explanation_mode_restored_on_error_and_nesting():
    layer = BcosLinear(4, 2)
    layer.set_explanation_mode(True)
    inner = BcosLinear(4, 2)
    model = torch.nn.Sequential(layer, inner)
    with pytest.raises(RuntimeError, match="boom"):
        with explanation_mode(model):
            assert inner.explanation
            raise RuntimeError("boom")
    assert layer.explanation is True and inner.explanation is False and "explanation" not in inner.__dict__
    with explanation_mode(model, active=False):
        assert layer.explanation is False
    assert layer.explanation is True


def test_padding_modes_are_used_for_output_and_norm():
    torch.manual_seed(0)
    layer = BcosConv2d(2, 2, 3, 1, 1, padding_mode="reflect", b=2).double()
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    linear = F.conv2d(padded, layer.effective_weight())
    norms = unfold_reference(padded, 3, 1, 0, 1, 1)
    torch.testing.assert_close(layer(x), linear.abs() / norms * linear)


@pytest.mark.parametrize("bad", [0.5, 0.0, -2, float("nan"), float("inf"), "2"])
def test_b_below_one_is_rejected(bad):
    with pytest.raises(ValueError, match=r"b must be a finite number >= 1"):
        BcosConv2d(6, 4, 3, b=bad)
    with pytest.raises(ValueError, match=r"b must be a finite number >= 1"):
        BcosLinear(6, 4, b=bad)


def test_three_channel_input_names_the_encoding():
    layer = BcosConv2d(6, 4, 3)
    with pytest.raises(ValueError) as info:
        layer(torch.rand(1, 3, 8, 8))
    assert str(info.value) == (
        "BcosConv2d expects 6 input channels, got input of shape (1, 3, 8, 8); B-cos models take the 6-channel "
        "encoding [x, 1 - x] of a 3-channel image: call xai_plugins.bcos.encode_input(x) first")


def test_encode_input_and_back():
    x = torch.rand(2, 3, 4, 4)
    x6 = encode_input(x)
    assert x6.shape == (2, 6, 4, 4)
    torch.testing.assert_close(x6[:, 3:], 1 - x)
    torch.testing.assert_close(decode_input(x6), x)
    with pytest.raises(TypeError, match="floating-point"):
        encode_input(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))


def test_logit_layer():
    layer = LogitLayer(temperature=2.0, bias=-1.5)
    torch.testing.assert_close(layer(torch.tensor([[4.0, 0.0]])), torch.tensor([[0.5, -1.5]]))
    with pytest.raises(ValueError, match="temperature must be positive"):
        LogitLayer(temperature=0.0)


# --- equivalence with the reference implementation (bcos on PyPI) --------------------------------------------

CONV_REF_CASES = [
    # kernel, stride, padding, groups, b, max_out
    (3, 1, 1, 1, 2.0, 1),
    (3, 2, 1, 1, 2.0, 2),
    (1, 1, 0, 1, 2.0, 1),
    (1, 2, 0, 1, 2.0, 1),
    (7, 2, 3, 1, 2.0, 1),
    (2, 2, 0, 1, 2.5, 1),
    (3, 1, 1, 4, 2.0, 1),
    (3, 1, 1, 2, 1.5, 2),
    (4, 1, 2, 1, 3.0, 1),
    (3, 1, 1, 1, 1.0, 1),
]


@pytest.mark.parametrize("kernel,stride,padding,groups,b,max_out", CONV_REF_CASES)
@pytest.mark.parametrize("explain", [False, True])
def test_conv_equals_bcos_package(kernel, stride, padding, groups, b, max_out, explain):
    ref_modules = pytest.importorskip("bcos.modules")
    torch.manual_seed(0)
    ref = ref_modules.BcosConv2d(8, 8, kernel, stride, padding, 1, groups, b=b, max_out=max_out)
    ours = BcosConv2d(8, 8, kernel, stride, padding, 1, groups, b=b, max_out=max_out)
    with torch.no_grad():
        ours.weight.copy_(ref.linear.weight)
    x = torch.randn(2, 8, 12, 12, requires_grad=True)
    ref.set_explanation_mode(explain)
    ours.set_explanation_mode(explain)
    expected, got = ref(x), ours(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    seed = torch.randn_like(expected)
    g_ref, = torch.autograd.grad(expected, x, seed)
    g_ours, = torch.autograd.grad(got, x, seed)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-5 * g_ref.abs().max().item())


@pytest.mark.parametrize("b,max_out", [(2.0, 1), (2.0, 2), (1.5, 1), (2.5, 3), (1.0, 1)])
@pytest.mark.parametrize("explain", [False, True])
def test_linear_equals_bcos_package(b, max_out, explain):
    ref_modules = pytest.importorskip("bcos.modules")
    torch.manual_seed(0)
    ref = ref_modules.BcosLinear(16, 8, b=b, max_out=max_out)
    ours = BcosLinear(16, 8, b=b, max_out=max_out)
    with torch.no_grad():
        ours.weight.copy_(ref.linear.weight)
    x = torch.randn(5, 16, requires_grad=True)
    ref.set_explanation_mode(explain)
    ours.set_explanation_mode(explain)
    expected, got = ref(x), ours(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    g_ref, = torch.autograd.grad(expected.sum(), x)
    g_ours, = torch.autograd.grad(got.sum(), x)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-5 * g_ref.abs().max().item())


def test_cached_unit_weights_follow_weight_changes():
    """Explanation mode and no-grad reuse the normalised weight; any change of the weight is picked up."""
    torch.manual_seed(0)
    layer = BcosConv2d(6, 4, 3, 1, 1)
    x = torch.randn(1, 6, 5, 5)
    with torch.no_grad():
        first = layer(x)
        layer.weight.mul_(-1.0)
        torch.testing.assert_close(layer(x), -first)
    layer.weight = torch.nn.Parameter(torch.randn_like(layer.weight))
    with torch.inference_mode():
        inference = layer(x)
    with explanation_mode(layer):
        x_grad = x.clone().requires_grad_(True)
        out = layer(x_grad)
        out.sum().backward()
    torch.testing.assert_close(out.detach(), inference)
    assert x_grad.grad is not None
    assert sorted(layer.__dict__) == sorted(BcosConv2d(6, 4, 3, 1, 1).__dict__)
