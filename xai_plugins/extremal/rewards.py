"""Rewards of extremal perturbations: how strongly the perturbed input still drives the target output.

Model outputs are (B, C) or (B, C, ...) with extra (e.g. spatial) dimensions that are averaged. Each row ``b``
has its own target channel ``targets[b]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Reward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _flat(outputs: torch.Tensor) -> torch.Tensor:
    return outputs.reshape(outputs.shape[0], outputs.shape[1], -1)


def simple_reward(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The target activation, averaged over any extra dimensions: shape (B,)."""
    flat = _flat(outputs)
    return flat[torch.arange(flat.shape[0], device=flat.device), targets].mean(dim=-1)


def contrastive_reward(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The target activation minus the largest other activation, averaged over extra dimensions: shape (B,)."""
    flat = _flat(outputs)
    rows = torch.arange(flat.shape[0], device=flat.device)
    own = flat[rows, targets]
    others = flat.clone()
    others[rows, targets] = -torch.inf
    return (own - others.amax(dim=1)).mean(dim=-1)


REWARDS: dict[str, Reward] = {"simple": simple_reward, "contrastive": contrastive_reward}


def resolve_reward(reward: str | Reward) -> Reward:
    """The reward function for a name in :data:`REWARDS` or a callable ``(outputs, targets) -> (B,)``."""
    if callable(reward):
        return reward
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {tuple(REWARDS)} or a callable (outputs, targets) -> (B,); "
                         f"got {reward!r}")
    return REWARDS[reward]
