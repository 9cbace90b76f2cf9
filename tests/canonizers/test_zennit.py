"""Zennit adapter: conservation with EpsilonPlusFlat, implementation invariance, rules of the new modules."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tests.support.batchnorm import batchnorms, calibrate_batchnorm, randomize_batchnorm
from tests.support.canonizers import assert_same, small_vgg
from xai_plugins.canonizers.batchnorm import MergeBatchNormPreceding
from xai_plugins.canonizers.modules import Gate, Sum
from xai_plugins.conformance.state import snapshot

pytest.importorskip("zennit")
tvm = pytest.importorskip("torchvision.models")
from zennit.attribution import Gradient  # noqa: E402
from zennit.composites import EpsilonPlusFlat, LayerMapComposite  # noqa: E402
from zennit.rules import Epsilon  # noqa: E402

from xai_plugins_zennit import canonizers_for  # noqa: E402
from xai_plugins_zennit.canonizers import for_zennit  # noqa: E402


def lrp(model: nn.Module, x: torch.Tensor, canonizers: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EpsilonPlusFlat(zero_params='bias') relevance started at the target logit (one-hot × output)."""
    with torch.no_grad():
        output = model(x)
    target = output.argmax(1)
    start = torch.zeros_like(output)
    start[torch.arange(len(x)), target] = 1.0
    composite = EpsilonPlusFlat(zero_params="bias", canonizers=canonizers)
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x, start * output)
    return relevance, output[torch.arange(len(x)), target], output


def conservation(model: nn.Module, size: int) -> float:
    torch.manual_seed(0)
    x = torch.randn(1, 3, size, size)
    relevance, logit, _ = lrp(model, x, canonizers_for(model))
    return (relevance.sum() / logit).item()


CONSERVATION = {  # builder, tolerance, input size, scale of random means and betas (see calibrate_batchnorm)
    "resnet18": (lambda: tvm.resnet18(num_classes=10), 0.01, 64, 0.02),
    "resnet50": (lambda: tvm.resnet50(num_classes=10), 0.01, 64, 0.02),
    "vgg16_bn": (lambda: small_vgg("D"), 0.01, 32, 0.02),
    "efficientnet_b0": (lambda: tvm.efficientnet_b0(num_classes=10), 0.03, 64, 0.02),
    "mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(num_classes=10), 0.03, 64, 0.02),
    "densenet121": (lambda: tvm.densenet121(num_classes=10), 0.01, 64, 0.02),
}


@pytest.mark.parametrize("name", sorted(CONSERVATION))
def test_conservation_randomised_statistics(name: str) -> None:
    """Relevance sum / target logit; what EfficientNet and MobileNetV3 lose is discussed in docs/canonizers.md."""
    builder, tolerance, size, scale = CONSERVATION[name]
    torch.manual_seed(0)
    model = calibrate_batchnorm(builder(), size=size, seed=0, scale=scale)
    before = snapshot(model)
    ratio = conservation(model, size)
    assert abs(ratio - 1) <= tolerance, f"{name}: relevance sum / logit = {ratio:.4f}"
    assert_same(before, snapshot(model))


def test_conservation_densenet_initial_statistics() -> None:
    torch.manual_seed(0)
    model = tvm.densenet121(num_classes=10).eval()
    ratio = conservation(model, 64)
    assert abs(ratio - 1) <= 0.01, f"relevance sum / logit = {ratio:.4f}"


def test_conservation_densenet_random_statistics_with_negative_gamma() -> None:
    """BN → ReLU with negative and zero gamma goes through the flipped threshold ReLU."""
    torch.manual_seed(0)
    model = randomize_batchnorm(tvm.densenet121(num_classes=10), seed=3)
    ratio = conservation(model, 64)
    assert abs(ratio - 1) <= 0.01, f"relevance sum / logit = {ratio:.4f}"


def _fold_by_hand(model: nn.Module) -> nn.Module:
    """A copy with every conv → BN pair folded in float64 and the BN replaced by nn.Identity."""
    folded = copy.deepcopy(model)
    modules = list(folded.named_modules())
    for (_, conv), (bn_name, bn) in zip(modules, modules[1:]):
        if isinstance(bn, nn.BatchNorm2d):
            scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
            conv.weight = nn.Parameter((conv.weight.double() * scale.view(-1, 1, 1, 1)).float())
            conv.bias = nn.Parameter(((bias - bn.running_mean.double()) * scale + bn.bias.double()).float())
            parent_name, _, attr = bn_name.rpartition(".")
            setattr(folded.get_submodule(parent_name), attr, nn.Identity())
    return folded


