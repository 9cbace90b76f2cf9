"""The demo's extremal panel shows, under each mask, the preserve score of exactly that mask."""

from __future__ import annotations

import re

import pytest
import torch

from xai_plugins.evaluation.dataset import DigitsOnCanvas
from xai_plugins.evaluation.training import load_checkpoint
from xai_plugins.extremal.perturbation import apply_pyramid, build_pyramid
from xai_plugins_workbench.demo import demo_figure, extremal_panel
from xai_plugins_workbench.methods import extremal_settings

CAPTION = re.compile(r"^preserve (-?\d+\.\d\d)$")


def preserve_reward(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    masks: torch.Tensor) -> torch.Tensor:
    """Target logits with the masks (N, H, W) applied: kept where 1, blurred by the demo's strongest blur where 0,
    through the pyramid of the extremal method (8 levels)."""
    pyramid = build_pyramid(images, 8, "blur", extremal_settings(*images.shape[-2:])["max_blur"])
    with torch.no_grad():
        logits = model(apply_pyramid(pyramid, masks, torch.arange(images.shape[0])))
    return logits.gather(1, labels[:, None])[:, 0]


@pytest.fixture(scope="module")
def panel_and_inputs(checkpoint_dir):
    model = load_checkpoint("resnet", checkpoint_dir)
    images, labels, boxes = DigitsOnCanvas(2, split="test", seed=3000).tensors()
    return extremal_panel(model, images, labels), model, images, labels, boxes


def test_each_extremal_mask_is_captioned_with_its_own_preserve_reward(panel_and_inputs):
    panel, model, images, labels, _ = panel_and_inputs
    assert panel.captions is not None and len(panel.captions) == images.shape[0]
    rewards = preserve_reward(model, images, labels, torch.from_numpy(panel.maps))
    for caption, reward in zip(panel.captions, rewards.tolist()):
        match = CAPTION.match(caption)
        assert match, caption
        # two decimals shown: the caption is the reward rounded to 0.005, plus float32 rounding of the logit
        assert abs(float(match.group(1)) - reward) <= 0.005 + 1e-5 * max(1.0, abs(reward))


def test_the_figure_shows_the_captions_under_the_extremal_masks(panel_and_inputs, tmp_path):
    import matplotlib.pyplot as plt

    panel, _, images, labels, boxes = panel_and_inputs
    fig = demo_figure(images, labels, boxes, {}, [panel], tmp_path / "none.png", "not drawn in this test")
    try:
        labels_shown = [ax.get_xlabel() for ax in fig.axes]
        for caption in panel.captions:
            assert caption in labels_shown
    finally:
        plt.close(fig)
