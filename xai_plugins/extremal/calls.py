"""How the extremal optimisations call the user's model: extra forward arguments that follow the rows of the
batch, and a seeded global generator for stochastic models."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from xai_plugins.host_bridge import extra_args

RowForward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def forward_with_rows(model: Callable[..., Any], additional_forward_args: Any, batch: int) -> RowForward:
    """``forward(x, samples)`` calls ``model(x, *additional)`` where every tensor of ``additional`` with
    ``batch`` rows is indexed by ``samples`` (the sample each row of ``x`` belongs to); other arguments are
    passed unchanged."""
    additional = extra_args(additional_forward_args)

    def forward(x: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        args = [a[samples] if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == batch else a
                for a in additional]
        return model(x, *args)

    return forward


def seeded(seed: int | None, device: torch.device) -> contextlib.AbstractContextManager:
    """Seed torch's global generator for the block and restore its state afterwards (no-op for ``None``)."""
    if seed is None:
        return contextlib.nullcontext()
    devices = [device.index or 0] if device.type == "cuda" else []
    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=devices))
    torch.manual_seed(seed)
    return stack
