"""ChannelPrune: the smaller model computes the zeroed model's function; clear errors; model untouched."""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.support.batchnorm import randomize_batchnorm
from xai_plugins.explainfix import (
    NoSpatialConvError,
    PruneError,
    fix_spatial_filters,
    prune_spatial_filters,
    spatial_convs,
)

from .models import Net1d, NoSpatial, TinyResNet, Untraceable, assert_unchanged, snapshot


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _outputs_match(result, x, train=False):
    zeroed, pruned = result.zeroed.train(train), result.pruned.train(train)
    with torch.no_grad():
        return _relative(pruned(x), zeroed(x))


def _chosen_saliency(model, empty):
    """Saliency 1 everywhere except 0 on the listed (layer, output channels) and (layer, None, input channels)."""
    scores = {n: torch.ones(c.weight.shape[:2]) for n, c in spatial_convs(model)}
    for name, out, inp in empty:
        if out is not None:
            scores[name][out] = 0
        if inp is not None:
            scores[name][:, inp] = 0
    saliency = [scores[n] for n, _ in spatial_convs(model)]
    zeros = sum(int((s == 0).sum()) for s in saliency)
    return saliency, zeros / sum(s.numel() for s in saliency)


def test_emptied_channels_are_removed_through_bn_residuals_concat_and_depthwise():
    torch.manual_seed(0)
    model = randomize_batchnorm(TinyResNet()).eval()
    saliency, fraction = _chosen_saliency(model, [
        ("block1.conv1", [0, 1, 2, 3], None),           # inside a residual block: conv1 -> bn1 -> relu -> conv2
        ("left", [0, 1], None),                         # one branch of the concatenation, then depthwise
        ("stem", [5], None), ("block1.conv2", [5], None), ("block2.conv2", [5], None),  # residual stream
        ("block2.conv1", None, [6]),                    # a channel no consumer reads any more (inputs)
    ])
    before = snapshot(model)
    result = prune_spatial_filters(model, fraction, saliency=saliency, example_input=torch.randn(2, 3, 8, 8))
    assert_unchanged(model, before)
    channels = result.pruned.get_submodule
    assert channels("block1.conv1").out_channels == 4 and channels("block1.conv2").in_channels == 4
    assert channels("block1.bn1").num_features == 4
    assert channels("left").out_channels == 6 and channels("bn_cat").num_features == 14
    assert channels("depthwise").groups == 14 and channels("pointwise").in_channels == 14
    assert channels("stem").out_channels == 7 and channels("block2.conv2").out_channels == 7
    assert channels("block1.conv1").in_channels == 7 and channels("right").in_channels == 7
    assert result.silenced["block1.bn1"] == [0, 1, 2, 3] and result.silenced["bn_cat"] == [0, 1]
    assert result.parameters_after < result.parameters_before
    x = torch.randn(3, 3, 12, 12)
    assert _outputs_match(result, x) < 1e-5
    assert _outputs_match(result, x, train=True) < 1e-5


def test_loader_saliency_at_90_percent_keeps_the_function_with_fewer_parameters():
    torch.manual_seed(1)
    model = randomize_batchnorm(TinyResNet(width=6)).eval()
    g = torch.Generator().manual_seed(0)
    loader = [(torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 10, (4,), generator=g)) for _ in range(2)]
    result = prune_spatial_filters(model, 0.9, loader)
    assert result.zeroed_filters == int(0.9 * result.total_filters)
    zeroed = sum(int((c.weight.flatten(2) == 0).all(2).sum()) for _, c in spatial_convs(result.zeroed))
    assert zeroed >= result.zeroed_filters
    assert result.parameters_after < result.parameters_before
    assert result.max_relative_error < 1e-5
    assert _outputs_match(result, torch.randn(5, 3, 16, 16)) < 1e-5


def test_torchvision_resnet18():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = randomize_batchnorm(torchvision.models.resnet18(weights=None, num_classes=10)).eval()
    result = prune_spatial_filters(model, 0.9, example_input=torch.randn(1, 3, 32, 32))
    assert result.parameters_after < result.parameters_before
    assert _outputs_match(result, torch.randn(2, 3, 32, 32)) < 1e-5


