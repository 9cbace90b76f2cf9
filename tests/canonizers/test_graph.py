"""The graph canonizer: function unchanged, bitwise restore and conservation on torchvision and timm CNNs and on
random small networks; clear errors for what it cannot canonize; the plan cache, the table and the command."""

from __future__ import annotations

import argparse
import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from tests.canonizers.graph_models import TIMM_CI, TORCHVISION_CI, build, input_size, torchvision_cnns
from tests.support.batchnorm import calibrate_batchnorm, randomize_batchnorm, rounding_sensitivity
from tests.support.canonizers import assert_same
from xai_plugins.canonizers import graph
from xai_plugins.canonizers.graph import (
    CanonizationMismatchError,
    GraphCanonizer,
    UnsupportedModelError,
    UntraceableModelError,
    explain_canonization,
)
from xai_plugins.canonizers.modules import Concat, Gate, Sum
from xai_plugins.conformance.state import snapshot

pytest.importorskip("torchvision")
FULL = os.environ.get("XAI_PLUGINS_FULL_SWEEP") == "1"
TIMM = pytest.importorskip("timm") is not None
TOLERANCE = 1e-5
"""The issue's bound on the relative output change (max |Δy| / max |y|)."""
CONSERVATION = 0.01
"""The issue's bound on |Σ relevance / logit − 1|."""
CONDITIONED = CONSERVATION / 100
"""Largest float32 rounding sensitivity (``rounding_sensitivity``) at which a sweep model's conservation is
judged in float32; a model that amplifies rounding more is judged in float64, where the same amplification
leaves it 1e-9 times smaller (a canonical float32 model of such a network computes a different number than the
original, by as much as the original differs from itself under one-ulp input changes)."""

SWEEP = [f"torchvision:{name}" for name in (torchvision_cnns() if FULL else TORCHVISION_CI)] + \
    [f"timm:{name}" for name in TIMM_CI]

CONSERVATION_GAPS = {
    ("torchvision:alexnet", "zennit"): "random-init dense layers have units whose bias-free weighted sum (~3e-7) is "
                                       "below the rules' epsilon (1e-6) and which carry relevance of both signs far "
                                       "larger than the logit; the epsilons absorb part of it (seed 2: 1.017; the "
                                       "same input x 1000: 1.000001)",
    ("torchvision:alexnet", "captum"): "the same units as with Zennit, absorbed by the dense layers' epsilon "
                                       "(seed 2: 1.012; with epsilon 0 in float64: 1 - 5e-12, "
                                       "test_alexnet_gap_is_the_dense_layers_epsilon)",
}
"""(model, host) pairs whose measured conservation misses the issue's 0.01 (numbers in docs/canonizers.md)."""
HEAVY = ("torchvision:alexnet", "torchvision:vgg11_bn", "torchvision:resnext50_32x4d", "torchvision:densenet121",
         "timm:cspdarknet53", "timm:hrnet_w18_small")
"""Covered by the function sweep in CI; their conservation runs with XAI_PLUGINS_FULL_SWEEP=1 (tens of
seconds each on a shared two-core machine)."""
CONSERVATION_SWEEP = [spec for spec in SWEEP if FULL or spec not in HEAVY]


def model_for(spec: str) -> nn.Module:
    return build(spec)


def relative(output: torch.Tensor, reference: torch.Tensor) -> float:
    return float((output - reference).abs().max() / reference.abs().max())


@pytest.mark.parametrize("spec", SWEEP)
def test_function_unchanged_and_restored_bitwise(spec: str) -> None:
    model = randomize_batchnorm(model_for(spec), seed=1)
    size = input_size(spec)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = model(x)
    before = snapshot(model)
    canonizer = GraphCanonizer(input_shape=(1, 3, size, size))
    canonizer.apply(model)
    with torch.no_grad():
        output = model(x)
    assert relative(output, reference) <= TOLERANCE, f"{spec}: relative output change {relative(output, reference)}"
    table = explain_canonization(model_for(spec), (1, 3, size, size))
    merged = {row.module for row in table if row.action == "merged"}
    for name, bn in model.named_modules():
        if isinstance(bn, _BatchNorm) and name in merged:
            probe = torch.randn(2, bn.num_features, 3, 3)
            assert torch.equal(bn(probe), probe), f"{spec}: merged {name} still has an effect"
    canonizer.remove()
    assert_same(before, snapshot(model))
    with torch.no_grad():
        assert torch.equal(model(x), reference)


