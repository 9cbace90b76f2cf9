"""Extremal perturbations (Fong, Patrick and Vedaldi, ICCV 2019) in pure PyTorch: batched, per-sample targets,
input masks and channel masks.

>>> result = extremal_perturbation(model, images, target=[3, 7], areas=(0.05, 0.1, 0.2))
>>> result.masks.shape  # (N, len(areas), 1, H, W)
"""

from __future__ import annotations

from xai_plugins._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "ChannelExtremalResult": "xai_plugins.extremal.channels",
    "ExtremalResult": "xai_plugins.extremal.spatial",
    "channel_extremal_attribution": "xai_plugins.extremal.attributors",
    "channel_extremal_perturbation": "xai_plugins.extremal.channels",
    "contrastive_reward": "xai_plugins.extremal.rewards",
    "extremal_attribution": "xai_plugins.extremal.attributors",
    "extremal_perturbation": "xai_plugins.extremal.spatial",
    "simple_reward": "xai_plugins.extremal.rewards",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