def test_conv1d_model():
    torch.manual_seed(0)
    model = Net1d().eval()
    saliency, fraction = _chosen_saliency(model, [("conv1", [1, 4], None), ("conv2", [2], None)])
    result = prune_spatial_filters(model, fraction, saliency=saliency)
    assert result.pruned.get_submodule("conv1").out_channels == 4
    assert result.pruned.get_submodule("conv2").out_channels == 5
    assert result.pruned.get_submodule("fc").in_features == 20  # flatten of 5 channels x 4 positions
    assert _outputs_match(result, torch.randn(3, 2, 16)) < 1e-5


@pytest.mark.parametrize("fraction", [-0.1, 1, 1.5, float("nan"), "0.5", True])
def test_fraction_outside_0_1_is_refused_and_model_untouched(fraction):
    model = TinyResNet()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"pruning fraction must be a number in \[0, 1\), got"):
        prune_spatial_filters(model, fraction)
    assert_unchanged(model, before)


def test_untraceable_model_names_the_module_that_stopped_the_tracer():
    model = Untraceable()
    before = snapshot(model)
    with pytest.raises(PruneError, match=r"torch.fx could not trace module 'gate' \(DataDependent\): TraceError"):
        prune_spatial_filters(model, 0.5)
    assert_unchanged(model, before)


def test_model_without_spatial_convs_and_bad_saliency():
    with pytest.raises(NoSpatialConvError, match="has no spatial convolution"):
        prune_spatial_filters(NoSpatial(), 0.5)
    model = TinyResNet()
    before = snapshot(model)
    with pytest.raises(PruneError, match=r"saliency must hold one \(out, in/groups\) tensor per spatial convolution"):
        prune_spatial_filters(model, 0.5, saliency=[torch.ones(3, 3)])
    assert_unchanged(model, before)


# float32 summation in a different order (fewer terms after slicing) moves each output by a few ulps of the
# largest partial sums; 1e-5 of the output's largest magnitude is ~80 ulps (2**-23 = 1.2e-7).
FLOAT32_ORDER = 1e-5


def _zero_rows_or_columns(gm) -> list[str]:
    """Spatial convolutions of a pruned model that still hold an all-zero output row or input column."""
    found = []
    for name, conv in spatial_convs(gm):
        if conv.groups != 1:
            continue
        alive = conv.weight.detach().flatten(2).abs().sum(2) > 0
        if (conv.out_channels > 1 and not alive.any(1).all()) or (conv.in_channels > 1 and not alive.any(0).all()):
            found.append(name)
    return found


def _random_saliency(model, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(c.weight.shape[:2], generator=g) for _, c in spatial_convs(model)]


@settings(max_examples=2, deadline=None)
@given(seed=st.integers(0, 2**16), fraction=st.floats(0.6, 0.97))
@example(seed=0, fraction=0.75)
@example(seed=0, fraction=0.9)  # stream cuts: eight channels of the last stage leave the linear head
def test_resnet18_partial_pruning_keeps_the_zeroed_function_and_removes_every_zero_row_and_column(seed, fraction):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(seed)
    model = randomize_batchnorm(torchvision.models.resnet18(weights=None, num_classes=5), seed).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    full = prune_spatial_filters(model, fraction, example_input=x[:1], partial=False)  # L1 saliency
    part = prune_spatial_filters(model, fraction, example_input=x[:1])
    assert _outputs_match(part, x) < FLOAT32_ORDER
    assert part.parameters_after <= full.parameters_after <= part.parameters_before
    assert _zero_rows_or_columns(part.pruned) == []
    assert all(torch.equal(a, b) for a, b in zip(full.zeroed.state_dict().values(), part.zeroed.state_dict().values()))
    cut = prune_spatial_filters(model, fraction, example_input=x[:1], streams=True)
    assert _outputs_match(cut, x) < FLOAT32_ORDER
    if cut.stream_cuts:
        assert cut.parameters_after < part.parameters_after
    else:
        assert cut.parameters_after == part.parameters_after
    for target, sides in cut.stream_cuts.items():  # only 1x1 convolutions and the linear head are cut
        module = cut.zeroed.get_submodule(target)
        assert getattr(module, "kernel_size", (1, 1)) == (1, 1)
        assert (module.weight[sides["out"]] == 0).all() and (module.weight[:, sides["in"]] == 0).all()