def _zennit_ratio(model: nn.Module, x: torch.Tensor, target: int, logit: float) -> float:
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    from xai_plugins_zennit.canonizers import for_zennit

    composite = EpsilonPlusFlat(zero_params="bias", canonizers=[for_zennit(GraphCanonizer())])
    with torch.no_grad():
        output = model(x)
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x, torch.eye(output.shape[1])[[target]] * output)
    return float(relevance.sum()) / logit


def _captum_ratio(model: nn.Module, x: torch.Tensor, target: int, logit: float) -> float:
    from captum.attr import LRP

    from xai_plugins_captum import canonized

    with canonized(model, canonizers=[GraphCanonizer()]):
        attribution = LRP(model).attribute(x, target=target)
    return float(attribution.sum()) / logit


def _ratio(host: str, model: nn.Module, x: torch.Tensor, target: int, logit: float) -> float | str:
    try:
        return (_zennit_ratio if host == "zennit" else _captum_ratio)(model, x, target, logit)
    except RuntimeError as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("spec", CONSERVATION_SWEEP)
def test_conservation_zennit_and_captum(spec: str) -> None:
    """|Σ relevance / logit − 1| ≤ 0.01 with EpsilonPlusFlat(zero_params='bias') and with Captum's LRP inside
    canonized, on a live network (calibrated statistics), in float32 unless the network amplifies float32
    rounding beyond ``CONDITIONED``; known gaps are expected failures of that host only."""
    pytest.importorskip("zennit")
    pytest.importorskip("captum")
    size = input_size(spec)
    model = calibrate_batchnorm(model_for(spec), size)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    if rounding_sensitivity(model, x) > CONDITIONED:
        model, x = model.double(), x.double()
        assert rounding_sensitivity(model, x) <= CONDITIONED, f"{spec}: chaotic even in float64"
    with torch.no_grad():
        output, blank = model(x), model(torch.zeros_like(x))
    target = int(output.argmax())
    logit = float(output[0, target])
    assert float((output - blank).abs().max()) > 1e-3 * float(output.abs().max()), f"{spec}: network is dead"
    before = snapshot(model)
    gaps = []
    for host in ("zennit", "captum"):
        ratio = _ratio(host, model, x, target, logit)
        assert_same(before, snapshot(model))
        good = not isinstance(ratio, str) and abs(ratio - 1) <= CONSERVATION
        if (spec, host) in CONSERVATION_GAPS:
            gaps.append(f"{host}: {CONSERVATION_GAPS[spec, host]} ({ratio})")
        else:
            assert good, f"{spec}: {host} Σ relevance / logit = {ratio}"
    if gaps:
        pytest.xfail("; ".join(gaps))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_alexnet_gap_is_the_dense_layers_epsilon() -> None:
    """AlexNet's known gap is the stated epsilon, not the canonizer or the rules: in float64, on the input where
    the gap shows (seed 2), Captum's LRP misses by more than the tolerance with the dense layers' epsilon 1e-6
    and conserves to float64 rounding (1e-9) with epsilon 0."""
    pytest.importorskip("captum")
    from captum.attr import LRP

    from xai_plugins_captum import canonized
    from xai_plugins_captum.canonizers import CANONIZED_RULES
    from xai_plugins_captum.rules import ZeroBiasEpsilonRule

    model = calibrate_batchnorm(build("torchvision:alexnet"), 64).double()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))[:1].double()
    with torch.no_grad():
        output = model(x)
    target = int(output.argmax())
    ratios = {}
    for epsilon in (1e-6, 0.0):
        rules = {**CANONIZED_RULES, nn.Linear: lambda epsilon=epsilon: ZeroBiasEpsilonRule(epsilon)}
        with canonized(model, canonizers=[GraphCanonizer()], rules=rules):
            ratios[epsilon] = float(LRP(model).attribute(x, target=target).sum() / output[0, target])
    assert abs(ratios[1e-6] - 1) > CONSERVATION
    assert abs(ratios[0.0] - 1) <= 1e-9


# -- random small networks: every merge geometry, sums, concatenations, gates, functional calls -------------

