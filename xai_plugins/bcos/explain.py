"""Explanations of B-cos models: dynamic linear weights W(x) and contributions W(x) ⊙ x.

In explanation mode a B-cos network is the linear map ``logits = W(x) x + logit_bias`` at its input ``x``,
so the gradient of the target logit with respect to ``x`` is the row ``W(x)[target]`` and the contributions
``x ⊙ W(x)[target]`` sum exactly to the target logit minus the logit bias ("completeness").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from xai_plugins.bcos.layers import LogitLayer
from xai_plugins.bcos.mode import explanation_mode

Target = int | Sequence[int] | Tensor | None


@dataclass
class Contributions:
    """The result of :func:`contributions`; unpacks as ``contributions, dynamic_weights, logits``.

    Attributes:
        contributions: ``inputs ⊙ dynamic_weights``, shaped like the inputs.
        dynamic_weights: the row ``W(x)[target]`` of the model's dynamic linear map, shaped like the inputs.
        logits: the model outputs ``(N, num_classes)`` (detached).
        target: the explained class per sample ``(N,)``.
        logit_bias: the constant the contributions do not explain (sum of the model's logit-layer biases).
    """

    contributions: Tensor
    dynamic_weights: Tensor
    logits: Tensor
    target: Tensor
    logit_bias: float

    def __iter__(self) -> Iterator[Tensor]:
        yield from (self.contributions, self.dynamic_weights, self.logits)

    @property
    def contribution_map(self) -> Tensor:
        """Contributions summed over channels: ``(N, H, W)``."""
        return self.contributions.sum(1)

    @property
    def explained_logits(self) -> Tensor:
        """The logit of the target class per sample ``(N,)``."""
        return self.logits.gather(1, self.target[:, None]).squeeze(1)

    @property
    def delta(self) -> Tensor:
        """Completeness error per sample: ``Σ contributions - (logit - logit_bias)`` (zero up to rounding)."""
        return self.contributions.flatten(1).sum(1) - (self.explained_logits - self.logit_bias)


def logit_bias(model: nn.Module) -> float:
    """The total bias the model's :class:`~xai_plugins.bcos.layers.LogitLayer` modules add (0 if none)."""
    return float(sum(m.bias for m in model.modules() if isinstance(m, LogitLayer)))


def resolve_target(target: Target, logits: Tensor) -> Tensor:
    """Targets as a long tensor ``(N,)``: ``None`` means the predicted class; ints, lists and tensors work."""
    n, num_classes = logits.shape[0], logits.shape[-1]
    if target is None:
        resolved = logits.detach().argmax(-1)
    else:
        resolved = torch.as_tensor(target, device=logits.device)
        if resolved.is_floating_point() or resolved.dtype == torch.bool:
            raise TypeError(f"target must hold integer class indices, got dtype {resolved.dtype}")
        resolved = resolved.long().reshape(-1)
        if resolved.numel() == 1:
            resolved = resolved.expand(n)
        if resolved.numel() != n:
            raise ValueError(f"got {resolved.numel()} targets for a batch of {n}; pass one int or one per sample")
    if resolved.numel() and (resolved.min() < 0 or resolved.max() >= num_classes):
        raise ValueError(f"target {resolved.tolist()} is out of range for a model with {num_classes} outputs")
    return resolved


def contributions(model: nn.Module, inputs: Tensor, target: Target = None) -> Contributions:
    """Explain ``model(inputs)`` for ``target``: contributions, dynamic linear weights and logits.

    ``inputs`` are the encoded images (see :func:`xai_plugins.bcos.encode_input`). The model is left as it was:
    explanation mode is restored, parameter gradients are not touched, and buffers a training-mode forward
    would update are put back.
    """
    if inputs.dim() < 2:
        raise ValueError(f"inputs must be a batch (N, C, ...), got shape {tuple(inputs.shape)}")
    saved = _buffers_if_training(model)
    try:
        x = inputs.detach().clone().requires_grad_(True)
        with explanation_mode(model), torch.enable_grad():
            logits = model(x)
            if logits.dim() != 2:
                raise ValueError(f"the model must return logits of shape (N, classes), got {tuple(logits.shape)}")
            target_t = resolve_target(target, logits)
            selected = logits.gather(1, target_t[:, None]).sum()
            (weights,) = torch.autograd.grad(selected, x)
    finally:
        _restore_buffers(model, saved)
    return Contributions(inputs.detach() * weights, weights, logits.detach(), target_t, logit_bias(model))


def bcos_contributions(model: nn.Module, inputs: Tensor | tuple[Tensor], target: Target = None,
                       **kwargs: object) -> Tensor | tuple[Tensor]:
    """Attributor: contributions ``x ⊙ W(x)[target]`` of a B-cos model, shaped like ``inputs``.

    Completeness: the contributions of each sample sum to its target logit minus the logit bias. Inputs given
    as a 1-tuple (Captum's convention) give a 1-tuple back.
    """
    if kwargs:
        raise TypeError(f"bcos_contributions takes no options, got {', '.join(sorted(kwargs))}")
    if isinstance(inputs, tuple):
        if len(inputs) != 1:
            raise ValueError(f"B-cos models take one input tensor, got a tuple of {len(inputs)}")
        return (contributions(model, inputs[0], target).contributions,)
    return contributions(model, inputs, target).contributions


def _buffers_if_training(model: nn.Module) -> dict[str, Tensor] | None:
    if not any(m.training for m in model.modules()):
        return None
    return {name: buf.detach().clone() for name, buf in model.named_buffers()}


def _restore_buffers(model: nn.Module, saved: dict[str, Tensor] | None) -> None:
    if saved is None:
        return
    with torch.no_grad():
        for name, buf in model.named_buffers():
            buf.copy_(saved[name])
