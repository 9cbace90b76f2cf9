"""Canonizers under Zennit's gradient composites: the canonized model's (modified) gradient is the model's own.

The adapter's rules for the explicit modules (``SumRule``, ``SignalTakesAllRule``, pass-through thresholds, the
conserving completion) are LRP rules. Under a composite that registers no LRP rule (Zennit's ``GuidedBackprop``
only modifies ReLU gradients; a bare ``Composite`` nothing) they must stay off: a gradient rescaled by
``SumRule``'s ``x_i / Σx`` grows without bound through deep residual stacks (EfficientNetV2-S at 64 px reached
1e37 and NaN). With them off, canonizing changes a gradient method's map by rounding only, since the function
is the same; in float64 the bound below is far above that rounding and far below any real difference.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from torch import nn

from tests.canonizers.test_lrp_conservation import BUILDERS
from tests.support.batchnorm import BatchNormDraw, apply, statistics
from tests.support.canonizers import assert_same
from xai_plugins.canonizers.modules import ThresholdReLU
from xai_plugins.conformance.state import snapshot

tvm = pytest.importorskip("torchvision.models")
pytest.importorskip("zennit")
from zennit.attribution import Gradient  # noqa: E402
from zennit.composites import GuidedBackprop  # noqa: E402
from zennit.core import Composite  # noqa: E402

from xai_plugins_zennit import canonizers_for  # noqa: E402

SIZE = 32
FLOAT64_AGREEMENT = 1e-9
"""Least bound on max |map(canonized) − map(model)| / max |map(model)| in float64. Merged weights differ from
the products they replace by one rounding per layer, which the map amplifies by its condition number (a Guided
Backprop map of a drawn EfficientNet-B0 changes by 1e-11 when the input moves by one float64 rounding unit), so
the bound is the larger of this and the model's own float32 error of the map (float32 vs float64): canonizing
must change the map by less than running the model in float32 does. A rule left acting on a gradient changes
it by orders of magnitude more."""

FAMILIES = {**BUILDERS, "efficientnet_v2_s": lambda: tvm.efficientnet_v2_s(num_classes=10)}
"""The conservation tests' families (small widths) and the reported EfficientNetV2-S (only at its reported case:
stock width, too slow for many float64 draws)."""
@functools.cache
def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return FAMILIES[name]()


def _map(model: nn.Module, x: torch.Tensor, composite: Composite) -> torch.Tensor:
    with torch.no_grad():
        output = model(x)
    start = torch.zeros_like(output)
    start[0, int(output[0].argmax())] = 1.0
    with Gradient(model, composite) as attributor:
        _, attribution = attributor(x, start)
    return attribution


def _compare(name: str, draw: BatchNormDraw, size: int, make) -> None:
    model = apply(_model(name), draw, input_shape=(4, 3, size, size))
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(draw.seed))
    single = _map(model, x, make(None)).double()
    model.double()
    try:
        x = x.double()
        before = snapshot(model)
        plain = _map(model, x, make(None))
        canonized = _map(model, x, make(canonizers_for(model)))
        assert_same(before, snapshot(model))
    finally:
        model.float()
    assert bool(torch.isfinite(canonized).all()) and float(canonized.abs().max()) > 0
    scale = float(plain.abs().max())
    bound = max(FLOAT64_AGREEMENT, float((single - plain).abs().max()) / scale)
    error = float((canonized - plain).abs().max()) / scale
    assert error <= bound, f"{name} {draw}: canonized map differs by {error:.3g} (relative), bound {bound:.3g}"


def _has_threshold_relu(name: str) -> bool:
    model = _model(name)
    (canonizer,) = canonizers_for(model)
    canonizer.apply(model)
    try:
        return any(isinstance(module, ThresholdReLU) for module in model.modules())
    finally:
        canonizer.remove()


@pytest.mark.parametrize("name", sorted(BUILDERS))
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draw=statistics())
def test_plain_gradient_is_unchanged_by_canonizing(name: str, draw: BatchNormDraw) -> None:
    """A composite without rules: the explicit modules pass their plain gradient (threshold ReLUs included)."""
    _compare(name, draw, SIZE, lambda canonizers: Composite(canonizers=canonizers))


@pytest.mark.parametrize("name", sorted(BUILDERS))
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draw=statistics())
@example(draw=BatchNormDraw(mode="calibrated", seed=0))
def test_guided_backprop_is_unchanged_by_canonizing(name: str, draw: BatchNormDraw) -> None:
    """``GuidedBackprop`` with ``canonizers_for(model)`` is finite, non-zero and the model's own Guided Backprop
    map. DenseNet's BN → ReLU → conv becomes ``ThresholdReLU`` → conv, which Guided Backprop (it modifies
    ``nn.ReLU`` only) passes as a plain gradient, so only finiteness is asserted there."""
    if _has_threshold_relu(name):
        model = apply(_model(name), draw, input_shape=(4, 3, SIZE, SIZE))
        x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(draw.seed))
        attribution = _map(model, x, GuidedBackprop(canonizers=canonizers_for(model)))
        assert bool(torch.isfinite(attribution).all()) and float(attribution.abs().max()) > 0
        return
    _compare(name, draw, SIZE, lambda canonizers: GuidedBackprop(canonizers=canonizers))


def test_guided_backprop_on_efficientnet_v2_at_64_pixels_is_finite() -> None:
    """The reported case, in float32: EfficientNetV2-S, 64 px, calibrated statistics (the composite table's seed
    0), where the map used to be NaN; its agreement with the model's own map is the float64 property above."""
    model = apply(_model("efficientnet_v2_s"), BatchNormDraw(seed=0), input_shape=(4, 3, 64, 64))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    attribution = _map(model, x, GuidedBackprop(canonizers=canonizers_for(model)))
    assert bool(torch.isfinite(attribution).all()) and float(attribution.abs().max()) > 0