class RandomNet(nn.Module):
    """A stem, then blocks of the drawn kinds, then a functional head; written the way users write models."""

    def __init__(self, width: int, blocks: list[tuple[str, int, int, int]], classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        self.kinds = [kind for kind, *_ in blocks]
        self.blocks = nn.ModuleList()
        channels = width
        for kind, kernel, dilation, groups in blocks:
            padding = dilation * (kernel - 1) // 2
            if kind == "post":  # conv → BN → ReLU, residual sum
                block = nn.ModuleDict({"conv": nn.Conv2d(channels, channels, kernel, padding=padding,
                                                         dilation=dilation, groups=groups),
                                       "bn": nn.BatchNorm2d(channels)})
            elif kind == "pre":  # BN → ReLU → conv (zero padded, grouped, dilated), concatenation
                block = nn.ModuleDict({"bn": nn.BatchNorm2d(channels),
                                       "conv": nn.Conv2d(channels, groups * 2, kernel, padding=padding,
                                                         dilation=dilation, groups=groups, bias=False)})
                channels += groups * 2
            elif kind == "down":  # BN → ReLU → strided conv, padded by one less than "same" if dilated
                block = nn.ModuleDict({"bn": nn.BatchNorm2d(channels),
                                       "conv": nn.Conv2d(channels, channels, kernel, stride=2,
                                                         padding=max(padding - dilation + 1, 0),
                                                         dilation=dilation)})
            else:  # squeeze-and-excitation with functional calls
                block = nn.ModuleDict({"fc": nn.Conv2d(channels, channels, 1)})
            self.blocks.append(block)
        self.norm = nn.BatchNorm2d(channels)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        for kind, block in zip(self.kinds, self.blocks):
            if kind == "post":
                x = F.relu(block["bn"](block["conv"](x)) + x)
            elif kind == "pre":
                x = torch.cat([x, block["conv"](F.relu(block["bn"](x)))], 1)
            elif kind == "down":
                x = block["conv"](F.relu(block["bn"](x)))
            else:
                x = x * torch.sigmoid(block["fc"](x.mean((2, 3), keepdim=True)))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(F.relu(self.norm(x)), 1), 1))


BLOCKS = st.tuples(st.sampled_from(["post", "pre", "down", "se"]), st.sampled_from([1, 3, 5]),
                   st.sampled_from([1, 2]), st.sampled_from([1, 2]))


