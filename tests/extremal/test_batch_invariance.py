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
from xai_plugins.extremal import channel_extremal_perturbation, extremal_perturbation, optimiser

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


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 40), row_size=st.integers(1, 5000), budget=st.integers(1, 20000),
       variant=st.sampled_from(["preserve", "delete", "dual"]))
def test_row_passes_cover_the_rows_in_order_within_the_budget(rows, row_size, budget, variant):
    passes = optimiser.row_passes(torch.arange(rows), row_size, variant, budget)
    assert torch.equal(torch.cat(passes), torch.arange(rows))
    per_row = row_size * (2 if variant == "dual" else 1)
    assert all(len(chunk) * per_row <= budget or len(chunk) == 1 for chunk in passes)
    assert len(passes) == -(-rows // max(1, budget // per_row))


class _OneSampleAtATime(torch.nn.Module):
    """``net`` run on each sample alone: its outputs and gradients do not depend on the batch, bitwise."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.net(x[i:i + 1]) for i in range(len(x))])


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**16), variant=st.sampled_from(["preserve", "delete", "dual"]),
       rows_per_pass=st.integers(1, 5))
def test_splitting_the_model_passes_changes_no_mask(seed, variant, rows_per_pass):
    """The rows' energies are independent, so with a model whose results do not depend on the batch, splitting
    the rows into several model passes gives bitwise the masks, rewards and iterations of one pass; with a
    batched model only its batch-dependent rounding differs (channel masks; ATOL as above)."""
    net = _net()
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(3, 3, 16, 16, generator=g)
    runs = {}
    for budget in (None, rows_per_pass * images[0].numel()):
        runs[budget] = (
            extremal_perturbation(_OneSampleAtATime(net).eval(), images, [0, 3, 1], areas=(0.1, 0.3),
                                  variant=variant, seed=0, values_per_pass=budget, **FAST),
            channel_extremal_perturbation(net, images, [0, 3, 1], net.conv2, areas=(0.25,), variant=variant,
                                          max_iter=8, values_per_pass=budget))
    (whole, channels), (split, split_channels) = runs.values()
    assert torch.equal(split.masks, whole.masks)
    assert torch.equal(split.rewards, whole.rewards)
    assert torch.equal(split.iterations, whole.iterations)
    assert torch.allclose(split_channels.masks, channels.masks, atol=ATOL)
