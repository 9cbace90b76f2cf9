"""A mask does not depend on the rest of its batch: batched runs equal single runs, and permuting the batch
(with its per-sample targets and additional forward arguments) permutes the result.

Tolerance: batched and single model calls reduce in a different order (float32, relative 1e-7 per operation);
the optimisation amplifies such differences over its iterations, bounded here by 1e-4 on mask values in [0, 1]
for these short runs of small models (the exact-area bisection is per row and adds nothing)."""

from __future__ import annotations

import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.extremal.conftest import SmallNet
from xai_plugins.extremal import channel_extremal_perturbation, extremal_perturbation

ATOL = 1e-4
FAST = dict(step=4, sigma=8, max_iter=10)


def _net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet().eval()


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), permutation=st.permutations(range(4)), jitter=st.sampled_from([0, 2]))
@example(seed=0, permutation=[3, 1, 0, 2], jitter=0)
def test_permuting_the_batch_permutes_the_result(seed, permutation, jitter):
    model = _net()
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(4, 3, 16, 16, generator=g)
    targets = torch.randint(0, 5, (4,), generator=g)
    offset = torch.randn(4, 5, generator=g)
    order = torch.tensor(permutation)
    kwargs = dict(areas=(0.1, 0.3), jitter=jitter, seed=1, **FAST)
    plain = extremal_perturbation(model, images, targets, additional_forward_args=(offset,), **kwargs)
    permuted = extremal_perturbation(model, images[order], targets[order], additional_forward_args=(offset[order],),
                                     **kwargs)
    assert torch.allclose(permuted.masks, plain.masks[order], atol=ATOL)
    assert torch.allclose(permuted.rewards, plain.rewards[order], rtol=1e-4, atol=ATOL)
    assert torch.equal(permuted.iterations, plain.iterations[order])


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**16), jitter=st.sampled_from([0, 3]))
def test_a_mask_equals_its_single_image_run(seed, jitter):
    model = _net()
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(3, 3, 24, 20, generator=g)
    targets = [0, 3, 1]
    offset = torch.randn(3, 5, generator=g)
    kwargs = dict(areas=(0.1, 0.3), jitter=jitter, seed=0, **FAST)
    batch = extremal_perturbation(model, images, targets, additional_forward_args=offset, **kwargs)
    for i in range(3):
        single = extremal_perturbation(model, images[i:i + 1], targets[i], additional_forward_args=offset[i:i + 1],
                                       **kwargs)
        assert torch.allclose(batch.masks[i], single.masks[0], atol=ATOL)
        assert batch.iterations[i] == single.iterations[0]


def test_channel_masks_permute_with_the_batch():
    model = _net()
    g = torch.Generator().manual_seed(5)
    images = torch.rand(3, 3, 12, 12, generator=g)
    targets = torch.tensor([4, 0, 2])
    offset = torch.randn(3, 5, generator=g)
    order = torch.tensor([2, 0, 1])
    kwargs = dict(areas=(0.25, 0.5), max_iter=12, seed=0)
    plain = channel_extremal_perturbation(model, images, targets, model.conv2, additional_forward_args=offset,
                                          **kwargs)
    permuted = channel_extremal_perturbation(model, images[order], targets[order], model.conv2,
                                             additional_forward_args=offset[order], **kwargs)
    assert torch.allclose(permuted.masks, plain.masks[order], atol=ATOL)
