"""Models whose explanation is known: the preserve mask must find the region the logit depends on, with the
default settings, at every resolution and for regions that are off-centre and not symmetric under a flip."""

from __future__ import annotations

import pytest
import torch

from tests.extremal.conftest import RegionModel, off_centre_box, top_iou
from xai_plugins.extremal import extremal_perturbation
from xai_plugins.extremal.scales import mask_scales

SIZES = [(32, 32), (64, 64), (48, 80), (40, 24)]


def _images(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _assert_not_flip_symmetric(region: torch.Tensor) -> None:
    assert not torch.equal(region, region.flip(-1)) and not torch.equal(region, region.flip(-2))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("contrast, perturbation", [(False, "fade"), (True, "blur")])
def test_preserve_mask_finds_an_off_centre_region_at_every_size(size, contrast, perturbation):
    model = RegionModel(off_centre_box(*size), size, contrast=contrast).eval()
    _assert_not_flip_symmetric(model.region)
    area = float(model.region.mean())
    result = extremal_perturbation(model, _images(2, *size), 0, areas=(area,), perturbation=perturbation, seed=0)
    assert result.masks.shape == (2, 1, 1, *size)
    assert min(top_iou(result.masks[:, 0, 0], model.region)) >= 0.8


def test_preserve_mask_finds_an_off_centre_region_at_224():
    size = (224, 224)
    model = RegionModel(off_centre_box(*size), size, contrast=True).eval()
    area = float(model.region.mean())
    result = extremal_perturbation(model, _images(1, *size), 0, areas=(area,), seed=0)
    assert min(top_iou(result.masks[:, 0, 0], model.region)) >= 0.8
    assert result.masks.amax() >= 0.99


def test_translation_jitter_makes_no_mirror_blob():
    size = (48, 48)
    model = RegionModel(off_centre_box(*size), size).eval()
    area = float(model.region.mean())
    result = extremal_perturbation(model, _images(2, *size), 0, areas=(area,), perturbation="fade", jitter=2,
                                   seed=0)
    masks = result.masks[:, 0, 0]
    assert min(top_iou(masks, model.region)) >= 0.8
    mirror = model.region.flip(-1) * (1 - model.region)  # the mirror position, where a flip jitter puts a blob
    assert ((masks * mirror).sum((1, 2)) / mirror.sum()).max() <= 0.05


@pytest.mark.parametrize("bad", [True, -1, 1.5, "flip"])
def test_jitter_must_be_a_number_of_pixels(small_net, bad):
    with pytest.raises(ValueError, match="jitter is the largest translation in pixels"):
        extremal_perturbation(small_net, _images(1, 16, 16), 0, jitter=bad, max_iter=2)


def test_area_is_met(noise):
    model = RegionModel().eval()
    result = extremal_perturbation(model, noise, 0, areas=(0.1, 0.25), perturbation="fade", seed=0)
    error = (result.areas_achieved - result.masks.mean(dim=(2, 3, 4))).abs().max()
    assert error < 1e-6
    assert (result.areas_achieved - result.areas_achieved.new_tensor([0.1, 0.25])).abs().max() <= 1e-4


def test_delete_mask_removes_the_region(noise):
    model = RegionModel(off_centre_box(64, 64)).eval()
    area = float(model.region.mean())
    result = extremal_perturbation(model, noise, 0, areas=(area,), variant="delete", perturbation="fade", seed=0)
    assert min(top_iou(result.masks[:, 0, 0], model.region)) >= 0.8
    assert (result.rewards > -0.2 * 100 * 0.5).all()  # most of the region's mean (50) is faded away


def test_default_scales_are_the_papers_at_224_and_proportional_elsewhere():
    assert mask_scales(224, 224) == (7, 21.0, 20.0)
    assert mask_scales(448, 640) == (14, 42.0, 40.0)
    small = mask_scales(32, 32)
    assert small.step == 1 and small.sigma == 3.0 and small.max_blur == pytest.approx(20 * 32 / 224)
    assert mask_scales(64, 96) == mask_scales(64, 64)  # the shorter side sets the scale
    assert mask_scales(32, 32, step=4, sigma=8.0, max_blur=5.0) == (4, 8.0, 5.0)  # explicit keywords win
    for height in range(8, 600, 7):
        scales = mask_scales(height, height + 13)
        assert scales.step >= 1 and scales.sigma >= max(3.0, 1.5 * scales.step) and scales.max_blur >= 2.0


def test_explicit_scales_win_over_the_defaults(small_net):
    images = _images(1, 32, 32, seed=4)
    explicit = extremal_perturbation(small_net, images, 0, step=4, sigma=8, max_blur=20.0, max_iter=5, seed=0)
    default = extremal_perturbation(small_net, images, 0, max_iter=5, seed=0)
    scaled = extremal_perturbation(small_net, images, 0, step=1, sigma=3.0, max_blur=20 * 32 / 224, max_iter=5,
                                   seed=0)
    assert torch.equal(default.masks, scaled.masks) and not torch.allclose(default.masks, explicit.masks)
