"""Bad input gets a clear error (or warning) naming the fix, and the model is left untouched."""

from __future__ import annotations

import re

import pytest
import torch

from tests.extremal.conftest import assert_same, snapshot
from xai_plugins.extremal import channel_extremal_perturbation, extremal_perturbation

IMAGES = torch.rand(2, 3, 16, 16)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(target=7), ValueError,
     "target 7 is out of range for a model output with 5 channels; targets must be in [0, 4]"),
    (dict(target=[0, -1]), ValueError,
     "target -1 is out of range for a model output with 5 channels; targets must be in [0, 4]"),
    (dict(target=[0, 1, 2]), ValueError,
     "got 3 targets for a batch of 2 inputs; pass one target per sample or a single int for all"),
    (dict(target=None), ValueError,
     "target is None; pass the output channel to explain as an int, a list of N ints or a tensor of shape (N,)"),
    (dict(target=torch.tensor([0.5, 1.0])), TypeError,
     "target must hold integers; got a tensor of dtype torch.float32"),
    (dict(areas=(0.1, 1.0)), ValueError,
     "area 1.0 is outside (0, 1); areas are fractions of the image (or of the channels) kept by the mask, "
     "e.g. areas=(0.05, 0.1, 0.2)"),
    (dict(areas=0.0), ValueError, "area 0.0 is outside (0, 1)"),
    (dict(areas=()), ValueError, "areas is empty; pass at least one area fraction in (0, 1), e.g. areas=(0.1,)"),
    (dict(variant="keep"), ValueError, "variant must be one of ('preserve', 'delete', 'dual'); got 'keep'"),
    (dict(perturbation="noise"), ValueError, "perturbation must be one of ('blur', 'fade'); got 'noise'"),
    (dict(momentum=0.9), TypeError,
     "extremal_perturbation got unexpected keyword argument(s) ['momentum']; see help(extremal_perturbation)"),
    (dict(reward="max"), ValueError, "reward must be one of ('simple', 'contrastive') or a callable"),
    (dict(reward_scale=0.0), ValueError, "reward_scale must be a positive number or None; got 0.0"),
    (dict(values_per_pass=0), ValueError,
     "values_per_pass is the most input values one model pass may hold, a positive int, or None for one pass "
     "over all active rows (e.g. on a GPU); got 0"),
    (dict(values_per_pass=True), ValueError, "values_per_pass is the most input values one model pass may hold"),
    (dict(inputs=torch.rand(3, 16, 16)), ValueError,
     "extremal_perturbation expects a batch of images of shape (N, C, H, W); got inputs of shape (3, 16, 16). "
     "Add the batch dimension with inputs.unsqueeze(0) for a single image, or use channel_extremal_perturbation "
     "to explain a layer of a model whose inputs are not images"),
    (dict(inputs=torch.ones(1, 3, 8, 8, dtype=torch.long)), TypeError,
     "extremal_perturbation expects floating-point inputs; got dtype torch.int64. Convert with inputs.float()"),
])
def test_bad_input(small_net, kwargs, error, message):
    call = dict(inputs=IMAGES, target=0)
    call.update(kwargs)
    before = snapshot(small_net)
    with pytest.raises(error, match=re.escape(message)):
        extremal_perturbation(small_net, call.pop("inputs"), call.pop("target"), max_iter=2, **call)
    assert_same(small_net, before)


def test_non_finite_model_output(small_net):
    before = snapshot(small_net)
    with pytest.raises(ValueError, match=re.escape(
            "the model output on the unperturbed inputs is not finite (NaN or inf); check the inputs and the "
            "model (e.g. normalisation, weights) before explaining it")):
        extremal_perturbation(small_net, torch.full((1, 3, 8, 8), float("nan")), 0, max_iter=2)
    assert_same(small_net, before)


def test_non_finite_reward_during_optimisation(small_net):
    def fragile(x):
        out = small_net(x)
        return out if x.shape[0] == 1 else out * float("inf")

    with pytest.raises(FloatingPointError, match="the reward became non-finite at iteration 0"):
        extremal_perturbation(fragile, torch.rand(1, 3, 8, 8), 0, areas=(0.1, 0.2), max_iter=2)


def test_model_returning_a_vector(small_net):
    with pytest.raises(ValueError, match=re.escape(
            "the model must return a tensor of shape (N, num_classes) or (N, C, ...); got (2,)")):
        extremal_perturbation(lambda x: x.sum(dim=(1, 2, 3)), IMAGES, 0, max_iter=2)


def test_channel_variant_messages(small_net):
    before = snapshot(small_net)
    with pytest.raises(ValueError, match=re.escape(
            "channel extremal perturbation needs a layer whose output has a channel dimension, shape (N, K, ...); "
            "Flatten returned (2,)")):
        model = torch.nn.Sequential(torch.nn.Flatten(0), torch.nn.Unflatten(0, (2, -1)))
        channel_extremal_perturbation(lambda x: model(x.sum(dim=(1, 2, 3))), IMAGES, 0, model[0], max_iter=2)
    with pytest.raises(ValueError, match=re.escape(
            "the layer Linear was not called during the forward pass; pass a submodule of the model that "
            "computes the output")):
        channel_extremal_perturbation(small_net, IMAGES, 0, torch.nn.Linear(2, 2), max_iter=2)
    with pytest.raises(ValueError, match=re.escape(
            "area 0.01 keeps no channel of a layer with 8 channels; use an area of at least 0.0625")):
        channel_extremal_perturbation(small_net, IMAGES, 0, small_net.conv2, areas=0.01, max_iter=2)
    with pytest.raises(ValueError, match=re.escape("values_per_pass is the most input values one model pass may hold, "
                                                   "a positive int, or None for one pass over all active rows")):
        channel_extremal_perturbation(small_net, IMAGES, 0, small_net.conv2, values_per_pass=2.5, max_iter=2)
    with pytest.raises(ValueError, match=re.escape(
            "channel extremal perturbation needs a layer: the model has no nn.Conv2d to use by default; "
            "pass layer=model.<submodule>")):
        channel_extremal_perturbation(torch.nn.Linear(4, 3), torch.rand(2, 4), 0, max_iter=2)
    assert_same(small_net, before)