def _runs_at(blocks: list[tuple[str, int, int, int]], size: int) -> bool:
    """Whether every strided convolution of ``RandomNet(blocks)`` fits its padded input at ``size`` pixels
    (three dilated downsamplings leave too few pixels for the last kernel at the smallest sizes)."""
    for kind, kernel, dilation, _ in blocks:
        if kind == "down":
            padding = max(dilation * (kernel - 1) // 2 - dilation + 1, 0)
            span = dilation * (kernel - 1) + 1
            if size + 2 * padding < span:
                return False
            size = (size + 2 * padding - span) // 2 + 1
    return True


@settings(max_examples=25, deadline=None)
@given(blocks=st.lists(BLOCKS, min_size=1, max_size=4), seed=st.integers(0, 2**16), size=st.integers(12, 20))
def test_random_networks_keep_their_function_and_are_restored(blocks, seed: int, size: int) -> None:
    """Function within 1e-5 relative (float32 rounding of one merged weight per layer in a shallow network) and
    bitwise restore, with negative and zero BatchNorm scales, for every drawn geometry."""
    assume(_runs_at(blocks, size))
    torch.manual_seed(seed)
    model = randomize_batchnorm(RandomNet(4, blocks), seed=seed)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        reference = model(x)
    before = snapshot(model)
    canonizer = GraphCanonizer(input_shape=(1, 3, size, size))
    canonizer.apply(model)
    with torch.no_grad():
        output = model(x)
    assert relative(output, reference) <= TOLERANCE
    kinds = {type(module) for module in model.modules()}
    assert Sum in kinds or "post" not in model.kinds
    assert Concat in kinds or "pre" not in model.kinds
    assert Gate in kinds or "se" not in model.kinds
    table = explain_canonization(RandomNet(4, blocks).eval(), (1, 3, size, size))
    assert not [row for row in table if row.action in ("left", "unsupported")], str(table)
    canonizer.remove()
    assert_same(before, snapshot(model))


@settings(max_examples=10, deadline=None)
@given(blocks=st.lists(BLOCKS, min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_a_float64_model_is_probed_in_float64(blocks, seed: int) -> None:
    """The probe takes the model's dtype: a float64 model keeps its function to the same number of units of
    rounding as a float32 one (``TOLERANCE`` scaled by the ratio of the two machine epsilons) and is restored
    bitwise, also with the input shape inferred."""
    torch.manual_seed(seed)
    model = randomize_batchnorm(RandomNet(4, blocks), seed=seed).double()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        reference = model(x)
    before = snapshot(model)
    canonizer = GraphCanonizer()
    canonizer.apply(model)
    with torch.no_grad():
        output = model(x)
    assert output.dtype == torch.float64
    assert relative(output, reference) <= TOLERANCE * torch.finfo(torch.float64).eps / torch.finfo(torch.float32).eps
    canonizer.remove()
    assert_same(before, snapshot(model))


# -- errors ------------------------------------------------------------------------------------------------

class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.conv(x).flatten(2).transpose(1, 2)
        return self.attention(tokens, tokens, tokens)[0].mean(1)


class _Branchy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.block = _Branchy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.conv(x))


class _InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        y = F.relu(x, inplace=True)  # changes x too: the explicit ReLU module would not
        return x + y


def _refused(model: nn.Module, error: type[Exception], match: str, **kwargs) -> None:
    before = snapshot(model)
    with pytest.raises(error, match=match):
        GraphCanonizer(**kwargs).apply(model)
    assert_same(before, snapshot(model))
    assert "forward" not in model.__dict__


def test_layernorm_models_are_refused_naming_the_node_and_module() -> None:
    model = build("timm:convnext_atto")
    _refused(model, UnsupportedModelError, r"node 'stem_1' in module 'stem\.1': LayerNorm2d")


def test_vit_and_swin_are_refused_naming_the_first_unsupported_node() -> None:
    import timm
    import torchvision

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=10).eval()
    _refused(vit, UnsupportedModelError, r"module 'blocks\.0\.norm1': LayerNorm", input_shape=(1, 3, 32, 32))
    torch.manual_seed(0)
    swin = torchvision.models.swin_t(num_classes=10).eval()
    _refused(swin, UnsupportedModelError, r"module 'features\.0\.2': LayerNorm", input_shape=(1, 3, 32, 32))


def test_attention_is_refused() -> None:
    _refused(_Attention().eval(), UnsupportedModelError, r"module 'attention': MultiheadAttention",
             input_shape=(1, 3, 8, 8))


def test_untraceable_model_names_the_module() -> None:
    _refused(_Untraceable().eval(), UntraceableModelError, r"forward of module 'block' \(tests\.canonizers")


def test_output_mismatch_is_refused_and_the_model_untouched() -> None:
    _refused(_InPlace().eval(), CanonizationMismatchError, "differs from the original", input_shape=(1, 3, 8, 8))


def test_an_ill_conditioned_model_within_its_own_rounding_is_accepted() -> None:
    """Calibrated, ShuffleNetV2 x2.0 moves its output by ~2e-4 (relative) under a one-ulp change of its input;
    its canonical form is as far from it (the merged weights rounded once), beyond the tolerance but within that
    rounding, so it is accepted, and removing it restores the model bitwise."""
    model = calibrate_batchnorm(build("torchvision:shufflenet_v2_x2_0"), 64)
    probe = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model(probe)
    before = snapshot(model)
    canonizer = GraphCanonizer(input_shape=(1, 3, 64, 64))
    canonizer.apply(model)
    with torch.no_grad():
        assert relative(model(probe), reference) > TOLERANCE  # the case the rounding allowance exists for
    canonizer.remove()
    assert_same(before, snapshot(model))


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32).filter(lambda v: v != 0), min_size=1,
                       max_size=64), double=st.booleans())
def test_the_rounding_probe_moves_every_value_by_exactly_one_ulp(values: list[float], double: bool) -> None:
    """The verification's noise measure moves every non-zero finite value to one of its two float neighbours."""
    value = torch.tensor(values, dtype=torch.float64 if double else torch.float32)
    moved = graph._one_ulp_away(value)
    up = torch.nextafter(value, torch.full_like(value, float("inf")))
    down = torch.nextafter(value, torch.full_like(value, float("-inf")))
    assert bool(((moved == up) | (moved == down)).all())
    assert bool((moved != value).all())


