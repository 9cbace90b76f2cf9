"""Re-initialising the spatial filters that pruning zeroed but could not remove (the paper's FillZero, or a
reset with any registered initializer), so that fine-tuning starts from non-zero filters.

A pruned model keeps a zero filter ``W[o, i]`` wherever output ``o`` and input ``i`` both survive through
other filters. ``"fill_zero"`` (the authors' FillZero) replaces, in a kernel with some zero entries, each
zero by a draw from the normal distribution with that kernel's mean and standard deviation, and fills a
kernel that is entirely zero with Kaiming-uniform values (PyTorch's default convolution initialisation);
any other method name (or an ``init(shape, generator)`` callable) draws entirely zero kernels from that
initializer instead. Entries count as zero as in the authors' code: ``isclose(w, 0)`` (absolute 1e-8).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from xai_plugins.explainfix.spatial import spatial_convs

__all__ = ["fill_zero", "refill_zeroed_filters"]

_ATOL = 1e-8


def fill_zero(weight: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """FillZero of one spatial weight ``(out, in/groups, *kernel)``; returns a new tensor."""
    w = weight.detach().clone()
    axes = tuple(range(2, w.dim()))
    zero = torch.isclose(w, torch.zeros((), dtype=w.dtype, device=w.device), rtol=0.0, atol=_ATOL)
    noise = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
    draws = noise * w.std(axes, keepdim=True) + w.mean(axes, keepdim=True)
    w[zero] = draws[zero]
    zero = torch.isclose(w, torch.zeros((), dtype=w.dtype, device=w.device), rtol=0.0, atol=_ATOL)
    if zero.any():
        kaiming = nn.init.kaiming_uniform_(torch.empty(w.shape, dtype=w.dtype), a=math.sqrt(5),
                                           generator=generator).to(w.device)
        w[zero] = kaiming[zero]
    return w


def _reset(init: Callable[..., torch.Tensor], weight: torch.Tensor,
           generator: torch.Generator) -> torch.Tensor:
    w = weight.detach().clone()
    empty = torch.isclose(w, torch.zeros((), dtype=w.dtype, device=w.device), rtol=0.0,
                          atol=_ATOL).flatten(2).all(2)
    if empty.any():
        fresh = init(tuple(w.shape), generator=generator).to(dtype=w.dtype, device=w.device)
        w[empty] = fresh[empty]
    return w


def refill_zeroed_filters(model: nn.Module, method: str | Callable[..., torch.Tensor] = "fill_zero",
                          seed: int = 0) -> int:
    """Re-initialise the zero spatial filters of ``model`` in place; returns how many entries changed.

    ``requires_grad`` is kept (a fixed filter stays fixed). Every new weight is computed before any is
    written, so an initializer error leaves the model unchanged.
    """
    generator = torch.Generator().manual_seed(int(seed))
    if method == "fill_zero":
        def make(w: torch.Tensor) -> torch.Tensor:
            return fill_zero(w, generator)
    else:
        from xai_plugins.explainfix.fixing import resolve_initializer

        _, init, kwargs = resolve_initializer(method)

        def make(w: torch.Tensor) -> torch.Tensor:
            return _reset(lambda shape, generator: init(shape, generator=generator, **kwargs), w, generator)
    new = {id(conv.weight): (conv, make(conv.weight)) for _, conv in spatial_convs(model)}
    changed = 0
    with torch.no_grad():
        for conv, weight in new.values():
            changed += int((weight != conv.weight).sum())
            conv.weight.copy_(weight)
    return changed
