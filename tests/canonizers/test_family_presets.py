"""The family canonizers and the graph canonizer give the same canonical model, on every family both cover.

For each family of ``families.BUILTIN_CANONIZERS`` that the graph canonizer also covers (small widths, 32-pixel
inputs, BatchNorm states drawn by the suite's randomiser, :mod:`tests.support.batchnorm`), the canonizer
``canonizers_for`` picks and a plain ``GraphCanonizer`` are compared on one model
(:mod:`tests.support.canonical_forms`):

- the same explicit modules at the same places (every explicit module type and the torch modules standing for
  functional calls, counted per parent), and every module the forward calls called with the same parameters and
  buffers, bitwise, original modules exactly once;
- the architecture's canonical form (:func:`~tests.support.canonical_forms.architecture_problems`) and every
  BatchNorm an exact identity while canonized;
- the same function (float32: within 1e-5 of the output's magnitude);
- the same relevance, within 1e-5 of its largest magnitude, with Zennit's ``EpsilonPlusFlat(zero_params='bias')``
  through the Zennit adapter and with Captum's ``LRP`` inside ``canonized()``, wherever the network is alive.
"""

from __future__ import annotations

import copy
import functools
import inspect

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from torch import nn

from tests.support.batchnorm import BatchNormDraw, apply, is_alive, statistics
from tests.support.canonical_forms import (
    canonical,
    captum_relevance,
    relative,
    zennit_relevance,
)
from tests.support.canonizers import FAMILY_BUILDERS
from xai_plugins.canonizers import canonizers_for
from xai_plugins.canonizers.graph import GraphCanonizer
from xai_plugins.canonizers.torchvision_models import ResNetCanonizer

tvm = pytest.importorskip("torchvision.models")
pytest.importorskip("zennit")
pytest.importorskip("captum")

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

SIZE = 32
AGREEMENT = 1e-5
"""The issue's bound: relevance of the two canonizers within 1e-5 of the largest relevance."""
FLOAT32_RTOL = 1e-5
"""Relative output difference allowed in float32 (see ``tests.support.canonizers.FLOAT32_RTOL``)."""
PRESET_FAMILIES = tuple(name for name in FAMILY_BUILDERS if name != "relation_network")
"""Families both canonizers cover; the Relation Network's forward is not traceable (see its canonizer)."""


@functools.cache
def _base(family: str) -> nn.Module:
    torch.manual_seed(0)
    return FAMILY_BUILDERS[family]().eval()


@pytest.mark.parametrize("family", PRESET_FAMILIES)
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draw=statistics())
@example(draw=BatchNormDraw(mode="calibrated", seed=0, gamma=(-1.5, 0.5), near_zero=0.1, beta_scale=0.1))
def test_family_canonizer_and_graph_canonizer_agree(family: str, draw: BatchNormDraw) -> None:
    model = apply(copy.deepcopy(_base(family)), draw, input_shape=(4, 3, SIZE, SIZE))
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(draw.seed))
    with torch.no_grad():
        reference = model(x)
    (family_canonizer,) = canonizers_for(model)
    graph_canonizer = GraphCanonizer(verify=False)
    hand, auto = (canonical(model, canonizer.copy(), x) for canonizer in (family_canonizer, graph_canonizer))

    assert hand.layout == auto.layout, \
        f"only family: {hand.layout - auto.layout}, only graph: {auto.layout - hand.layout}"
    assert hand.merged and auto.merged, "a BatchNorm kept an effect"
    assert hand.problems == [] and auto.problems == [], (hand.problems, auto.problems)
    assert hand.calls.keys() == auto.calls.keys(), f"{set(hand.calls) ^ set(auto.calls)}"
    for key, states in hand.calls.items():
        assert states == auto.calls[key], f"{key}: called differently or with other parameters"
        assert key[0] == "<new>" or sum(states.values()) == 1, f"{key} called {sum(states.values())} times"

    if not bool(torch.isfinite(reference).all()) or float(reference.abs().max()) == 0:
        return
    assert relative(hand.output, auto.output) <= FLOAT32_RTOL
    if draw.mode == "calibrated":
        assert is_alive(model, x), "a calibrated draw keeps the network alive"
    elif not is_alive(model, x):
        return
    target = int(reference.argmax())
    start = torch.zeros_like(reference)
    start[0, target] = reference[0, target]
    zennit = [zennit_relevance(model, canonizer.copy(), x, start) for canonizer in (family_canonizer, graph_canonizer)]
    assert bool(torch.isfinite(zennit[0]).all())
    assert relative(*zennit) <= AGREEMENT, f"Zennit relevance differs by {relative(*zennit):.2e}"
    captum = [captum_relevance(model, canonizer.copy(), x, target) for canonizer in (family_canonizer, graph_canonizer)]
    assert relative(*captum) <= AGREEMENT, f"Captum relevance differs by {relative(*captum):.2e}"


@pytest.mark.parametrize("cls", [GraphCanonizer, ResNetCanonizer])
@pytest.mark.parametrize("options", [{}, {"verify": True}, {"verify": False}, {"input_shape": (1, 3, 32, 32)},
                                     {"tolerance": 1e-4, "verify": True}])
def test_the_repr_is_the_constructor_call_with_the_options_that_differ_from_the_class_defaults(cls, options):
    canonizer = cls(**options)
    text = repr(canonizer)
    rebuilt = eval(text, {cls.__name__: cls})
    assert (rebuilt.input_shape, rebuilt.verify, rebuilt.tolerance) == (
        canonizer.input_shape, canonizer.verify, canonizer.tolerance)
    shown = {name for name in ("input_shape", "verify", "tolerance") if f"{name}=" in text}
    defaults = inspect.signature(cls.__init__).parameters
    assert shown == {name for name, value in options.items() if value != defaults[name].default}


def test_the_repr_of_a_subclass_with_its_own_constructor_reads_the_defaults_it_inherits():
    class Paused(ResNetCanonizer):
        def __init__(self) -> None:
            super().__init__()

    assert repr(Paused()) == "Paused()"
    paused = Paused()
    paused.verify = True
    assert repr(paused) == "Paused(verify=True)"
