"""ChannelPrune: the smaller model computes the zeroed model's function; clear errors; model untouched."""

from __future__ import annotations

import pytest
import torch

from xai_plugins.explainfix import NoSpatialConvError, PruneError, prune_spatial_filters, spatial_convs

from .models import Net1d, NoSpatial, TinyResNet, Untraceable, assert_unchanged, randomize_batchnorm, snapshot


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
