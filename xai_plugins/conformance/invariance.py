"""Implementation invariance (Sundararajan, Taly and Yan, "Axiomatic Attribution for Deep Networks",
ICML 2017): two models that compute the same function must get the same attributions.

This module holds a library of functionally equivalent model pairs, each differing only in how the function
is written down — BatchNorm vs. BatchNorm folded into the convolution, one reused ReLU vs. separate ReLUs,
``x + y`` vs. an explicit sum module, a model vs. its ``torch.fx`` traced copy, an extra identity layer, a
linear layer split into two stacked ones with an identity between, functional vs. module activations — and
the check that runs a model-agnostic attributor over every pair. The workbench's ``xai-plugins invariance``
runs Captum's and Zennit's attributors over the same pairs for the report in ``docs/invariance.md``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xai_plugins.canonizers.modules import Sum
from xai_plugins.conformance.checks import check
from xai_plugins.conformance.examples import randomize_batchnorm
from xai_plugins.conformance.fixtures import call_kwargs, seeded, tolerance
from xai_plugins.conformance.results import CheckFailure, CheckSkipped
from xai_plugins.conformance.state import relative_difference
from xai_plugins.registry import Component

DEFAULT_TOLERANCE = 1e-4
NUM_CLASSES = 5
INPUT_SHAPE = (2, 3, 12, 12)

Attribute = Callable[[nn.Module, torch.Tensor, Any], torch.Tensor]


class _Net(nn.Module):
    """The base of every pair: conv-BN-ReLU, a residual block, pooling, a linear classifier; switches say
    how each piece is written."""

    def __init__(self, *, batchnorm: bool = True, reuse_relu: bool = True, sum_module: bool = False,
                 identity: bool = False, split_linear: bool = False, functional_relu: bool = False) -> None:
        super().__init__()
        self.functional_relu = functional_relu
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=not batchnorm)
        self.bn1 = nn.BatchNorm2d(6) if batchnorm else nn.Identity()
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, bias=not batchnorm)
        self.bn2 = nn.BatchNorm2d(6) if batchnorm else nn.Identity()
        self.relu = nn.ReLU()
        self.relu2 = self.relu if reuse_relu else nn.ReLU()
        self.relu3 = self.relu if reuse_relu else nn.ReLU()
        self.add = Sum() if sum_module else None
        self.extra = nn.Identity() if identity else None
        self.pool = nn.AdaptiveAvgPool2d(2)
        if split_linear:
            self.fc = nn.Sequential(nn.Linear(24, 24, bias=False), nn.Identity(), nn.Linear(24, NUM_CLASSES))
        else:
            self.fc = nn.Linear(24, NUM_CLASSES)

    def _act(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) if self.functional_relu else module(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self._act(self.relu, self.bn1(self.conv1(x)))
        if self.extra is not None:
            h = self.extra(h)
        r = self._act(self.relu2, self.bn2(self.conv2(h)))
        h = self.add(h, r) if self.add is not None else h + r
        h = self._act(self.relu3, h)
        return self.fc(torch.flatten(self.pool(h), 1))


def _base(seed: int, **switches: Any) -> _Net:
    with seeded(seed):
        net = _Net(**switches)
    return randomize_batchnorm(net, torch.Generator().manual_seed(seed + 1)).eval()


def _copy_weights(src: _Net, dst: _Net) -> _Net:
    dst.load_state_dict(src.state_dict(), strict=False)
    return dst.eval()


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A convolution computing ``bn(conv(x))`` in eval mode (the folding in exact arithmetic)."""
    folded = copy.deepcopy(conv)
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    folded.weight = nn.Parameter(conv.weight.detach() * scale.reshape(-1, 1, 1, 1))
    folded.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias.detach())
    return folded


def _batchnorm_folded(seed: int) -> tuple[nn.Module, nn.Module]:
    a = _base(seed)
    b = copy.deepcopy(a)
    b.conv1, b.bn1 = fold_batchnorm(a.conv1, a.bn1), nn.Identity()
    b.conv2, b.bn2 = fold_batchnorm(a.conv2, a.bn2), nn.Identity()
    return a, b.eval()


def _reused_relu(seed: int) -> tuple[nn.Module, nn.Module]:
    a = _base(seed)
    return a, _copy_weights(a, _Net(reuse_relu=False))


def _sum_module(seed: int) -> tuple[nn.Module, nn.Module]:
    a = _base(seed, reuse_relu=False)
    return a, _copy_weights(a, _Net(reuse_relu=False, sum_module=True))


def _fx_traced(seed: int) -> tuple[nn.Module, nn.Module]:
    a = _base(seed, reuse_relu=False)
    return a, torch.fx.symbolic_trace(copy.deepcopy(a)).eval()


