"""Captum propagation rules for canonized models, each completed so that no unit drops its relevance.

Captum's LRP computes a layer's input relevance as ``x * ∂z/∂x * R / z``: the relevance ``R`` of each output unit
divided by the unit's output ``z`` (the *stand-in* of the rule, see below), pulled back by autograd and multiplied
by the input. Two things lose relevance that way, and both happen all the time in canonized networks:

- a unit whose stand-in output is zero: a depthwise convolution whose receptive field is all zeros after ReLU6 but
  which is active through its (merged) bias, a ``Sum`` of two zeros, a pooling window of zeros. Captum divides
  ``R`` by ``0 + ε`` and multiplies by zero contributions: the unit's relevance is gone;
- an input that is exactly zero receives nothing, whatever its share: ``x * anything = 0``. Pass-through rules
  (activations, merged BatchNorm, ``ThresholdReLU``) therefore drop the relevance of every zero-valued input.

:class:`CompletingRule` fixes both. Its output hook divides by the exact ``z`` (no ε), so every unit with a
non-zero output passes on exactly its relevance (the stand-ins are homogeneous: ``Σ x ∂z/∂x = z``), and hands the
relevance of the units it cannot divide by (``|z|`` below :data:`DEGENERATE`) to a per-rule fallback that does not
multiply by the input: the w² rule for weighted layers, the flat rule (the layer's own map applied to ones) for
sums, concatenations, pooling and reshapes, unchanged for pass-through layers, all of it to the signal for gates.
The fallback's relevance is added to the input's relevance after Captum converted the gradient (a second hook on
the input tensor), so it reaches zero-valued inputs too. Every unit then passes on exactly its relevance:
with these rules a canonized network conserves, Σ relevance = logit up to float32 rounding.

The stand-in replaces the layer's output in Captum's relevance pass only; the model's output comes from Captum's
first, unhooked pass, and Captum resets every ruled layer's input to that pass's activation. Parameters are never
modified, so there is nothing to restore.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.modules.conv import _ConvNd

from xai_plugins.canonizers.modules import PositionalBiasConv2d
from xai_plugins_captum._compat import PropagationRule

__all__ = ["DEGENERATE", "CompletingRule", "FlatRule", "PassRule", "SignalTakesAllRule", "ZPlusRule",
           "ZeroBiasEpsilonRule", "linear_map"]

DEGENERATE = torch.finfo(torch.float32).tiny ** 0.5
"""Outputs with ``|z|`` at or below this (about 1e-19) are not divided by: their relevance goes to the fallback.
Dividing by smaller values could overflow float32 (relevances are of order one, Captum normalises the output to
one); the fallback is exact for any ``z``, so the threshold only decides which of two conservative splits a unit
gets."""

_PLAIN_CONV_FORWARDS = (nn.Conv1d.forward, nn.Conv2d.forward, nn.Conv3d.forward, PositionalBiasConv2d.forward)


def linear_map(module: nn.Module, input: Tensor, weight: Tensor) -> Tensor:
    """The linear map of a ``Linear`` or convolution layer with ``weight`` in place of its own, without any bias.

    Convolutions with torch's own ``forward`` (and :class:`~xai_plugins.canonizers.modules.PositionalBiasConv2d`,
    whose position bias is a bias too) use their padding, stride, dilation, groups and padding mode. A convolution
    class with its own ``forward`` (timm's ``Conv2dSame`` pads dynamically in it) is called through that
    ``forward`` on a shallow copy that holds ``weight`` and no bias (its own parameter table, the one private
    attribute touched), so its padding is kept and the layer's hooks do not run (``torch.func.functional_call``
    would call the module, and with it the Captum rule's own hooks, recursively).
    """
    if isinstance(module, nn.Linear):
        return F.linear(input, weight)
    if not isinstance(module, _ConvNd):
        raise TypeError(f"expected a Linear or convolution layer, got {type(module).__name__}")
    if type(module).forward in _PLAIN_CONV_FORWARDS:
        return module._conv_forward(input, weight, None)
    view = copy.copy(module)
    view.__dict__["_parameters"] = {**module._parameters, "weight": weight, "bias": None}
    return type(module).forward(view, input)


def _weight(module: nn.Module) -> Tensor:
    weight = module.weight
    if not isinstance(weight, Tensor):
        raise TypeError(f"{type(module).__name__} has no weight tensor")
    return weight.detach()


class CompletingRule(PropagationRule):
    """A Captum rule given by a stand-in output, with exact division and a fallback for degenerate units.

    Subclasses define :meth:`stand_in` (default: the layer's own output, i.e. the proportional split of a linear
    map) and :meth:`fallback`; ``receivers`` limits which inputs take relevance (a gate's gate takes none).
    ``epsilon`` > 0 keeps an ε-rule's intended absorption ``R ε / (z + ε)`` for non-degenerate units.
    """

    def __init__(self, epsilon: float = 0.0) -> None:
        self.epsilon = epsilon

    def stand_in(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
        return output

    def receivers(self, inputs: tuple[Tensor, ...]) -> tuple[int, ...]:
        return tuple(range(len(inputs)))

    def fallback(self, module: nn.Module, inputs: tuple[Tensor, ...], missing: Tensor) -> dict[int, Tensor]:
        """Relevance per input index for the output relevance ``missing`` (non-zero only at degenerate units)."""
        raise NotImplementedError

    def _manipulate_weights(self, module: nn.Module, inputs: Any, outputs: Any) -> None:
        return None

    def forward_hook(self, module: nn.Module, inputs: Any, outputs: Tensor) -> Tensor:
        inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        receivers = self.receivers(inputs)
        output = self.stand_in(module, inputs, outputs)
        self._module, self._inputs = module, tuple(x.detach() for x in inputs)
        self._pending: dict[int, Tensor] = {}
        self._has_single_input = len(receivers) == 1
        self._handle_input_hooks = []
        for index in receivers:
            input = inputs[index]
            if not hasattr(input, "hook_registered"):
                self._handle_input_hooks.append(input.register_hook(self._create_backward_hook_input(input.data)))
                input.hook_registered = True
            # registered after Captum's conversion hook of this tensor, so it adds relevance, not gradient
            self._handle_input_hooks.append(input.register_hook(self._completion_hook(index)))
        self._handle_output_hook = output.register_hook(self._create_backward_hook_output(output.data))
        return output.clone()

    def _create_backward_hook_output(self, outputs: Tensor) -> Callable[[Tensor], Tensor]:
        def _backward_hook_output(grad: Tensor) -> Tensor:
            self.relevance_output[grad.device] = grad.data
            degenerate = outputs.abs() <= DEGENERATE
            sign = torch.where(outputs < 0, -1.0, 1.0).to(outputs.dtype)
            divisor = torch.where(degenerate, torch.ones_like(outputs), outputs + self.epsilon * sign)
            # a degenerate unit delivers R * z through the proportional split (divided by one); the rest is missing
            missing = torch.where(degenerate, grad - grad * outputs, torch.zeros_like(grad))
            if bool(missing.any()):
                with torch.enable_grad():
                    self._pending = self.fallback(self._module, self._inputs, missing.detach())
            return grad / divisor

        return _backward_hook_output

    def _completion_hook(self, index: int) -> Callable[[Tensor], None]:
        def _add_fallback(relevance: Tensor) -> None:
            correction = self._pending.pop(index, None)
            if correction is not None:
                # in place: Captum's pass-through layers and LayerLRP read this very tensor (``replace_out``,
                # ``relevance_input``)
                relevance.add_(correction.to(relevance.dtype))

        return _add_fallback


def _flat(forward: Callable[..., Tensor], inputs: tuple[Tensor, ...], missing: Tensor,
          receivers: tuple[int, ...]) -> dict[int, Tensor]:
    """Flat split of ``missing`` through the map ``forward``: each unit's relevance in proportion to the map's
    partial derivatives at ones (for a linear map, its weights), conservative wherever the map of ones is not zero.
    """
    ones = tuple(torch.ones_like(x).requires_grad_(i in receivers) for i, x in enumerate(inputs))
    mapped = forward(*ones)
    total = mapped.detach()
    share = torch.where(total != 0, missing / torch.where(total != 0, total, torch.ones_like(total)),
                        torch.zeros_like(total))
    grads = torch.autograd.grad((mapped * share).sum(), [ones[i] for i in receivers], allow_unused=True)
    return {i: g for i, g in zip(receivers, grads) if g is not None}


class ZPlusRule(CompletingRule):
    """LRP z⁺ with biases ignored (Zennit's ``ZPlus(zero_params='bias')``), z⁻ where an output has no positive
    contribution, and the w² rule where it has no contribution at all; used for convolutions.

    Each output shares its relevance among the inputs in proportion to their positive contributions
    ``x⁺w⁺ + x⁻w⁻``: a sum of non-negative terms, so nothing divides by an output close to zero. Small depthwise
    kernels often see no positive contribution; there the negative contributions (all of one sign, equally stable)
    share it. A unit with no contribution at all (zero receptive field, kept alive by its bias) passes its
    relevance on in proportion to ``w²`` over its receptive field.
    """

    def stand_in(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
        if len(inputs) != 1:
            raise TypeError(f"{type(self).__name__} applies to single-input layers, {type(module).__name__} got "
                            f"{len(inputs)} inputs")
        input, weight = inputs[0], _weight(module)
        z_plus = linear_map(module, input.clamp(min=0), weight.clamp(min=0)) + linear_map(
            module, input.clamp(max=0), weight.clamp(max=0))
        z_minus = linear_map(module, input, weight) - z_plus
        return torch.where(z_plus > 0, z_plus, z_minus)

    def fallback(self, module: nn.Module, inputs: tuple[Tensor, ...], missing: Tensor) -> dict[int, Tensor]:
        square = _weight(module) ** 2
        return _flat(lambda ones: linear_map(module, ones, square), inputs, missing, (0,))


class ZeroBiasEpsilonRule(ZPlusRule):
    """LRP ε with biases ignored, as Zennit's ``Epsilon(zero_params='bias')``; used for dense layers.

    Merging BatchNorm gives every layer a bias; with Captum's plain ``EpsilonRule`` biases soak up relevance.
    ``epsilon`` absorbs ``R ε / (z + ε)`` by design; a unit with no contribution at all gets the w² rule.
    """

    def __init__(self, epsilon: float = 1e-6) -> None:
        super().__init__(epsilon=epsilon)

    def stand_in(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
        return linear_map(module, inputs[0], _weight(module))


class PassRule(CompletingRule):
    """Relevance passes unchanged from output to input (Zennit's ``Pass``), for element-wise layers.

    Used for activations Captum does not know (``SiLU``, ``Hardswish``, the ``ThresholdReLU`` of a merged
    BatchNorm), for BatchNorm leaves (identities once merged) and identity-like leaves (``Identity``,
    ``StochasticDepth``). The stand-in is the input itself, so ``x * (R / x) = R``; where the input is zero the
    fallback hands ``R`` over directly.
    """

    def stand_in(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
        if len(inputs) != 1:
            raise TypeError(f"{type(self).__name__} applies to single-input layers, {type(module).__name__} got "
                            f"{len(inputs)} inputs")
        return inputs[0].clone()

    def fallback(self, module: nn.Module, inputs: tuple[Tensor, ...], missing: Tensor) -> dict[int, Tensor]:
        return {0: missing}


class FlatRule(CompletingRule):
    """Proportional split through the layer's own map (``Sum``, ``Concat``, pooling, ``Flatten``, ``Upsample``):
    each input gets its contribution's share of the output's relevance, as Captum's ``EpsilonRule`` without ε;
    an output that is zero passes its relevance on through the flat rule (the map applied to ones: equal shares
    for a sum or an average, the slice for a concatenation, one input for a maximum).
    """

    def fallback(self, module: nn.Module, inputs: tuple[Tensor, ...], missing: Tensor) -> dict[int, Tensor]:
        return _flat(module.forward, inputs, missing, self.receivers(inputs))


class SignalTakesAllRule(CompletingRule):
    """Gate rule of Pahde et al.: the whole relevance of ``signal * gate`` goes to the signal, none to the gate.

    Used for the explicit gate module that replaces squeeze-and-excitation products (Captum's generic multi-input
    handling would hand the full relevance to both factors). The stand-in holds the gate constant; where the
    product is zero (a hard-sigmoid gate at zero) the signal takes the relevance directly.
    """

    def stand_in(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
        return inputs[0] * inputs[1].detach()

    def receivers(self, inputs: tuple[Tensor, ...]) -> tuple[int, ...]:
        return (0,)

    def fallback(self, module: nn.Module, inputs: tuple[Tensor, ...], missing: Tensor) -> dict[int, Tensor]:
        return {0: missing.sum_to_size(inputs[0].shape)}
