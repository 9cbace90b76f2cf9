"""The exact-area step trims (or grows) the edge of each mask and keeps its peak at 1: it never dims the region
the optimisation kept (issue: a common parameter offset dimmed every mask)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.extremal.conftest import RegionModel, SmallNet, off_centre_box
from xai_plugins.extremal import extremal_perturbation
from xai_plugins.extremal.masks import SmoothMaskGenerator, fit_area, trim

FLOAT32_MEAN = 1e-5  # the bisection's tolerance on the mean (float32 means of <= 1e5 values in [0, 1] hold it)


def _smooth_masks(seed: int, height: int, width: int, rows: int, power: float) -> torch.Tensor:
    generator = SmoothMaskGenerator((height, width), step=3, sigma=6)
    params = torch.rand(rows, *generator.param_shape, generator=torch.Generator().manual_seed(seed)) ** power
    return generator.generate(params)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), height=st.integers(8, 40), width=st.integers(8, 40),
       power=st.floats(0.3, 6.0), area=st.floats(0.02, 0.6))
@example(seed=0, height=8, width=8, power=6.0, area=0.6)
@example(seed=0, height=8, width=8, power=1.0, area=0.021484375)
def test_fit_area_meets_the_area_with_peak_one(seed, height, width, power, area):
    masks = _smooth_masks(seed, height, width, 3, power)
    normalised = masks / masks.flatten(1).amax(dim=1)[:, None, None]
    areas = torch.full((3,), area)
    fitted = fit_area(masks, areas)
    assert fitted.flatten(1).amax(dim=1).min() == 1.0
    assert fitted.min() >= 0 and fitted.max() <= 1
    reachable_high = (normalised > 0).flatten(1).float().mean(dim=1)
    # values within float32 rounding of the peak (the bumps' flat tops) form the plateau no level can trim
    reachable_low = (normalised >= 1 - 1e-4).flatten(1).float().mean(dim=1)
    for i in range(3):
        if reachable_low[i] + FLOAT32_MEAN < area < reachable_high[i] - FLOAT32_MEAN:
            assert abs(fitted[i].mean().item() - area) <= FLOAT32_MEAN
        mean_before = normalised[i].mean().item()
        if area >= mean_before:  # growing: no value goes down, zeros stay zero
            assert (fitted[i] >= normalised[i] - 1e-6).all() and (fitted[i][normalised[i] == 0] == 0).all()
        else:  # trimming: no value goes up, the peak region stays fully kept
            assert (fitted[i] <= normalised[i] + 1e-6).all() and (fitted[i][normalised[i] >= 1] == 1).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), levels=st.lists(st.floats(-1, 1), min_size=2, max_size=2))
def test_trim_is_monotone_in_its_level(seed, levels):
    masks = _smooth_masks(seed, 16, 16, 2, 1.0)
    masks = masks / masks.flatten(1).amax(dim=1)[:, None, None]
    low, high = sorted(levels)
    assert (trim(masks, torch.full((2,), high)) <= trim(masks, torch.full((2,), low)) + 1e-6).all()
    assert torch.allclose(trim(masks, torch.zeros(2)), masks)


def test_fit_area_counts_only_the_given_region():
    masks = _smooth_masks(3, 30, 30, 2, 2.0)
    crop = (slice(5, 25), slice(5, 25))
    fitted = fit_area(masks, torch.tensor([0.1, 0.3]), crop)
    assert torch.allclose(fitted[:, crop[0], crop[1]].mean(dim=(1, 2)), torch.tensor([0.1, 0.3]), atol=FLOAT32_MEAN)


def test_fit_area_rows_do_not_depend_on_the_batch():
    masks = _smooth_masks(9, 30, 30, 3, 1.0)
    areas = torch.tensor([0.05, 0.2, 0.3])
    batch = fit_area(masks, areas)
    for i in range(3):
        assert torch.equal(batch[i], fit_area(masks[i:i + 1], areas[i:i + 1])[0])


@pytest.mark.parametrize("size", [(32, 32), (48, 80)])
@pytest.mark.parametrize("variant", ["preserve", "delete", "dual"])
def test_every_returned_mask_peaks_at_one(size, variant):
    torch.manual_seed(0)
    model = SmallNet().eval()
    images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    result = extremal_perturbation(model, images, [0, 3], areas=(0.05, 0.1, 0.2), variant=variant, max_iter=15,
                                   seed=0)
    assert result.masks.flatten(2).amax(dim=2).min() >= 0.99
    assert (result.areas_achieved - result.areas_achieved.new_tensor([0.05, 0.1, 0.2])).abs().max() <= 1e-4


def test_fitted_mask_scores_like_the_optimised_mask_not_below_it():
    """On a model whose reward grows with every mask value inside its region (fade, mean of the region), the
    fitted mask keeps the region: its reward is at least that of the optimised mask fitted by a common offset
    (a dimming fit, like the parameter offset it replaces), and growing the optimised mask to a larger area
    never lowers the reward."""
    size = (64, 64)
    model = RegionModel(off_centre_box(*size), size).eval()
    images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(2))
    area = float(model.region.mean())
    kwargs = dict(areas=(area,), perturbation="fade", seed=0)
    fitted = extremal_perturbation(model, images, 0, **kwargs)
    optimised = extremal_perturbation(model, images, 0, exact_area=False, **kwargs)
    assert fitted.masks.amax(dim=(2, 3, 4)).min() >= 0.99
    masks = optimised.masks[:, 0, 0]
    shifted = _offset_to_area(masks, area)
    assert (fitted.rewards[:, 0] >= _fade_reward(model, images, shifted)).all()
    grown = fit_area(masks, optimised.areas_achieved[:, 0] + 0.02)
    assert (_fade_reward(model, images, grown) >= _fade_reward(model, images, masks) - 1e-4).all()


def _fade_reward(model: RegionModel, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images * masks[:, None])[:, 0]


def _offset_to_area(masks: torch.Tensor, area: float) -> torch.Tensor:
    """``clamp(m + c)`` with one offset per mask meeting the area: a dimming fit, for comparison."""
    low, high = torch.full((masks.shape[0],), -1.0), torch.ones(masks.shape[0])
    for _ in range(50):
        mid = (low + high) / 2
        above = (masks + mid[:, None, None]).clamp(0, 1).mean(dim=(1, 2)) > area
        high = torch.where(above, mid, high)
        low = torch.where(above, low, mid)
    return (masks + low[:, None, None]).clamp(0, 1)


def test_each_mask_is_the_best_fitted_candidate_of_its_sample():
    """A row's mask is the best of its own optimised mask and its sample's larger-area masks, each fitted to the
    row's area: the returned mask is one of those candidates, bitwise, and no candidate scores higher (fade on a
    region model, where the reward is the model's output on ``image * mask``; float32 rounding of the output
    is the tolerance)."""
    size = (48, 48)
    model = RegionModel(off_centre_box(*size), size).eval()
    images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(4))
    areas = (0.05, 0.15, 0.3)
    kwargs = dict(areas=areas, perturbation="fade", spill=False, max_iter=12, seed=0)
    fitted = extremal_perturbation(model, images, 0, **kwargs)
    optimised = extremal_perturbation(model, images, 0, exact_area=False, **kwargs).masks[:, :, 0]
    for sample in range(2):
        for row, area in enumerate(areas):
            candidates = fit_area(optimised[sample, row:], torch.full((len(areas) - row,), area))
            rewards = _fade_reward(model, images[sample:sample + 1].expand(len(candidates), -1, -1, -1),
                                   candidates)
            returned = fitted.masks[sample, row, 0]
            assert any(torch.equal(returned, candidate) for candidate in candidates)
            tolerance = 4 * torch.finfo(torch.float32).eps * float(rewards.abs().max())
            assert float(fitted.rewards[sample, row]) >= float(rewards.max()) - tolerance
