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

from xai_plugins.bcos.encoding import encode_input
from xai_plugins.bcos.layers import BcosConv2d, BcosLinear, LogitLayer
from xai_plugins.bcos.mode import explanation_mode

Target = int | Sequence[int] | Tensor | None


@dataclass
class Contributions:
    """The result of :func:`contributions`; unpacks as ``contributions, dynamic_weights, logits``.

    Attributes:
        contributions: ``inputs ⊙ dynamic_weights``, shaped like the (encoded) model input.
        dynamic_weights: the row ``W(x)[target]`` of the model's dynamic linear map, shaped like the model input.
        logits: the model outputs ``(N, num_classes)`` (detached).
        target: the explained class per sample ``(N,)``.
        logit_bias: the constant the contributions do not explain (sum of the model's logit-layer biases).
        inputs: what the model was given: the inputs, or ``encode_input(inputs)`` if they were encoded for it.
        encoded: whether the inputs were encoded here (``[x, 1 - x]``) because the model reads the encoding.
    """

    contributions: Tensor
    dynamic_weights: Tensor
    logits: Tensor
    target: Tensor
    logit_bias: float
    inputs: Tensor | None = None
    encoded: bool = False

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
    def image_contributions(self) -> Tensor:
        """Contributions shaped like the image that was passed in: if it was encoded here, the contributions
        of ``x`` and ``1 - x`` of each channel are added (``c[:, :C] + c[:, C:]``), which keeps their sum."""
        return fold_encoded(self.contributions) if self.encoded else self.contributions

    @property
    def delta(self) -> Tensor:
        """Completeness error per sample: ``Σ contributions - (logit - logit_bias)`` (zero up to rounding)."""
        return self.contributions.flatten(1).sum(1) - (self.explained_logits - self.logit_bias)


def logit_bias(model: nn.Module) -> float:
    """The total bias the model's :class:`~xai_plugins.bcos.layers.LogitLayer` modules add (0 if none)."""
    return float(sum(m.bias for m in model.modules() if isinstance(m, LogitLayer)))


def bcos_layers(model: nn.Module) -> list[nn.Module]:
    """The B-cos layers of ``model`` in module order."""
    return [m for m in model.modules() if isinstance(m, (BcosConv2d, BcosLinear))]


def require_bcos_model(model: object, who: str = "B-cos contributions") -> nn.Module:
    """The first B-cos layer of ``model`` (in module order); a clear ``TypeError`` if it has none.

    Input × gradient of a network without B-cos layers is not a contribution map with the B-cos guarantee
    (completeness against the logit bias, alignment), so explaining such a model here would be a silent wrong
    answer.
    """
    layers = bcos_layers(model) if isinstance(model, nn.Module) else []
    if not layers:
        kind = f"a {type(model).__module__}.{type(model).__qualname__}"
        raise TypeError(
            f"{who} need a B-cos network, got {kind} without B-cos layers (BcosConv2d/BcosLinear); build one "
            "with xai_plugins.bcos.create_model(...), convert a torchvision CNN with xai_plugins.bcos.to_bcos(...), "
            "or use an attribution method for standard models (e.g. input x gradient, LRP)")
    return layers[0]


def needs_encoding(model: nn.Module, inputs: Tensor) -> bool:
    """Whether ``inputs`` are images the model reads as ``[x, 1 - x]``: the model's ``in_channels`` (or, without
    that attribute, its first B-cos convolution's) is twice their channel count."""
    first = require_bcos_model(model)
    expected = getattr(model, "in_channels", None)
    if not isinstance(expected, int):
        expected = first.in_channels if isinstance(first, BcosConv2d) else None
    return expected is not None and inputs.dim() >= 2 and expected == 2 * inputs.shape[1]


def fold_encoded(contributions: Tensor) -> Tensor:
    """Contributions of an encoded input ``[x, 1 - x]`` per image channel: ``c[:, :C] + c[:, C:]``."""
    half = contributions.shape[1] // 2
    return contributions[:, :half] + contributions[:, half:]


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

    ``inputs`` are the encoded images (see :func:`xai_plugins.bcos.encode_input`), or the images themselves in
    [0, 1]: when the model's first B-cos layer expects twice their channels, they are encoded here and the
    result says so (``encoded``, ``inputs``; ``image_contributions`` folds the contributions back onto the
    image's channels). A model without B-cos layers raises ``TypeError``. The model is left as it was:
    explanation mode is restored, parameter gradients are not touched, and buffers a training-mode forward
    would update are put back.
    """
    if not torch.is_tensor(inputs) or inputs.dim() < 2:
        shape = tuple(inputs.shape) if torch.is_tensor(inputs) else type(inputs).__name__
        raise ValueError(f"inputs must be a batch (N, C, ...), got {shape}")
    encoded = needs_encoding(model, inputs)
    if encoded:
        inputs = encode_input(inputs)
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
    return Contributions(inputs.detach() * weights, weights, logits.detach(), target_t, logit_bias(model),
                         inputs.detach(), encoded)


def bcos_contributions(model: nn.Module, inputs: Tensor | tuple[Tensor], target: Target = None,
                       **kwargs: object) -> Tensor | tuple[Tensor]:
    """Attributor: contributions ``x ⊙ W(x)[target]`` of a B-cos model, shaped like ``inputs``.

    Completeness: the contributions of each sample sum to its target logit minus the logit bias. Images that
    the model reads encoded (3 channels for a 6-channel model) are encoded here, and the contributions of
    ``x`` and ``1 - x`` are added per channel, so the result is shaped like the images and the sum is kept.
    A model without B-cos layers raises ``TypeError``. Inputs given as a 1-tuple (Captum's convention) give a
    1-tuple back.
    """
    if kwargs:
        raise TypeError(f"bcos_contributions takes no options, got {', '.join(sorted(kwargs))}")
    if isinstance(inputs, tuple):
        if len(inputs) != 1:
            raise ValueError(f"B-cos models take one input tensor, got a tuple of {len(inputs)}")
        return (contributions(model, inputs[0], target).image_contributions,)
    return contributions(model, inputs, target).image_contributions


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