def test_implementation_invariance_against_hand_folded_copy() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(32, 10))
    model = calibrate_batchnorm(model, size=16, seed=1, scale=0.3)
    folded = _fold_by_hand(model)
    x = torch.randn(2, 3, 16, 16)
    canonized_relevance, _, output = lrp(model, x, [for_zennit(MergeBatchNormPreceding())])
    folded_relevance, _, folded_output = lrp(folded, x, [])
    assert torch.allclose(output, folded_output, rtol=1e-5, atol=1e-6)
    error = (canonized_relevance - folded_relevance).abs().max() / folded_relevance.abs().max()
    assert error <= 1e-4, f"relative relevance difference {error:.2e}"


def test_implementation_invariance_resnet18() -> None:
    """ResNet-18 with BN against a copy whose BNs were folded by hand (left as neutral BN modules)."""
    torch.manual_seed(0)
    model = calibrate_batchnorm(tvm.resnet18(num_classes=10), size=32, seed=2, scale=0.3)
    folded = copy.deepcopy(model)
    pairs = [(m.conv1, m.bn1) for m in [folded]] + [
        (getattr(block, f"conv{i}"), getattr(block, f"bn{i}"))
        for layer in (folded.layer1, folded.layer2, folded.layer3, folded.layer4) for block in layer
        for i in (1, 2)] + [(b.downsample[0], b.downsample[1]) for layer in
                            (folded.layer2, folded.layer3, folded.layer4) for b in layer if b.downsample is not None]
    for conv, bn in pairs:
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        conv.weight.data = (conv.weight.double() * scale.view(-1, 1, 1, 1)).float()
        conv.bias = nn.Parameter((bn.bias.double() - bn.running_mean.double() * scale).float())
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        bn.weight.data.fill_(1.0)
        bn.bias.data.zero_()
        bn.eps = 0.0
    assert len(pairs) == len(batchnorms(folded))
    x = torch.randn(2, 3, 32, 32)
    relevance, _, _ = lrp(model, x, canonizers_for(model))
    folded_relevance, _, _ = lrp(folded, x, canonizers_for(folded))
    error = (relevance - folded_relevance).abs().max() / folded_relevance.abs().max()
    assert error <= 1e-4, f"relative relevance difference {error:.2e}"


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.sum = Sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sum(self.linear(x), x)


class _Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.gate = Gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x, torch.sigmoid(self.linear(x)))


class _Rules(MergeBatchNormPreceding):
    def canonize(self, model: nn.Module) -> None:
        self.claim(model)


def _relevance_of(model: nn.Module, x: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Relevance with the rules the canonizer attaches and ``Epsilon`` (with bias) on the linear layer, which
    makes the composite a relevance composite; everything else is the plain gradient."""
    composite = LayerMapComposite([(nn.Linear, Epsilon())], canonizers=[for_zennit(_Rules())])
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x, start)
    return relevance


def test_sum_rule_splits_in_proportion() -> None:
    torch.manual_seed(0)
    model = _Residual()
    nn.init.zeros_(model.linear.weight)
    nn.init.constant_(model.linear.bias, 1.0)
    x = torch.tensor([[1.0, 3.0, -2.0, 0.5]])
    relevance = _relevance_of(model, x, torch.ones(1, 4))
    expected = x / (x + 1.0)
    assert torch.allclose(relevance, expected, atol=1e-5)


def test_gate_rule_gives_all_relevance_to_the_signal() -> None:
    torch.manual_seed(0)
    model = _Gated()
    x = torch.rand(1, 4) + 0.5
    start = torch.rand(1, 4)
    relevance = _relevance_of(model, x, start)
    assert torch.allclose(relevance, start, atol=1e-6)


def test_hooks_and_model_restored_after_attribution() -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(tvm.efficientnet_b0(num_classes=10), seed=0)
    before = snapshot(model)
    canonizers = canonizers_for(model)
    lrp(model, torch.randn(1, 3, 32, 32), canonizers)
    lrp(model, torch.randn(1, 3, 32, 32), canonizers)
    assert_same(before, snapshot(model))


def test_unsupported_model_error_from_adapter(only_builtin_canonizers) -> None:
    with pytest.raises(ValueError, match="Supported families"):
        canonizers_for(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)))  # no graph canonization either


def _depthwise_relevance(rule, canonizers: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Relevance through a depthwise conv whose contributions are all negative (z⁺ has nothing to use), followed
    by a SiLU (mixed-sign activation, relevance passed through unchanged)."""
    from zennit.composites import LayerMapComposite
    from zennit.rules import Pass

    torch.manual_seed(0)
    conv = nn.Conv2d(2, 2, 3, padding=1, groups=2)
    nn.init.uniform_(conv.weight, -1.0, -0.1)
    model = nn.Sequential(conv, nn.SiLU())
    x = torch.rand(1, 2, 5, 5) + 0.5
    start = torch.rand(1, 2, 5, 5)
    composite = LayerMapComposite(layer_map=[(nn.Conv2d, rule), (nn.SiLU, Pass())], canonizers=canonizers)
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x, start)
    return relevance, start


