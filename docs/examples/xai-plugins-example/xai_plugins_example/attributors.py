"""Gradient times input, written to the xai-plugins attributor contract."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

Target = int | Sequence[int] | torch.Tensor


def _resolve_target(target: Target, n: int, classes: int) -> torch.Tensor:
    t = torch.as_tensor(target)
    if t.is_floating_point():
        raise TypeError(f"target must hold integer class indices, got dtype {t.dtype}")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"got {t.numel()} targets for a batch of {n}; pass one int or one per sample")
    if (t < 0).any() or (t >= classes).any():
        raise ValueError(f"target {t.tolist()} is out of range for a model with {classes} classes")
    return t


def gradient_x_input(model: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor], target: Target,
                     **kwargs: object) -> torch.Tensor | tuple[torch.Tensor]:
    """Gradient of the target logit times the input, shaped like ``inputs``.

    Follows Captum's conventions (a 1-tuple of inputs gives a 1-tuple back; int, list or tensor targets) and
    the xai-plugins contract: the model runs in eval mode for the call and every module's mode is put back,
    also on error; parameters, ``requires_grad`` and ``.grad`` are never touched (``torch.autograd.grad``).
    """
    if kwargs:
        raise TypeError(f"gradient_x_input takes no options, got {', '.join(sorted(kwargs))}")
    if isinstance(inputs, tuple):
        if len(inputs) != 1:
            raise ValueError(f"expected one input tensor, got a tuple of {len(inputs)}")
        return (gradient_x_input(model, inputs[0], target),)
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 2:
        raise TypeError("inputs must be a batched tensor (N, ...) or a 1-tuple of one")
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        x = inputs.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = model(x)
            t = _resolve_target(target, x.shape[0], out.shape[1])
            (grad,) = torch.autograd.grad(out.gather(1, t[:, None]).sum(), x)
    finally:
        for module, mode in modes:
            module.training = mode
    return (grad * inputs.detach()).detach()
