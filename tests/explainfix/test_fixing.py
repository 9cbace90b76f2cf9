"""fix_spatial_filters: initialise and freeze spatial filters; clear errors leave the model untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xai_plugins.explainfix import NoSpatialConvError, UnknownMethodError, fix_spatial_filters, spatial_convs
from xai_plugins.explainfix.initializers import dct_steered

from .models import Net1d, Net3d, NoSpatial, TinyResNet, assert_unchanged, snapshot

pytestmark = pytest.mark.filterwarnings("ignore::xai_plugins.registry.PluginWarning")


def _spatial_weights(model):
    return {n: c.weight.detach().clone() for n, c in spatial_convs(model)}


def test_spatial_convs_cover_depthwise_non_square_1d_3d_but_not_1x1():
    names = [n for n, _ in spatial_convs(TinyResNet())]
    assert "depthwise" in names and "right" in names and "pointwise" not in names
    assert [n for n, _ in spatial_convs(Net1d())] == ["conv1", "conv2"]
    assert [n for n, _ in spatial_convs(Net3d())] == ["conv"]


@pytest.mark.parametrize("method", ["dct_basis", "dct_steered", "ghaar", "psine"])
def test_fixed_filters_do_not_move_under_training_while_the_rest_learns(method):
    torch.manual_seed(0)
    model = TinyResNet()
    report = fix_spatial_filters(model, method, seed=1)
    fixed = _spatial_weights(model)
    free = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert set(report.layers) == set(fixed)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    params = list(model.parameters())
    for opt in (torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1), torch.optim.AdamW(params, lr=0.01)):
        for _ in range(2):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for name, conv in spatial_convs(model):
        assert torch.equal(conv.weight, fixed[name]), name
        assert conv.weight.grad is None
    moved = [n for n, p in model.named_parameters() if n in free and not torch.equal(p, free[n])]
    assert sorted(moved) == sorted(free)


def test_report_counts_trainable_parameters():
    model = TinyResNet()
    total = sum(p.numel() for p in model.parameters())
    spatial = sum(c.weight.numel() + (c.bias.numel() if c.bias is not None else 0) for _, c in spatial_convs(model))
    report = fix_spatial_filters(model, "dct_steered")
    assert report.total_parameters == total
    assert report.trainable_before == total
    assert report.fixed_parameters == spatial
    assert report.trainable_after == total - spatial == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert "trainable parameters" in str(report) and "'dct_steered'" in str(report)


def test_same_seed_same_filters_and_another_seed_differs():
    a, b, c = TinyResNet(), TinyResNet(), TinyResNet()
    fix_spatial_filters(a, "ghaar", seed=5)
    fix_spatial_filters(b, "ghaar", seed=5)
    fix_spatial_filters(c, "ghaar", seed=6)
    wa, wb, wc = _spatial_weights(a), _spatial_weights(b), _spatial_weights(c)
    assert all(torch.equal(wa[n], wb[n]) for n in wa)
    assert not any(torch.equal(wa[n], wc[n]) for n in wa)


def test_1d_and_3d_models_and_a_callable_method():
    for model in (Net1d(), Net3d()):
        report = fix_spatial_filters(model, dct_steered, seed=0)
        assert report.method == "dct_steered"
        assert all(not c.weight.requires_grad for _, c in spatial_convs(model))


def test_guided_steered_from_a_trained_source_model():
    source = TinyResNet()
    model = TinyResNet()
    report = fix_spatial_filters(model, "guided_steered", seed=0, source=source)
    assert report.method == "guided_steered" and len(report.layers) == 8
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"'guided_steered' is a factory .* source=trained_model"):
        fix_spatial_filters(model, "guided_steered")
    assert_unchanged(model, before)


def test_unknown_method_lists_the_known_ones_and_leaves_the_model():
    model = TinyResNet()
    before = snapshot(model)
    with pytest.raises(UnknownMethodError, match=r"unknown ExplainFix method 'dct'; known initializers: .*dct_basis, "
                                                 r"dct_steered, (.*, )?ghaar, guided_steered, psine"):
        fix_spatial_filters(model, "dct")
    assert_unchanged(model, before)


def test_model_without_spatial_convolutions_is_refused_and_untouched():
    model = NoSpatial()
    before = snapshot(model)
    with pytest.raises(NoSpatialConvError, match="NoSpatial has no spatial convolution"):
        fix_spatial_filters(model, "dct_steered")
    assert_unchanged(model, before)


def test_an_initializer_returning_a_wrong_shape_leaves_the_model_untouched():
    model = TinyResNet()
    before = snapshot(model)
    calls = []

    def bad(shape, generator=None):
        calls.append(shape)
        return torch.zeros(shape) if len(calls) < 3 else torch.zeros(1)

    with pytest.raises(ValueError, match=r"returned \(1,\) for weight shape"):
        fix_spatial_filters(model, bad)
    assert_unchanged(model, before)


def test_training_pipeline_runs_learned_fixed_and_pruned_on_digits():
    pytest.importorskip("sklearn")
    from torch.utils.data import Subset

    from xai_plugins.explainfix.train import digits_datasets, run_experiment

    train_set, test_set = digits_datasets(size=8)
    results = run_experiment(Subset(train_set, range(64)), Subset(test_set, range(32)),
                             arch=lambda: TinyResNet(width=4), epochs=1, finetune_epochs=1, batch_size=32,
                             saliency_batches=1, log=lambda s: None)
    assert results["fixed"]["trainable"] < results["learned"]["trainable"]
    assert results["pruned"]["max_relative_error"] < 1e-5
    assert results["pruned"]["zeroed_filters"] == int(0.9 * results["pruned"]["total_filters"])
    assert 0 <= results["pruned"]["accuracy"] <= 100
