"""Extremal perturbations (Fong, Patrick and Vedaldi, ICCV 2019) in pure PyTorch: batched, per-sample targets,
input masks and channel masks.

>>> result = extremal_perturbation(model, images, target=[3, 7], areas=(0.05, 0.1, 0.2))
>>> result.masks.shape  # (N, len(areas), 1, H, W)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:  # the lazy exports, visible to type checkers and editors
    from xai_plugins.extremal.attributors import channel_extremal_attribution, extremal_attribution  # noqa: F401
    from xai_plugins.extremal.channels import ChannelExtremalResult, channel_extremal_perturbation  # noqa: F401
    from xai_plugins.extremal.rewards import contrastive_reward, simple_reward  # noqa: F401
    from xai_plugins.extremal.spatial import ExtremalResult, extremal_perturbation  # noqa: F401

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
