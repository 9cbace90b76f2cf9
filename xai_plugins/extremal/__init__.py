"""Extremal perturbations (Fong, Patrick and Vedaldi, ICCV 2019) in pure PyTorch: batched, per-sample targets,
input masks and channel masks.

>>> result = extremal_perturbation(model, images, target=[3, 7], areas=(0.05, 0.1, 0.2))
>>> result.masks.shape  # (N, len(areas), 1, H, W)
"""

from __future__ import annotations

from xai_plugins.extremal.attributors import channel_extremal_attribution, extremal_attribution
from xai_plugins.extremal.channels import ChannelExtremalResult, channel_extremal_perturbation
from xai_plugins.extremal.rewards import contrastive_reward, simple_reward
from xai_plugins.extremal.spatial import ExtremalResult, extremal_perturbation

__all__ = [
    "ChannelExtremalResult",
    "ExtremalResult",
    "channel_extremal_attribution",
    "channel_extremal_perturbation",
    "contrastive_reward",
    "extremal_attribution",
    "extremal_perturbation",
    "simple_reward",
]
