"""The explicit modules compute exactly what the inline operations they replace computed."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F

from xai_plugins.canonizers.modules import Concat, Gate, PositionalBiasConv2d, Sum, ThresholdReLU


def test_sum_concat_gate_are_bitwise_the_inline_operations() -> None:
    torch.manual_seed(0)
    a, b, c = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.rand(2, 3, 1, 1)
    assert torch.equal(Sum()(a, b), a + b)
    assert torch.equal(Concat(1)(a, b, c.expand_as(a)), torch.cat([a, b, c.expand_as(a)], 1))
    assert torch.equal(Gate()(a, c), a * c)
    assert Gate().signal_takes_all and not Gate(signal_takes_all=False).signal_takes_all
    with pytest.raises(ValueError, match="at least one input"):
        Sum()()


def test_threshold_relu_per_channel_and_flipped() -> None:
    x = torch.tensor([[[-1.0, 0.5]], [[2.0, -3.0]]]).view(1, 2, 1, 2)
    module = ThresholdReLU(torch.tensor([0.0, 1.0]), flip=torch.tensor([False, True]))
    expected = torch.tensor([[[[0.0, 0.5]], [[1.0, -3.0]]]])
    assert torch.equal(module(x), expected)
    with pytest.raises(ValueError, match="ThresholdReLU has 2 channels but got input of shape"):
        module(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="one entry per channel"):
        ThresholdReLU(torch.zeros(2, 2))


def test_positional_bias_conv_equals_conv_of_shifted_input() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, stride=2)
    shift = torch.randn(3)
    module = PositionalBiasConv2d.like(conv)
    with torch.no_grad():
        module.weight.copy_(conv.weight)
        module.bias.copy_(conv.bias)
        module.bias_kernel.copy_((conv.weight * shift.view(1, -1, 1, 1)).sum(1, keepdim=True))
    x = torch.randn(2, 3, 7, 6)
    expected = F.conv2d(x + shift.view(1, -1, 1, 1), conv.weight, conv.bias, 2, 1)
    assert torch.allclose(module(x), expected, atol=1e-5)
    with pytest.raises(ValueError, match="padding_mode='zeros'"):
        PositionalBiasConv2d(3, 4, 3, padding=1, padding_mode="reflect")


def test_explicit_modules_hook_copy_and_pickle_like_any_module() -> None:
    """Hooks fire, copies and pickles keep working; instances share no containers."""
    seen = []
    fresh = Sum()
    fresh.register_forward_pre_hook(lambda module, args: seen.append("pre"))
    fresh.register_forward_hook(lambda module, args, out: seen.append("post"))
    fresh.register_full_backward_hook(lambda module, grad_in, grad_out: seen.append("backward"))
    fresh.register_state_dict_post_hook(lambda module, state, prefix, local: seen.append("state"))
    a, b = torch.ones(2, requires_grad=True), torch.full((2,), 2.0)
    fresh(a, b).sum().backward()
    fresh.state_dict()
    assert seen == ["pre", "post", "backward", "state"]
    assert not Sum()._forward_hooks
    for copied in (copy.deepcopy(Concat(dim=2)), pickle.loads(pickle.dumps(Concat(dim=2)))):
        assert copied.dim == 2 and not copied._forward_hooks
        assert torch.equal(copied(torch.ones(1, 1, 1), torch.zeros(1, 1, 1)), torch.tensor([[[1.0, 0.0]]]))
    threshold = ThresholdReLU(torch.tensor([0.5, -1.0]), flip=torch.tensor([False, True]))
    assert list(threshold.state_dict()) == ["threshold", "flip"]
    kept = torch.tensor([0.5, -1.0])
    assert ThresholdReLU(kept, copy=False).threshold.data_ptr() == kept.data_ptr()
    assert ThresholdReLU(kept).threshold.data_ptr() != kept.data_ptr()


def test_threshold_relu_pass_through_keeps_the_value_and_passes_the_gradient() -> None:
    module = ThresholdReLU(torch.tensor([0.0, 1.0]), flip=torch.tensor([False, True]))
    x = torch.tensor([[-1.0, 0.5], [2.0, -3.0]]).view(1, 2, 2).requires_grad_()
    plain = module(x)
    (mask,) = torch.autograd.grad(plain.sum(), x)
    assert torch.equal(mask, torch.tensor([[[0.0, 1.0], [0.0, 1.0]]]))  # the gradient of max / min
    module.pass_through = True
    passed = module(x)
    assert torch.equal(passed, plain)
    (identity,) = torch.autograd.grad(passed.sum(), x)
    assert torch.equal(identity, torch.ones_like(x))
    passed.mul_(2)  # a new tensor, not a view: in-place use after the module stays allowed
