"""Models whose explanation is known: the preserve mask must find the region the logit depends on."""

from __future__ import annotations

import pytest

from tests.extremal.conftest import RegionModel, top_iou
from xai_plugins.extremal import extremal_perturbation

KNOBS = dict(step=4, sigma=8)


@pytest.mark.parametrize("contrast, perturbation", [(False, "fade"), (True, "blur")])
def test_preserve_mask_finds_the_region(noise, contrast, perturbation):
    model = RegionModel(contrast=contrast).eval()
    area = float(model.region.mean())
    result = extremal_perturbation(model, noise, 0, areas=(area,), perturbation=perturbation, seed=0, **KNOBS)
    assert result.masks.shape == (2, 1, 1, 64, 64)
    assert min(top_iou(result.masks[:, 0, 0], model.region)) >= 0.8


def test_area_is_met(noise):
    model = RegionModel().eval()
    result = extremal_perturbation(model, noise, 0, areas=(0.1, 0.25), perturbation="fade", seed=0, **KNOBS)
    error = (result.areas_achieved - result.masks.mean(dim=(2, 3, 4))).abs().max()
    assert error < 1e-6
    assert (result.areas_achieved - result.areas_achieved.new_tensor([0.1, 0.25])).abs().max() <= 0.02


def test_delete_mask_removes_the_region(noise):
    model = RegionModel().eval()
    area = float(model.region.mean())
    result = extremal_perturbation(model, noise, 0, areas=(area,), variant="delete", perturbation="fade", seed=0,
                                   **KNOBS)
    assert min(top_iou(result.masks[:, 0, 0], model.region)) >= 0.8
    assert (result.rewards > -0.2 * 100 * 0.5).all()  # most of the region's mean (50) is faded away
