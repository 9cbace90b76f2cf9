"""Explicit modules that canonizers put into a model so that attribution rules can be attached to them.

Rule-based attribution (LRP) assigns a rule per module. Operations written inline in ``forward`` (``a + b``,
``torch.cat``, ``x * gate``) are invisible to it, so canonizers route them through these modules. Each module
computes exactly what the inline operation computed; what differs is only that a host (Zennit, Captum) can
recognise it and attach the right rule:

- :class:`Sum` — residual additions; relevance is split in proportion to the summands (LRP-epsilon / "norm").
- :class:`Concat` — concatenations; relevance is routed back to the pieces unchanged.
- :class:`Gate` — multiplicative gates (squeeze-and-excitation); with ``signal_takes_all=True`` (the default,
  as in Pahde et al. 2023) all relevance goes to the gated signal and none to the gate.
- :class:`ThresholdReLU` — the activation left behind when a BatchNorm is merged into the *following* layer
  (BN → ReLU → conv); relevance passes through it unchanged.
- :class:`PositionalBiasConv2d` — a ``Conv2d`` whose bias depends on the output position; produced when a
  BatchNorm is merged into a following zero-padded convolution, where border outputs see fewer input pixels.

Functional calls in ``forward`` are replaced by torch's own modules, which every host already knows:
``F.relu`` → :class:`torch.nn.ReLU`, ``F.adaptive_avg_pool2d`` → :class:`torch.nn.AdaptiveAvgPool2d`,
``torch.flatten(x, 1)`` → :class:`torch.nn.Flatten`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Concat", "ExplicitModule", "Gate", "PositionalBiasConv2d", "Sum", "ThresholdReLU"]


class ExplicitModule(nn.Module):
    """Base of the parameter-free explicit modules (:class:`Sum`, :class:`Concat`, :class:`Gate`,
    :class:`ThresholdReLU`): each computes exactly the inline operation it stands for, so that a host can
    recognise it and attach its rule; tracers keep them as leaves."""


class Sum(ExplicitModule):
    """Elementwise sum of its inputs, ``Sum()(a, b, ...) == a + b + ...`` (broadcasting as ``+`` does).

    Used for residual connections. LRP rule: relevance of the output is distributed to each summand in
    proportion to its contribution, ``R_i = x_i / (sum_j x_j) * R``.
    """

    def forward(self, *inputs: Tensor) -> Tensor:
        if not inputs:
            raise ValueError("Sum needs at least one input tensor")
        out = inputs[0]
        for other in inputs[1:]:
            out = out + other
        return out


class Concat(ExplicitModule):
    """Concatenation of its inputs along ``dim``, ``Concat(dim)(a, b) == torch.cat([a, b], dim)``.

    Used for dense connections. LRP rule: each piece receives the relevance of its slice of the output.
    """

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *inputs: Tensor) -> Tensor:
        return torch.cat(inputs, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Gate(ExplicitModule):
    """Multiplicative gate ``Gate()(signal, gate) == signal * gate`` (the gate broadcasts over the signal).

    Used for squeeze-and-excitation. ``signal_takes_all`` selects the LRP behaviour hosts implement: ``True``
    (default, the paper's choice) sends all relevance of the output to ``signal`` and none to ``gate``, so the
    gate acts as a fixed, input-dependent rescaling; ``False`` attaches no special rule (plain gradient).
    """

    def __init__(self, signal_takes_all: bool = True) -> None:
        super().__init__()
        self.signal_takes_all = signal_takes_all

    def forward(self, signal: Tensor, gate: Tensor) -> Tensor:
        return signal * gate

    def extra_repr(self) -> str:
        return f"signal_takes_all={self.signal_takes_all}"


def _threshold(input: Tensor, threshold: Tensor, flip: Tensor) -> Tensor:
    return torch.where(flip, torch.minimum(input, threshold), torch.maximum(input, threshold))


class _ThresholdPassThrough(torch.autograd.Function):
    """``_threshold`` whose gradient is the identity: the LRP pass-through rule as an autograd function."""

    @staticmethod
    def forward(ctx: Any, input: Tensor, threshold: Tensor, flip: Tensor) -> Tensor:
        return _threshold(input, threshold, flip)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None, None]:
        return grad_output, None, None


class ThresholdReLU(ExplicitModule):
    """Per-channel thresholded activation: ``max(x, t)`` per channel, or ``min(x, t)`` where ``flip`` is set.

    With ``a`` and ``b`` the per-channel scale and shift of a BatchNorm, ``relu(a*x + b) == a*(y - t)`` with
    ``t = -b/a`` and ``y = ThresholdReLU(t, flip=a<0)(x)``, so BN → ReLU → layer can be rewritten as
    ThresholdReLU → layer with ``a`` and the shift folded into the layer's weights and bias (Pahde et al.
    2023). ``threshold`` and ``flip`` have one entry per channel (dimension 1 of the input).
    LRP rule: pass-through (relevance of the output goes unchanged to the input). ``copy=False`` keeps the
    given tensors instead of copies (canonizers pass tensors they just computed and own).

    ``pass_through = True`` (off by default) makes the module apply that rule itself: the output is the same,
    but its gradient goes to the input unchanged, as with Zennit's ``Pass`` hook (a host may set it instead of
    registering a hook on every such module).
    """

    pass_through: bool = False

    def __init__(self, threshold: Tensor, flip: Tensor | None = None, copy: bool = True) -> None:
        super().__init__()
        threshold = threshold.detach()
        flip = torch.zeros_like(threshold, dtype=torch.bool) if flip is None else flip.detach().bool()
        if copy:
            threshold, flip = threshold.clone(), flip.clone()
        if threshold.dim() != 1 or flip.shape != threshold.shape:
            raise ValueError(f"threshold and flip must be 1-d with one entry per channel, got shapes "
                             f"{tuple(threshold.shape)} and {tuple(flip.shape)}")
        self.register_buffer("threshold", threshold)
        self.register_buffer("flip", flip)

    def _per_channel(self, value: Tensor, like: Tensor) -> Tensor:
        if like.dim() < 2 or like.shape[1] != value.numel():
            raise ValueError(f"ThresholdReLU has {value.numel()} channels but got input of shape "
                             f"{tuple(like.shape)} (channels are dimension 1)")
        return value.view(1, -1, *([1] * (like.dim() - 2)))

    def forward(self, input: Tensor) -> Tensor:
        threshold = self._per_channel(self.threshold, input).to(input.dtype)
        flip = self._per_channel(self.flip, input)
        if self.pass_through and input.requires_grad:
            return _ThresholdPassThrough.apply(input, threshold, flip)
        return _threshold(input, threshold, flip)

    def extra_repr(self) -> str:
        return f"channels={self.threshold.numel()}, flipped={int(self.flip.sum())}"


class PositionalBiasConv2d(nn.Conv2d):
    """A ``Conv2d`` plus a position-dependent bias ``conv2d(ones, bias_kernel)`` with the same geometry.

    Merging an affine map ``a*y + d`` on the input into a zero-padded convolution gives weights ``W*a`` and a
    bias ``sum(W*d)`` over the kernel taps that fall inside the image: the bias is smaller at the borders.
    ``bias_kernel`` (shape ``[out_channels, 1, kh, kw]``) holds ``sum_c W[:, c] * d[c]``; convolving it with a
    one-channel image of ones (zero-padded like the input) reproduces that bias exactly at every position.
    ``bias`` stays the ordinary per-channel bias. Only ``padding_mode='zeros'`` needs this class.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros":
            raise ValueError("PositionalBiasConv2d is only needed (and only exact) for padding_mode='zeros'")
        self.register_buffer("bias_kernel", torch.zeros(self.out_channels, 1, *self.kernel_size,
                                                        dtype=self.weight.dtype, device=self.weight.device))

    @classmethod
    def like(cls, conv: nn.Conv2d) -> PositionalBiasConv2d:
        """A new instance with the geometry, dtype and device of ``conv`` (parameters are not copied)."""
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                   padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                   padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)

    def positional_bias(self, input: Tensor) -> Tensor:
        """The bias map for an input of this spatial size, shaped ``[1, out_channels, H_out, W_out]``."""
        ones = torch.ones(1, 1, *input.shape[-2:], dtype=input.dtype, device=input.device)
        return F.conv2d(ones, self.bias_kernel.to(input.dtype), None, self.stride, self.padding, self.dilation)

    def forward(self, input: Tensor) -> Tensor:
        return self._conv_forward(input, self.weight, self.bias) + self.positional_bias(input)
