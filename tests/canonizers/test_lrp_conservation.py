"""Canonized LRP in Zennit, proved over drawn BatchNorm states: function, conservation and exact restore.

Every supported torchvision family (small widths and inputs), every BatchNorm state the suite's randomiser draws
(tests/support/batchnorm.py: variances over orders of magnitude, means of both signs, γ of both signs and near
zero, data-calibrated statistics), every bias-free composite Zennit ships:

- the canonized model computes the same function (float32: within 1e-5 of the output's magnitude, or within a
  few times the stock model's own float32 error against float64 where deep cancellation makes that larger);
- with the adapter's rules, Σ relevance / logit = 1 ± 0.01 wherever the drawn network is alive (a dead network's
  output does not depend on its input, so conservation says nothing there; only finiteness is checked);
- after the attribution the model is exactly as before: state bitwise, the same Parameter objects, no hooks;
- the relevance is finite wherever the output is within :data:`FLOAT32_RANGE`.
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
from tests.support.canonizers import EPSILON_JUDGED, assert_same, epsilon_share, small_vgg
from xai_plugins.conformance.state import snapshot

tvm = pytest.importorskip("torchvision.models")
pytest.importorskip("zennit")
from zennit import composites as zc  # noqa: E402
from zennit.attribution import Gradient  # noqa: E402
from zennit.composites import NameMapComposite  # noqa: E402
from zennit.rules import Epsilon, Pass, ZPlus  # noqa: E402

from xai_plugins_zennit import canonizers_for  # noqa: E402

SIZE = 32
FLOAT32_RANGE = (1e-3, 1e15)
"""Output magnitudes at which LRP is judged. Above: the rules multiply and divide activations by relevances of the
same order, so both must stay below the square root of float32's largest value (about 1.8e19) with room to spare;
extreme draws (variance 1e-3 with means of 2 in 60 layers) reach 1e29 and overflow any float32 rule. Below: the
epsilon rule keeps z/(z + ε) of the relevance, ε = 1e-6, so logits under 1e-3 lose more than 0.1 % by design
(draws with variance 1 and no shift shrink MobileNetV2's output to 1e-12). The same holds for a large logit made
mostly of its bias: ``z`` is its bias-free part, so conservation is judged only where ε is at most 0.1 % of that
(``tests.support.canonizers.epsilon_share``)."""


def _resnext() -> nn.Module:
    from torchvision.models.resnet import Bottleneck, ResNet

    return ResNet(Bottleneck, [1, 1, 1, 1], groups=4, width_per_group=4, num_classes=10)


def _densenet() -> nn.Module:
    return tvm.DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16, num_classes=10)


BUILDERS = {
    "vgg11_bn": lambda: small_vgg("A"),
    "resnet18": lambda: tvm.resnet18(num_classes=10),
    "resnext": _resnext,
    "densenet": _densenet,
    "efficientnet_b0": lambda: tvm.efficientnet_b0(num_classes=10),
    "mobilenet_v2": lambda: tvm.mobilenet_v2(num_classes=10, width_mult=0.5),
    "mobilenet_v3_small": lambda: tvm.mobilenet_v3_small(num_classes=10),
    "regnet_y_400mf": lambda: tvm.regnet_y_400mf(num_classes=10),
}

CONSERVING = {
    "EpsilonPlus": lambda c: zc.EpsilonPlus(zero_params="bias", canonizers=c),
    "EpsilonPlusFlat": lambda c: zc.EpsilonPlusFlat(zero_params="bias", canonizers=c),
}
"""Bias-free composites whose every rule passes on exactly the relevance it receives."""

ALPHA_BETA = {
    "EpsilonAlpha2Beta1": lambda c: zc.EpsilonAlpha2Beta1(zero_params="bias", canonizers=c),
    "EpsilonAlpha2Beta1Flat": lambda c: zc.EpsilonAlpha2Beta1Flat(zero_params="bias", canonizers=c),
}
"""Bias-free Alpha-Beta: a unit whose contributions all have one sign passes on α (all positive) or −β (all
negative) of its relevance by the rule's definition, so the sum is conserved only where no relevant unit is
one-signed (the theory is tested in test_zennit_rule_theory.py); here it must run finite and non-trivial."""

@functools.cache
def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return BUILDERS[name]()


def _user_name_map(model: nn.Module, canonizers: list) -> NameMapComposite:
    """What a user writes: their layer names mapped to bias-free rules, every activation passed through."""
    convs = tuple(name for name, m in model.named_modules() if isinstance(m, nn.Conv2d))
    linears = tuple(name for name, m in model.named_modules() if isinstance(m, nn.Linear))
    acts = tuple(name for name, m in model.named_modules()
                 if isinstance(m, (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.BatchNorm2d)))
    return NameMapComposite([(convs, ZPlus(zero_params="bias")), (linears, Epsilon(zero_params="bias")),
                             (acts, Pass())], canonizers=canonizers)


def relevance_ratio(model: nn.Module, x: torch.Tensor, make) -> tuple[float, torch.Tensor]:
    """Σ relevance / target logit for relevance started at one-hot × logit of the top class."""
    with torch.no_grad():
        output = model(x)
    target = int(output[0].argmax())
    start = torch.zeros_like(output)
    start[0, target] = output[0, target]
    with Gradient(model, make(canonizers_for(model))) as attributor:
        _, relevance = attributor(x, start)
    return float(relevance.sum() / output[0, target]), relevance


def _float64_change(model: nn.Module, x: torch.Tensor, exact: torch.Tensor) -> float:
    """Relative output change of canonizing the float64 twin of ``model`` (the function, free of float32)."""
    twin = copy.deepcopy(model).double()
    canonizers = canonizers_for(twin)
    for canonizer in canonizers:
        canonizer.apply(twin)
    try:
        with torch.no_grad():
            canonized = twin(x.double())
    finally:
        for canonizer in reversed(canonizers):
            canonizer.remove()
    return float((canonized - exact).abs().max() / exact.abs().max())


def _input(seed: int, scale: float) -> torch.Tensor:
    return torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("name", sorted(BUILDERS))
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draw=statistics(), composite=st.sampled_from(sorted(CONSERVING)), scale=st.sampled_from((0.5, 1.0, 3.0)))
@example(draw=BatchNormDraw(mode="calibrated", seed=0, gamma=(-1.5, 0.5), near_zero=0.1, beta_scale=0.1),
         composite="EpsilonPlus", scale=0.5)
@example(draw=BatchNormDraw(mode="calibrated", seed=57, log_var=(-0.30103, 0.30103), mean_scale=0.0,
                            gamma=(-1.5, 0.5), near_zero=0.3, beta_scale=0.0),
         composite="EpsilonPlusFlat", scale=1.0)  # DenseNet: γ near zero rounds the canonical form to 1.2e-4
@example(draw=BatchNormDraw(mode="uniform", seed=1, log_var=(-3.0, -2.0), mean_scale=2.0, gamma=(-1.5, 1.5),
                            near_zero=0.3, beta_scale=0.3), composite="EpsilonPlusFlat", scale=3.0)
def test_canonized_lrp_conserves_on_every_drawn_state(name: str, draw: BatchNormDraw, composite: str,
                                                       scale: float) -> None:
    model = apply(_model(name), draw, input_shape=(4, 3, SIZE, SIZE))
    x = _input(draw.seed, scale)
    before = snapshot(model)
    with torch.no_grad():
        plain = model(x)
    ratio, relevance = relevance_ratio(model, x, CONSERVING[composite])
    assert_same(before, snapshot(model))
    magnitude = float(plain.abs().max())
    in_range = FLOAT32_RANGE[0] <= magnitude <= FLOAT32_RANGE[1]
    assert bool(torch.isfinite(relevance).all()) or not in_range
    for canonizer in canonizers_for(model):
        canonizer.apply(model)
        try:
            with torch.no_grad():
                canonized = model(x)
        finally:
            canonizer.remove()
    if not in_range:
        return
    with torch.no_grad():
        exact = copy.deepcopy(model).double()(x.double())
    # float32: the canonized model may round differently from the stock one, but no worse than a few times the
    # stock model's own float32 error, and within 1e-5 of the output's magnitude wherever that is larger; where
    # it rounds worse, the float64 canonization must be exact
    own_error = float((plain.double() - exact).abs().max())
    error = float((canonized.double() - exact).abs().max())
    if error > max(1e-5 * float(exact.abs().max()), 8 * own_error):
        # the canonical form can round worse than the stock model (γ near zero scales merged weights far from the
        # BatchNorm's centred sums): the same draw in float64 shows whether the function changed
        assert _float64_change(model, x, exact) <= 1e-12, f"{name}: {error:.3g} vs {own_error:.3g} in float32"
    if is_alive(model, x) and epsilon_share(model, x, int(plain[0].argmax())) <= EPSILON_JUDGED:
        assert abs(ratio - 1) <= 0.01, f"{name} {composite} {draw}: Σ relevance / logit = {ratio:.5f}"


NON_CONSERVING = {
    "EpsilonGammaBox": lambda c: zc.EpsilonGammaBox(low=-6.0, high=6.0, canonizers=c),
    "GuidedBackprop": lambda c: zc.GuidedBackprop(canonizers=c),
    "ExcitationBackprop": lambda c: zc.ExcitationBackprop(canonizers=c),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_composite_runs_finite_and_non_trivial(name: str) -> None:
    """Gamma/ZBox with biases, Guided Backprop and Excitation Backprop do not conserve by their nature; they must
    still run on every family, give finite maps that are not all zero, and leave the model untouched. A user's
    bias-free ``NameMapComposite`` conserves like the built-in bias-free composites."""
    model = apply(_model(name), BatchNormDraw(mode="calibrated", seed=5), input_shape=(4, 3, SIZE, SIZE))
    x = _input(5, 1.0)
    assert is_alive(model, x)
    before = snapshot(model)
    ratio, relevance = relevance_ratio(model, x, lambda c: _user_name_map(model, c))
    assert abs(ratio - 1) <= 0.01, f"{name}: a user's bias-free NameMapComposite gives {ratio:.5f}"
    for composite, make in {**ALPHA_BETA, **NON_CONSERVING}.items():
        _, relevance = relevance_ratio(model, x, make)
        assert bool(torch.isfinite(relevance).all()), composite
        assert float(relevance.abs().sum()) > 0, composite
    assert_same(before, snapshot(model))