def test_training_mode_is_refused() -> None:
    _refused(build("torchvision:resnet18").train(), ValueError, r"model\.eval\(\)")


# -- cache, hand-written families, table, command -------------------------------------------------------------

def test_second_apply_does_not_trace_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = graph.trace
    monkeypatch.setattr(graph, "trace", lambda model: calls.append(1) or real(model))
    first, second = (randomize_batchnorm(RandomNet(4, [("post", 3, 1, 2), ("pre", 3, 2, 1)]), seed=s)
                     for s in (0, 1))
    graph._PLANS.clear()
    for model in (first, second, first):
        canonizer = GraphCanonizer(input_shape=(1, 3, 12, 12))
        canonizer.apply(model)
        canonizer.remove()
    assert len(calls) == 1


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", ["resnet18", "densenet121", "vgg16_bn", "regnet_y_400mf"])
def test_agrees_with_the_hand_written_family(name: str) -> None:
    """Relevance (EpsilonPlusFlat) with the hand-written canonizer and with the graph canonizer, within 1e-5 of
    the largest relevance (both merge the same BatchNorms into the same layers, in float32)."""
    pytest.importorskip("zennit")
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    from xai_plugins_zennit.canonizers import canonizers_for, for_zennit

    model = calibrate_batchnorm(build(f"torchvision:{name}"), 32)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        start = torch.eye(10)[[int(model(x).argmax())]]
    relevances = []
    for canonizers in (canonizers_for(model), [for_zennit(GraphCanonizer())]):
        with Gradient(model, EpsilonPlusFlat(zero_params="bias", canonizers=canonizers)) as attributor:
            relevances.append(attributor(x, start)[1])
    hand, auto = relevances
    assert float((hand - auto).abs().max()) <= 1e-5 * float(hand.abs().max())


def test_canonizers_for_falls_back_to_the_graph_canonizer() -> None:
    from xai_plugins.canonizers import canonizers_for

    assert [type(c) for c in canonizers_for(build("torchvision:mnasnet0_5"))] == [GraphCanonizer]
    assert type(canonizers_for(build("torchvision:resnet18"))[0]).__name__ == "ResNetCanonizer"
    with pytest.raises(ValueError, match="graph canonizer cannot canonize it either: node 'stem_1'"):
        canonizers_for(build("timm:convnext_atto"))


def test_table_lists_merges_explicit_modules_and_splits() -> None:
    table = explain_canonization(build("timm:seresnet18"))
    counts = table.counts()
    assert counts["merged"] == 20 and "unsupported" not in counts and "left" not in counts
    assert any(row.action == "explicit" and "Gate" in row.detail for row in table)
    text = str(table)
    assert text.splitlines()[0].split() == ["action", "node", "module", "detail"]
    assert "20 merged" in text.splitlines()[-1]
    split = explain_canonization(build("timm:resnetv2_18"))
    assert any(row.action == "split" and "act" in row.detail for row in split)


def _command(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    from xai_plugins.canonizers.cli import register_commands

    parser = argparse.ArgumentParser()
    register_commands(parser.add_subparsers())
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr().out


def test_canonize_command_prints_the_table(capsys: pytest.CaptureFixture) -> None:
    code, out = _command(["canonize", "--model", "torchvision:mnasnet0_5"], capsys)
    assert code == 0 and "merged" in out and "Sum" in out
    code, out = _command(["canonize", "--model", "timm:convnext_atto"], capsys)
    assert code == 1 and "unsupported" in out and "LayerNorm2d" in out


def test_the_plan_cache_fingerprint_sees_scalar_tuples_of_any_tuple_type() -> None:
    """A forward can branch on a tuple attribute of scalars, a named tuple included: models that differ only
    there get different fingerprints, so they do not share a cached canonical forward."""
    from collections import namedtuple

    from xai_plugins.canonizers.graph_trace import fingerprint

    Config = namedtuple("Config", "mode scale")

    def with_config(config: tuple) -> nn.Module:
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        model.config = config
        return model

    assert fingerprint(with_config(Config("a", 1))) != fingerprint(with_config(Config("b", 1)))
    assert fingerprint(with_config(("a", 1))) != fingerprint(with_config(("b", 1)))
    assert fingerprint(with_config(Config("a", 1))) == fingerprint(with_config(Config("a", 1)))
