"""Explanation images and contribution heat maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xai_plugins.bcos import encode_input
from xai_plugins.bcos.visualize import contribution_heatmap, explanation_image


def test_explanation_image_colours_and_alpha():
    h = w = 8
    x6 = encode_input(torch.rand(1, 3, h, w))
    weights = torch.zeros(1, 6, h, w)
    weights[:, 0] = 1.0          # responds to red: w_r > 0, w_(1-r) = 0
    weights[:, 4] = 1.0          # responds to "not green"
    weights[:, :, :, w // 2:] *= -1  # right half: negative weights
    image = explanation_image(weights, x6, smooth=0, alpha_percentile=100)
    assert image.shape == (1, h, w, 4) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1
    left = image[0, :, : w // 2]
    np.testing.assert_allclose(left[..., 0], 1.0)   # red channel fully on
    np.testing.assert_allclose(left[..., 1], 0.0)   # green: only the 1-g weight is positive
    np.testing.assert_allclose(left[..., 2], 0.0)   # blue: no weight at all
    contribution = (weights * x6).sum(1)[0]
    alpha = image[0, ..., 3]
    assert np.all(alpha[contribution.numpy() <= 0] == 0)
    assert alpha.max() == pytest.approx(1.0)


def test_explanation_image_single_and_errors():
    x6 = encode_input(torch.rand(3, 10, 12), dim=0)
    weights = torch.randn(6, 10, 12)
    image = explanation_image(weights, x6, smooth=3)
    assert image.shape == (10, 12, 4)
    with pytest.raises(ValueError, match="same shape"):
        explanation_image(weights, x6[:3])


def test_contribution_heatmap_bwr():
    contribution = torch.tensor([[-2.0, 0.0, 2.0]])
    heat = contribution_heatmap(contribution, percentile=100)
    assert heat.shape == (1, 3, 4)
    np.testing.assert_allclose(heat[0, 0], [0, 0, 1, 1])
    np.testing.assert_allclose(heat[0, 1], [1, 1, 1, 1])
    np.testing.assert_allclose(heat[0, 2], [1, 0, 0, 1])
    batch = contribution_heatmap(torch.randn(2, 6, 5, 5))
    assert batch.shape == (2, 5, 5, 4) and 0 <= batch.min() and batch.max() <= 1
    with pytest.raises(ValueError, match="contribution map"):
        contribution_heatmap(torch.randn(5))