def _extra_identity(seed: int) -> tuple[nn.Module, nn.Module]:
    a = _base(seed, reuse_relu=False)
    return a, _copy_weights(a, _Net(reuse_relu=False, identity=True))


def _split_linear(seed: int) -> tuple[nn.Module, nn.Module]:
    a = _base(seed, reuse_relu=False)
    b = _copy_weights(a, _Net(reuse_relu=False, split_linear=True))
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(24, 24, generator=torch.Generator().manual_seed(seed + 2),
                                           dtype=torch.float64))
        b.fc[0].weight.copy_(q.float())
        b.fc[2].weight.copy_((a.fc.weight.double() @ q.T).float())
        b.fc[2].bias.copy_(a.fc.bias)
    return a, b


def _functional_activation(seed: int) -> tuple[nn.Module, nn.Module]:
    a = _base(seed, reuse_relu=False, functional_relu=True)
    return a, _copy_weights(a, _Net(reuse_relu=False))


@dataclass(frozen=True)
class ModelPair:
    """Two functionally equivalent models (eval mode, shared weights) and what distinguishes them."""

    name: str
    description: str
    build: Callable[[int], tuple[nn.Module, nn.Module]]

    def models(self, seed: int = 0) -> tuple[nn.Module, nn.Module]:
        """Fresh instances of both models."""
        return self.build(seed)

    def inputs(self, seed: int = 0) -> torch.Tensor:
        """The input batch for both models."""
        return torch.rand(INPUT_SHAPE, generator=torch.Generator().manual_seed(100 + seed))


PAIRS: tuple[ModelPair, ...] = (
    ModelPair("batchnorm_folded", "conv + BatchNorm vs. BatchNorm folded into the conv", _batchnorm_folded),
    ModelPair("reused_relu", "one ReLU module used three times vs. three ReLU modules", _reused_relu),
    ModelPair("sum_module", "residual `h + r` in forward vs. an explicit `xai_plugins.canonizers.Sum` module",
              _sum_module),
    ModelPair("fx_traced", "a model vs. its torch.fx symbolic_trace copy", _fx_traced),
    ModelPair("extra_identity", "an extra nn.Identity layer", _extra_identity),
    ModelPair("split_linear", "Linear(W) vs. Linear(Q) -> Identity -> Linear(W Q^T), Q orthogonal", _split_linear),
    ModelPair("functional_activation", "F.relu in forward vs. nn.ReLU modules", _functional_activation),
)
"""The library of functionally equivalent model pairs."""


def pair_function_gap(pair: ModelPair, seed: int = 0) -> float:
    """Relative output difference of the two models of a pair (float rounding only, ~1e-7)."""
    a, b = pair.models(seed)
    x = pair.inputs(seed)
    with torch.no_grad():
        return relative_difference(a(x), b(x))


def pair_difference(attribute: Attribute, pair: ModelPair, seed: int = 0) -> float:
    """Worst relative difference between the attributions of the two models of ``pair``.

    ``attribute(model, inputs, target)`` is called on each model with the same input batch and per-sample
    targets, under the same RNG seed; the difference is ``max |A - B| / max |A|``.
    """
    a, b = pair.models(seed)
    x = pair.inputs(seed)
    targets = [i % NUM_CLASSES for i in range(1, x.shape[0] + 1)]
    results = []
    for model in (a, b):
        with seeded(seed):
            results.append(attribute(model, x.clone(), targets))
    first, second = (r[0] if isinstance(r, tuple) else r for r in results)
    return relative_difference(first.detach(), second.detach())


@check("implementation_invariance", "attributor", order=90)
def check_implementation_invariance(component: Component) -> tuple[str, float, float]:
    """A model-agnostic attributor gives equal attributions (within 1e-4 relative, or the component's
    ``tolerance``) on every pair of functionally equivalent models in :data:`PAIRS`."""
    if component.model_types or "example_model" in component.extra:
        raise CheckSkipped("the attributor is limited to particular models; the invariance pairs are generic CNNs")
    if component.extra.get("implementation_invariant") is False:
        raise CheckSkipped("the attributor declares implementation_invariant=False")
    tol = tolerance(component, DEFAULT_TOLERANCE)
    fn = component.load()
    kwargs = call_kwargs(component)
    diffs = {pair.name: pair_difference(lambda m, x, t: fn(m, x, t, **kwargs), pair) for pair in PAIRS}
    worst_pair = max(diffs, key=lambda k: diffs[k])
    worst = diffs[worst_pair]
    if not worst <= tol:
        broken = ", ".join(f"{k} {v:.3g}" for k, v in diffs.items() if not v <= tol)
        raise CheckFailure(f"attributions differ between functionally equivalent models: {broken} relative "
                           f"(tolerance {tol:g})", worst, tol)
    return f"worst relative difference {worst:.2g} ({worst_pair}) over {len(PAIRS)} pairs", worst, tol
