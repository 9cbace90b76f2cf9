"""Gradient saliency of spatial filters, computed without touching the model.

The gradients are taken with respect to detached copies of the spatial weights passed in through
:func:`torch.func.functional_call`, so ``requires_grad`` of the model's parameters is never read or
written (a frozen, fixed filter gets its saliency like any other). The model runs in eval mode (batch-norm
statistics are not updated) and its training flags are restored afterwards, also on error
(:func:`xai_plugins.model_state.explaining`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from xai_plugins.explainfix.spatial import spatial_convs
from xai_plugins.model_state import explaining

__all__ = ["FilterSaliency", "default_objective", "spatial_filter_saliency"]

Objective = Callable[[torch.Tensor, Any], torch.Tensor]


def default_objective(output: torch.Tensor, target: Any) -> torch.Tensor:
    """The scalar whose gradient defines saliency: the sum of the outputs of the target classes.

    ``target`` may be class indices (one per sample), a tensor shaped like the output (one-hot or soft
    labels, multiplied in as in the paper), or ``None`` (each sample's top output). Outputs of a model
    ending in a sigmoid or softmax are used as they are.
    """
    flat = output.reshape(output.shape[0], -1)
    if target is None:
        return flat.max(1).values.sum()
    target = torch.as_tensor(target, device=output.device)
    if target.shape == output.shape:
        return (output * target.to(output.dtype)).sum()
    if target.dim() == 0:
        target = target.expand(output.shape[0])
    if target.dim() == 1 and target.shape[0] == output.shape[0] and not target.is_floating_point():
        return flat.gather(1, target.long().reshape(-1, 1)).sum()
    raise ValueError(f"cannot match targets of shape {tuple(target.shape)} to outputs of shape "
                     f"{tuple(output.shape)}; pass class indices, targets shaped like the output, or an "
                     "objective(output, target) -> scalar")


@dataclass
class FilterSaliency:
    """Per spatial layer: ``gradient[o, i]`` = sum of |d objective / d W[o, i]| over the kernel,
    ``taylor[o, i]`` = sum of |W[o, i] * d objective / d W[o, i]| (the paper's pruning saliency)."""

    layers: list[str]
    gradient: list[torch.Tensor]
    taylor: list[torch.Tensor]
    num_samples: int


def _batches(loader: Iterable[Any], max_batches: int | None) -> Iterable[tuple[torch.Tensor, Any]]:
    for n, batch in enumerate(loader):
        if max_batches is not None and n >= max_batches:
            break
        if isinstance(batch, torch.Tensor):
            yield batch, None
        elif isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
            yield batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            raise TypeError(f"a loader batch must be a tensor or a tuple (inputs, targets, ...), got "
                            f"{type(batch).__name__}")


def _kernel_l1(t: torch.Tensor) -> torch.Tensor:
    """Sum of absolute values over the kernel axes, as a matrix product (faster than a small-axis sum)."""
    k = t[0, 0].numel()
    return (t.abs().reshape(-1, k) @ torch.ones(k, dtype=t.dtype, device=t.device)).reshape(t.shape[:2])


def spatial_filter_saliency(model: nn.Module, loader: Iterable[Any], *, max_batches: int | None = None,
                            objective: Objective | None = None, gradient: bool = True,
                            taylor: bool = True) -> FilterSaliency:
    """Accumulate the gradient saliency of every spatial filter over the batches of ``loader``.

    ``loader`` yields input tensors or ``(inputs, targets)`` tuples (a DataLoader over any Dataset);
    ``objective(output, targets) -> scalar`` defaults to :func:`default_objective`. ``gradient`` and
    ``taylor`` choose which of the two saliencies to accumulate (the other is returned as zeros).
    """
    convs = spatial_convs(model)
    objective = objective or default_objective
    names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    params = [names[id(conv.weight)] for _, conv in convs]
    unique = list(dict.fromkeys(params))
    grad_sum: dict[str, torch.Tensor] = {}
    taylor_sum: dict[str, torch.Tensor] = {}
    samples = 0
    with explaining(model, "spatial filter saliency", freeze=False, warn=False):
        weights = dict(model.named_parameters(remove_duplicate=False))
        for inputs, targets in _batches(loader, max_batches):
            device = next(iter(weights.values())).device if weights else inputs.device
            leaves = {n: weights[n].detach().requires_grad_(True) for n in unique}
            with torch.enable_grad():
                output = functional_call(model, leaves, (inputs.to(device),), strict=False)
                if isinstance(output, (tuple, list)):
                    output = output[0]
                grads = torch.autograd.grad(objective(output, targets), [leaves[n] for n in unique],
                                            allow_unused=True)
            with torch.no_grad():
                for n, g in zip(unique, grads):
                    w = leaves[n].detach()
                    g = torch.zeros_like(w) if g is None else g
                    zero = torch.zeros(w.shape[:2], dtype=w.dtype, device=w.device)
                    gs = _kernel_l1(g) if gradient else zero
                    ts = _kernel_l1(w * g) if taylor else zero
                    grad_sum[n] = grad_sum[n] + gs if n in grad_sum else gs
                    taylor_sum[n] = taylor_sum[n] + ts if n in taylor_sum else ts
            samples += int(inputs.shape[0])
    if samples == 0:
        raise ValueError("the loader yielded no batches; saliency needs at least one batch of inputs")
    return FilterSaliency([n for n, _ in convs], [grad_sum[p] for p in params], [taylor_sum[p] for p in params],
                          samples)