def _small_densenet():
    torchvision = pytest.importorskip("torchvision")
    return torchvision.models.DenseNet(growth_rate=6, block_config=(2, 2), num_init_features=8, bn_size=2,
                                       num_classes=4)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), fraction=st.floats(0.3, 0.97), arch=st.sampled_from(["densenet", "tiny"]))
def test_partial_pruning_on_concatenation_and_residual_streams(seed, fraction, arch):
    torch.manual_seed(seed)
    model = _small_densenet() if arch == "densenet" else TinyResNet(width=6)
    model = randomize_batchnorm(model, seed).eval()
    x = torch.randn(3, 3, 24, 24, generator=torch.Generator().manual_seed(seed))
    before = snapshot(model)
    result = prune_spatial_filters(model, fraction, saliency=_random_saliency(model, seed), example_input=x[:1])
    assert_unchanged(model, before)
    assert _outputs_match(result, x) < FLOAT32_ORDER
    assert _outputs_match(result, x, train=True) < FLOAT32_ORDER
    assert _zero_rows_or_columns(result.pruned) == []
    again = prune_spatial_filters(result.pruned, 0.0, example_input=x[:1])  # a pruned model traces again
    assert _outputs_match(again, x) < FLOAT32_ORDER


def test_fill_zero_follows_the_authors_rule():
    from xai_plugins.explainfix.refill import fill_zero

    g = torch.Generator().manual_seed(0)
    weight = torch.randn(400, 50, 3, 3, generator=g) * 0.7 + 0.3
    weight[..., 0, :] = 0                       # partly zero kernels
    weight[:10, :5] = 0                         # entirely zero kernels
    filled = fill_zero(weight, torch.Generator().manual_seed(1))
    kept = weight != 0
    assert torch.equal(filled[kept], weight[kept])
    assert (filled != 0).all()
    partly = weight.clone()
    partly[:10, :5] = 1                         # exclude the entirely zero kernels from the statistics
    mean, std = partly.mean((2, 3), keepdim=True), partly.std((2, 3), keepdim=True)
    z = ((filled - mean) / std)[(weight == 0) & (partly != 1)]
    assert abs(z.mean().item()) < 5 / z.numel() ** 0.5 and abs(z.std().item() - 1) < 5 / z.numel() ** 0.5
    bound = 1 / (50 * 9) ** 0.5                 # Kaiming uniform with a = sqrt(5): U(-1/sqrt(fan_in), ...)
    assert filled[:10, :5].abs().max() <= bound and filled[:10, :5].abs().max() > 0.8 * bound


@pytest.mark.parametrize("refill", ["fill_zero", "dct_basis"])
def test_refill_reinitialises_zero_filters_of_the_pruned_model_only(refill):
    torch.manual_seed(0)
    model = randomize_batchnorm(TinyResNet()).eval()
    fix_spatial_filters(model, "dct_steered", seed=0)
    x = torch.randn(2, 3, 8, 8)
    plain = prune_spatial_filters(model, 0.6, example_input=x)
    result = prune_spatial_filters(model, 0.6, example_input=x, refill=refill, seed=3)
    assert result.refilled > 0 and result.max_relative_error < FLOAT32_ORDER
    for (name, conv), (_, ref) in zip(spatial_convs(result.pruned), spatial_convs(plain.pruned)):
        assert not conv.weight.requires_grad
        empty = ref.weight.flatten(2).abs().sum(2) == 0
        assert (conv.weight.flatten(2).abs().sum(2)[empty] > 0).all(), name
        assert torch.equal(conv.weight[~empty], ref.weight[~empty])
        if refill == "dct_basis" and empty.any():
            norms = conv.weight.flatten(2)[empty].norm(dim=1)
            assert torch.allclose(norms, torch.ones_like(norms), atol=1e-6)
