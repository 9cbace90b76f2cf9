"""Rules that do not conserve by their nature give the share the theory says: Alpha-Beta and Gamma with biases.

Zennit's ``AlphaBeta(α, β)`` (α − β = 1, both releases) divides the positive contributions of a unit by
``P = Σ c⁺ + b⁺`` and the negative ones by ``N = Σ c⁻ + b⁻`` (``c = x·w`` per input, ``b⁺ = max(b, 0)``,
``b⁻ = min(b, 0)``), so a unit passes on the share

    s = α (P − b⁺) / P − β (N − b⁻) / N = 1 − α b⁺ / P + β b⁻ / N

of its relevance: exactly 1 without bias, less than 1 (by α b / P) for a positive bias, more than 1 (by β |b| / |N|)
for a negative one. Through a network the shares compose: Σ relevance at a layer's input is Σ_k s_k R_k over its
units, and R_k itself is the previous layer's split. With ``zero_params='bias'`` every share is 1 and the adapter's
canonized models conserve (``test_lrp_conservation.py``); here the biases are kept and the relevance reaching the
input must equal what the definitions give, computed independently from the forward pass, in float64, with
Zennit's stated stabiliser (denominators moved away from zero by ε = 1e-6 with their sign, +ε at zero).

Zennit's generalised ``Gamma(γ)`` (both releases) splits a unit with output z > 0 in proportion to
``x⁺(w + γw⁺) + x⁻(w + γw⁻)`` over ``D⁺ = Σ (those) + b + γb⁺`` and a unit with z < 0 in proportion to
``x⁺(w + γw⁻) + x⁻(w + γw⁺)`` over ``D⁻ = Σ (those) + b + γb⁻``, so it passes on the share ``1 − (b + γb⁺) / D⁺``
(z > 0), ``1 − (b + γb⁻) / D⁻`` (z < 0), 0 (z = 0): the bias takes its part, as in Alpha-Beta.

``ZBox(l, h)`` (both releases) modifies the bias with the weight (``b``, ``b⁺``, ``b⁻`` for the input, low and high
terms), so the biases cancel in its denominator ``D = Σ x w − l w⁺ − h w⁻ + (b − b⁺ − b⁻) = Σ (x − l) w⁺ + (x − h)
w⁻ ≥ 0`` for inputs in the box, and it passes on the share ``D / (D + ε)``: ZBox conserves with biases; the
EpsilonGammaBox composite loses only what its Gamma and Epsilon layers give to biases.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from torch import nn

from tests.support.batchnorm import BatchNormDraw, apply, statistics
from tests.support.canonizers import assert_same
from xai_plugins.canonizers import MergeBatchNorm
from xai_plugins.conformance.state import snapshot

pytest.importorskip("zennit")
from zennit.attribution import Gradient  # noqa: E402
from zennit.composites import LayerMapComposite  # noqa: E402
from zennit.rules import AlphaBeta, Gamma, Pass, ZBox  # noqa: E402

from xai_plugins_zennit import for_zennit  # noqa: E402

EPSILON = 1e-6
"""Zennit's default stabiliser of ``AlphaBeta``."""
FLOAT64 = 1e-9
"""Bound on |measured − theory| relative to the largest term of the theory (α·|P − b⁺|/|P|, β·|N − b⁻|/|N|,
summed over units with their relevance): float64 rounding (1.1e-16) amplified by sums over tens of inputs and
divisions by denominators that can be 1e-6 of their terms is far below it."""


def _stabilize(denominator: torch.Tensor) -> torch.Tensor:
    return denominator + EPSILON * torch.where(denominator >= 0, 1.0, -1.0).to(denominator)