def test_zplus_fallback_conserves_units_without_positive_contribution() -> None:
    from zennit.rules import ZPlus

    lost, start = _depthwise_relevance(ZPlus(zero_params="bias"), [])
    assert lost.abs().sum() <= 1e-3 * start.sum()
    completed, start = _depthwise_relevance(ZPlus(zero_params="bias"), [for_zennit(_Rules())])
    assert torch.allclose(completed.sum(), start.sum(), rtol=1e-5)
    assert bool((completed >= 0).all())


def test_fallback_adds_only_what_epsilon_loses_to_its_stabiliser() -> None:
    """Epsilon is not degenerate here (z ≠ 0): the completion adds the share ε/(z − ε) only, so the map stays the
    epsilon map within that relative size (ε = 1e-6 against |z| ≥ 0.45 gives a bound of about 3e-6)."""
    from zennit.rules import Epsilon

    plain, start = _depthwise_relevance(Epsilon(zero_params="bias"), [])
    with_rule, _ = _depthwise_relevance(Epsilon(zero_params="bias"), [for_zennit(_Rules())])
    assert torch.allclose(plain, with_rule, rtol=1e-5, atol=0)
    assert abs(float(with_rule.sum() - start.sum())) <= abs(float(plain.sum() - start.sum())) + 1e-6


def test_threshold_relu_switch_equals_zennit_pass_and_is_restored() -> None:
    """The adapter's pass-through switch gives Zennit's ``Pass`` relevance exactly; remove restores the flag of a
    ThresholdReLU that was in the model before (and the ones it created leave with the canonizer)."""
    from zennit.rules import Pass

    from xai_plugins.canonizers.modules import ThresholdReLU
    from xai_plugins.canonizers.torchvision_models import DenseNetCanonizer
    from xai_plugins_zennit.canonizers import ZennitCanonizer, default_rules, pass_through

    torch.manual_seed(0)
    model = randomize_batchnorm(tvm.DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2,
                                             num_classes=5).eval())
    x = torch.randn(2, 3, 32, 32)
    with_pass = [(kind, (lambda module: Pass()) if factory is pass_through else factory)
                 for kind, factory in default_rules()]
    switched, _, _ = lrp(model, x, [ZennitCanonizer(DenseNetCanonizer())])
    hooked, _, _ = lrp(model, x, [ZennitCanonizer(DenseNetCanonizer(), rules=with_pass)])
    assert torch.allclose(switched, hooked, rtol=1e-6, atol=1e-7)

    extra = ThresholdReLU(torch.zeros(3)).eval()
    model.add_module("extra", extra)  # not called by forward: only its flag matters here
    canonizer = ZennitCanonizer(DenseNetCanonizer())
    canonizer.apply(model)
    created = [m for m in model.modules() if isinstance(m, ThresholdReLU) and m is not extra]
    assert extra.pass_through and created and all(m.pass_through for m in created)
    canonizer.remove()
    assert "pass_through" not in extra.__dict__ and not extra.pass_through
