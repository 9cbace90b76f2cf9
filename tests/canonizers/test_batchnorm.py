"""BatchNorm merging, generic canonizers: exactness in both directions, borders, thresholds, groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.support.batchnorm import randomize_batchnorm
from tests.support.canonizers import assert_same
from xai_plugins.canonizers import (
    MergeBatchNorm,
    MergeBatchNormFollowing,
    MergeBatchNormPreceding,
    PositionalBiasConv2d,
    ThresholdReLU,
)
from xai_plugins.conformance.state import snapshot


def _check(model: nn.Module, canonizer, x: torch.Tensor, tolerance: float = 1e-5) -> nn.Module:
    with torch.no_grad():
        reference = model(x)
    before = snapshot(model)
    canonizer.apply(model)
    with torch.no_grad():
        canonized = model(x)
    error = (canonized - reference).abs().max() / reference.abs().max()
    assert error <= tolerance, f"relative output change {error:.2e}"
    for bn in (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        probe = torch.randn(2, bn.num_features, *([3] * (bn.running_mean.dim() + (bn.__class__ is nn.BatchNorm2d))))
        assert torch.equal(bn(probe), probe)
    structure = [type(m) for m in model.modules()]
    canonizer.remove()
    assert_same(before, snapshot(model))
    return structure


def test_preceding_conv_linear_grouped_and_transposed() -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, groups=4, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.ConvTranspose2d(8, 6, 2, stride=2), nn.BatchNorm2d(6), nn.Flatten(),
        nn.Linear(6 * 16 * 16, 12), nn.BatchNorm1d(12)), seed=1)
    canonizer = MergeBatchNormPreceding()
    assert canonizer.find_pairs(model) == [("0", "1"), ("3", "4"), ("6", "7"), ("9", "10")]
    _check(model, canonizer, torch.randn(2, 3, 8, 8))


def test_following_padded_conv_is_exact_at_the_borders() -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(nn.Sequential(
        nn.Conv2d(3, 8, 1), nn.ReLU(), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 6, 5, padding=2, dilation=1, stride=2)), seed=2)
    canonizer = MergeBatchNormFollowing()
    assert canonizer.find_triples(model) == [("2", "3", "4")]
    structure = _check(model, canonizer, torch.randn(2, 3, 11, 9))
    assert ThresholdReLU in structure and PositionalBiasConv2d in structure


@pytest.mark.parametrize("padding", [0, 1, "same"])
def test_following_without_relu_grouped(padding) -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(nn.Sequential(
        nn.Conv2d(3, 8, 1), nn.ReLU(), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 3, padding=padding, groups=2)), seed=3)
    structure = _check(model, MergeBatchNormFollowing(triples=[("2", None, "3")]), torch.randn(2, 3, 7, 7))
    assert (PositionalBiasConv2d in structure) == (padding != 0)


def test_following_with_negative_and_zero_gamma_uses_flipped_thresholds() -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(nn.Sequential(
        nn.Conv2d(3, 16, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 4, 3, padding=1)), seed=4)
    bn = model[1]
    assert (bn.weight < 0).any() and (bn.weight == 0).any()
    canonizer = MergeBatchNormFollowing(triples=[("1", "2", "3")])
    _check(model, canonizer, torch.randn(2, 3, 6, 6))


def test_threshold_relu_construction() -> None:
    torch.manual_seed(0)
    a = torch.tensor([2.0, -0.5, 0.0, 1.0])
    b = torch.tensor([0.3, 0.4, 0.7, -0.2])
    x = torch.randn(5, 4, 3, 3)
    safe = torch.where(a == 0, torch.ones_like(a), a)
    t = torch.where(a == 0, torch.zeros_like(a), -b / safe)
    y = ThresholdReLU(t, flip=a < 0)(x)
    d = torch.where(a == 0, b.clamp(min=0), b)
    view = (1, -1, 1, 1)
    assert torch.allclose(torch.relu(a.view(view) * x + b.view(view)), a.view(view) * y + d.view(view), atol=1e-6)


def test_merge_through_global_pooling_into_linear() -> None:
    """The DenseNet head: BN → ReLU → global average pooling → flatten → Linear."""
    from xai_plugins.canonizers.base import Canonizer
    from xai_plugins.canonizers.batchnorm import merge_following

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn, self.relu = nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU()
            self.pool, self.flat, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.flat(self.pool(self.relu(self.bn(self.conv(x))))))

    class HeadCanonizer(Canonizer):
        def canonize(self, model: nn.Module) -> None:
            merge_following(self, (model, "bn"), (model, "relu"), (model, "fc"), (model.pool, model.flat))

    torch.manual_seed(0)
    _check(randomize_batchnorm(Head(), seed=5), HeadCanonizer(), torch.randn(2, 3, 6, 6))


def test_merge_batchnorm_picks_both_directions() -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1)), seed=6)
    structure = _check(model, MergeBatchNorm(), torch.randn(2, 3, 8, 8))
    assert structure.count(ThresholdReLU) == 1


def test_untraceable_model_gets_a_clear_error() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.conv(x)) if x.sum() > 0 else x

    model = Branchy().eval()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match=r"could not trace Branchy with torch.fx .*pairs=\["):
        MergeBatchNormPreceding().apply(model)
    assert_same(before, snapshot(model))
    canonizer = MergeBatchNormPreceding(pairs=[("conv", "bn")])
    model.bn.running_mean.fill_(0.5)
    with torch.no_grad():
        x = torch.rand(1, 3, 4, 4)
        reference = model(x)
        canonizer.apply(model)
        assert torch.allclose(model(x), reference, atol=1e-6)
    canonizer.remove()
    assert canonizer.copy().pairs == [("conv", "bn")]


def test_unknown_module_name_is_reported() -> None:
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)).eval()
    with pytest.raises(ValueError, match="has no submodule 'features.0'"):
        MergeBatchNormPreceding(pairs=[("features.0", "1")]).apply(model)


class _Between(nn.Module):
    """BN → ReLU → 1x1 conv (or Linear) → BN: a layer that takes a following and a preceding merge."""

    def __init__(self, linear: bool = False, padding: int = 0) -> None:
        super().__init__()
        self.bn_in, self.relu = (nn.BatchNorm1d(6), nn.ReLU()) if linear else (nn.BatchNorm2d(6), nn.ReLU())
        self.layer = nn.Linear(6, 5) if linear else nn.Conv2d(6, 5, 1 + 2 * padding, padding=padding)
        self.bn_out = nn.BatchNorm1d(5) if linear else nn.BatchNorm2d(5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_out(self.layer(self.relu(self.bn_in(x))))


def _merge_both_sides():
    from xai_plugins.canonizers.base import Canonizer
    from xai_plugins.canonizers.batchnorm import merge_following, merge_preceding

    class Both(Canonizer):
        def canonize(self, module: nn.Module) -> None:
            merge_following(self, (module, "bn_in"), (module, "relu"), (module, "layer"))
            merge_preceding(self, (module, "layer"), (module, "bn_out"))

    return Both()


@pytest.mark.parametrize(("linear", "padding"), [(False, 0), (True, 0), (False, 1)])
def test_layer_between_two_batchnorms_is_exact_with_flipped_and_zero_scales(linear: bool, padding: int) -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(_Between(linear, padding), seed=7)
    for bn in (model.bn_in, model.bn_out):
        bn.weight.data[1] = -0.7  # a negative scale (flipped threshold) next to the zero one at index 0
    structure = _check(model, _merge_both_sides(), torch.randn(4, 6) if linear else torch.randn(2, 6, 4, 4))
    assert structure.count(ThresholdReLU) == 1
    assert (PositionalBiasConv2d in structure) == bool(padding)


def test_layer_between_two_batchnorms_checks_channels() -> None:
    model = _Between().eval()
    model.bn_out = nn.BatchNorm2d(4).eval()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"cannot merge BatchNorm2d\(4\) into Conv2d with 5 output channels: "
                                         "channel counts differ"):
        _merge_both_sides().apply(model)
    assert_same(before, snapshot(model))