def _split(layer: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor, relevance: torch.Tensor, alpha: float,
           beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The Alpha-Beta split of ``relevance`` (one row per unit) over the inputs ``x`` of ``layer = (W, b)``, by
    the rule's definition; also the size of its terms (for the rounding bound)."""
    weight, bias = layer
    contributions = x[:, None, :] * weight[None]          # [batch, unit, input]
    positive, negative = contributions.clamp(min=0), contributions.clamp(max=0)
    p = _stabilize(positive.sum(-1) + bias.clamp(min=0))
    n = _stabilize(negative.sum(-1) + bias.clamp(max=0))
    split = alpha * positive * (relevance / p)[..., None] - beta * negative * (relevance / n)[..., None]
    size = (alpha * positive.sum(-1) * (relevance / p).abs() - beta * negative.sum(-1) * (relevance / n).abs())
    return split.sum(1), size


def _gamma_split(layer: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor, relevance: torch.Tensor,
                 gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The generalised Gamma split of ``relevance`` over the inputs ``x`` of ``layer = (W, b)``, by the rule's
    definition (module docstring); also the size of its terms."""
    weight, bias = layer
    x_pos, x_neg = x.clamp(min=0)[:, None, :], x.clamp(max=0)[:, None, :]
    w_pos = (weight + gamma * weight.clamp(min=0))[None]
    w_neg = (weight + gamma * weight.clamp(max=0))[None]
    output = x @ weight.T + bias
    up = x_pos * w_pos + x_neg * w_neg                     # [batch, unit, input], units with z > 0
    down = x_pos * w_neg + x_neg * w_pos                   # units with z < 0
    d_up = _stabilize(up.sum(-1) + bias + gamma * bias.clamp(min=0))
    d_down = _stabilize(down.sum(-1) + bias + gamma * bias.clamp(max=0))
    split = (up * ((output > 0) * relevance / d_up)[..., None]
             + down * ((output < 0) * relevance / d_down)[..., None])
    size = (up.abs().sum(-1) * (relevance / d_up).abs() + down.abs().sum(-1) * (relevance / d_down).abs())
    return split.sum(1), size


def theory(layers: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor, target: int, alpha: float,
           beta: float, gamma: float | None = None) -> tuple[float, float]:
    """Σ input relevance / logit for an MLP (Linear, ReLU, ..., Linear) with ``AlphaBeta`` (or ``Gamma(gamma)``
    where ``gamma`` is given) on every layer and relevance started at one-hot × logit; and the size of the terms
    that sum to it (relative to the logit)."""
    inputs, a = [], x
    for index, (weight, bias) in enumerate(layers):
        inputs.append(a)
        a = a @ weight.T + bias
        if index < len(layers) - 1:
            a = a.clamp(min=0)
    logit = a[0, target]
    relevance = torch.zeros_like(a)
    relevance[0, target] = logit
    size = 0.0
    for layer, x_in in zip(reversed(layers), reversed(inputs)):
        relevance, terms = (_split(layer, x_in, relevance, alpha, beta) if gamma is None
                            else _gamma_split(layer, x_in, relevance, gamma))
        size = max(size, float(terms.sum()))
    return float(relevance.sum() / logit), size / abs(float(logit))


def measured(model: nn.Module, x: torch.Tensor, alpha: float, beta: float, canonizers: list | None = None,
             gamma: float | None = None) -> tuple[float, int]:
    """Σ relevance / logit from Zennit with ``AlphaBeta(α, β)`` (or ``Gamma(gamma)``; biases kept) on every
    Linear layer."""
    with torch.no_grad():
        output = model(x)
    target = int(output[0].argmax())
    start = torch.zeros_like(output)
    start[0, target] = output[0, target]
    rule = AlphaBeta(alpha, beta) if gamma is None else Gamma(gamma)
    composite = LayerMapComposite([(nn.Linear, rule), (nn.ReLU, Pass())], canonizers=canonizers)
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x, start)
    return float(relevance.sum() / output[0, target]), target


def _mlp(widths: list[int], seed: int, bias_scale: float) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(widths, widths[1:])):
        linear = nn.Linear(fan_in, fan_out)
        nn.init.normal_(linear.bias, std=bias_scale)
        layers.append(linear)
        if index < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).double().eval()


ALPHAS = st.sampled_from([1.0, 2.0, 3.0])
WIDTHS = st.lists(st.integers(1, 12), min_size=2, max_size=4)


@settings(max_examples=40, deadline=None)
@given(widths=WIDTHS, seed=st.integers(0, 2**16), alpha=ALPHAS, bias_scale=st.sampled_from([0.1, 1.0, 3.0]))
@example(widths=[4, 1], seed=0, alpha=2.0, bias_scale=1.0)
def test_alpha_beta_with_biases_passes_on_the_theoretical_share(widths: list[int], seed: int, alpha: float,
                                                                  bias_scale: float) -> None:
    """Single layers and MLPs, inputs of both signs, biases of both signs: Σ R_input / logit is the composed
    share of the definition, not 1 (and not 0)."""
    model = _mlp(widths, seed, bias_scale)
    x = torch.randn(1, widths[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ratio, target = measured(model, x, alpha, alpha - 1)
    layers = [(m.weight.detach(), m.bias.detach()) for m in model if isinstance(m, nn.Linear)]
    expected, size = theory(layers, x, target, alpha, alpha - 1)
    assert abs(ratio - expected) <= FLOAT64 * max(size, 1.0), f"measured {ratio!r}, theory {expected!r}"


@settings(max_examples=40, deadline=None)
@given(widths=WIDTHS, seed=st.integers(0, 2**16), gamma=st.sampled_from([0.25, 1.0, 4.0]),
       bias_scale=st.sampled_from([0.1, 1.0, 3.0]))
@example(widths=[4, 1], seed=0, gamma=0.25, bias_scale=1.0)
def test_gamma_with_biases_passes_on_the_theoretical_share(widths: list[int], seed: int, gamma: float,
                                                           bias_scale: float) -> None:
    """Gamma with biases of both signs, inputs of both signs: Σ R_input / logit is the composed share of the
    generalised rule's definition (the bias takes b + γb± of each unit's denominator), not 1 and not 0."""
    model = _mlp(widths, seed, bias_scale)
    x = torch.randn(1, widths[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ratio, target = measured(model, x, 1.0, 0.0, gamma=gamma)
    layers = [(m.weight.detach(), m.bias.detach()) for m in model if isinstance(m, nn.Linear)]
    expected, size = theory(layers, x, target, 1.0, 0.0, gamma=gamma)
    assert abs(ratio - expected) <= FLOAT64 * max(size, 1.0), f"measured {ratio!r}, theory {expected!r}"


@settings(max_examples=40, deadline=None)
@given(fan_in=st.integers(1, 16), fan_out=st.integers(1, 6), seed=st.integers(0, 2**16),
       bias_scale=st.sampled_from([0.0, 0.1, 1.0, 10.0]), width=st.sampled_from([0.5, 2.0, 6.0]))
@example(fan_in=3, fan_out=2, seed=0, bias_scale=10.0, width=2.0)
def test_zbox_with_biases_passes_on_the_theoretical_share(fan_in: int, fan_out: int, seed: int, bias_scale: float,
                                                          width: float) -> None:
    """A first layer under ZBox, inputs inside the box, biases of both signs up to 10× the weights: the share is
    D / (D + ε) of the target unit, with D = Σ (x − l) w⁺ + (x − h) w⁻ (the biases cancel)."""
    generator = torch.Generator().manual_seed(seed)
    layer = nn.Linear(fan_in, fan_out).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(fan_out, fan_in, generator=generator, dtype=torch.float64))
        layer.bias.copy_(torch.randn(fan_out, generator=generator, dtype=torch.float64) * bias_scale)
    low, high = -width, width
    x = (torch.rand(1, fan_in, generator=generator, dtype=torch.float64) * 2 - 1) * width
    with torch.no_grad():
        output = layer(x)
    target = int(output[0].argmax())
    start = torch.zeros_like(output)
    start[0, target] = output[0, target]
    composite = LayerMapComposite([(nn.Linear, ZBox(low, high))])
    with Gradient(layer, composite) as attributor:
        _, relevance = attributor(x, start)
    ratio = float(relevance.sum() / output[0, target])
    w = layer.weight.detach()[target]
    d = float(((x[0] - low) * w.clamp(min=0) + (x[0] - high) * w.clamp(max=0)).sum())
    expected = d / float(_stabilize(torch.tensor(d, dtype=torch.float64)))
    assert abs(ratio - expected) <= FLOAT64 * max(abs(expected), 1.0), f"measured {ratio!r}, theory {expected!r}"


def test_single_layer_share_is_the_closed_form() -> None:
    """One unit, bias b: s = 1 − α b⁺/P + β b⁻/N, above 1 for a negative bias and below 1 for a positive one."""
    layer = nn.Linear(3, 1).double()
    x = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.5, 0.25, -1.0]]))   # contributions 1.5, -0.5, -0.5: p = 1.5, n = -1
    for bias, share in ((0.5, 1 - 2 * 0.5 / 2.0), (-0.25, 1 + 1 * 0.25 / 1.25), (0.0, 1.0)):
        with torch.no_grad():
            layer.bias.fill_(bias)
        p = _stabilize(torch.tensor(1.5 + max(bias, 0.0), dtype=torch.float64)).item()
        n = _stabilize(torch.tensor(-1.0 + min(bias, 0.0), dtype=torch.float64)).item()
        exact = 2 * 1.5 / p - 1 * -1.0 / n
        ratio, _ = measured(layer, x, 2.0, 1.0)
        assert abs(ratio - exact) <= 1e-12 and abs(exact - share) <= 3e-6, (bias, ratio, share)


class _NormedMLP(nn.Module):
    """Linear → BatchNorm → ReLU twice, then a Linear head: canonizing merges each BatchNorm into its Linear."""

    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        hidden = list(zip(widths[:-2], widths[1:-1]))
        self.body = nn.Sequential(*[module for fan_in, fan_out in hidden
                                    for module in (nn.Linear(fan_in, fan_out, bias=False), nn.BatchNorm1d(fan_out),
                                                   nn.ReLU())])
        self.head = nn.Linear(widths[-2], widths[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _merged_layers(model: _NormedMLP) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The merged (W, b) of each Linear → BatchNorm pair, from the definition of eval-mode BatchNorm."""
    layers = []
    modules = list(model.body)
    for linear, norm in zip(modules[0::3], modules[1::3]):
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        layers.append((linear.weight * scale[:, None], norm.bias - norm.running_mean * scale))
    layers.append((model.head.weight, model.head.bias))
    return [(w.detach(), b.detach()) for w, b in layers]


@settings(max_examples=15, deadline=None)
@given(draw=statistics(), widths=st.lists(st.integers(2, 10), min_size=3, max_size=4),
       alpha=st.sampled_from([2.0, 3.0]))
@example(draw=BatchNormDraw(mode="uniform", seed=3, mean_scale=2.0, gamma=(-1.5, 1.5), beta_scale=0.3),
         widths=[5, 6, 3], alpha=2.0)
def test_canonized_network_with_merged_biases_gives_the_theoretical_share(draw: BatchNormDraw, widths: list[int],
                                                                          alpha: float) -> None:
    """BatchNorm merged by the canonizer (``MergeBatchNorm``, from the traced data flow) gives every Linear a
    bias; Alpha-Beta on the canonized model passes on the share the theory gives for the merged layers (the
    adapter's conserving completion leaves rules
    that use biases alone), and the model is restored."""
    torch.manual_seed(draw.seed)
    model = apply(_NormedMLP(widths).double(), draw, input=torch.randn(8, widths[0], dtype=torch.float64))
    x = torch.randn(1, widths[0], generator=torch.Generator().manual_seed(draw.seed), dtype=torch.float64)
    before = snapshot(model)
    ratio, target = measured(model, x, alpha, alpha - 1, [for_zennit(MergeBatchNorm())])
    assert_same(before, snapshot(model))
    layers = _merged_layers(model)
    assume(all(bool(bias.any()) for _, bias in layers))
    expected, size = theory(layers, x, target, alpha, alpha - 1)
    assert abs(ratio - expected) <= FLOAT64 * max(size, 1.0), f"measured {ratio!r}, theory {expected!r}"
