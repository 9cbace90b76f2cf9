"""Canonizers for Zennit, with the Zennit rules of the explicit modules attached by the canonizer itself.

``EpsilonPlusFlat(canonizers=canonizers_for(model))`` just works: when a composite applies the canonizer, the
canonizer first rewrites the model (see :mod:`xai_plugins.canonizers`) and then registers, on the modules it
introduced, the rules that Zennit's layer maps do not know about:

- :class:`~xai_plugins.canonizers.modules.Sum` → :class:`SumRule` (relevance split in proportion to the
  summands, as Zennit's ``Norm`` does for its own ``Sum``),
- :class:`~xai_plugins.canonizers.modules.Gate` → :class:`SignalTakesAllRule` (all relevance to the signal),
- :class:`~xai_plugins.canonizers.modules.ThresholdReLU` → pass-through (:func:`pass_through`: the module's own
  ``pass_through`` switch, the same gradient as Zennit's ``Pass`` without registering three hooks per module),
- convolutions → :class:`ZPlusFallbackRule`, which completes the composite's z⁺ rule where a unit has no
  positive contribution (z⁺ would divide by the stabiliser and lose its relevance); attached only in models with
  negative-valued activations (SiLU, Hardswish, …) and active only where the composite's rule is z⁺.

These rules are independent of the composite, so any composite (``EpsilonPlusFlat``, ``EpsilonGammaBox``,
a custom ``LayerMapComposite``) gets them; the composite's own layer map still decides convolutions, linear
layers, activations and pooling. ``Concat`` needs no rule (the gradient routes relevance slices exactly).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from zennit.core import Hook, RemovableHandleList, stabilize
from zennit.rules import AlphaBeta, Pass, ZPlus

from xai_plugins.canonizers.base import Canonizer, modules_of
from xai_plugins.canonizers.modules import Gate, Sum, ThresholdReLU
from xai_plugins.canonizers.selection import canonizers_for as _core_canonizers_for

__all__ = ["MIXED_SIGN_ACTIVATIONS", "SignalTakesAllRule", "SumRule", "ZPlusFallbackRule", "ZennitCanonizer",
           "canonizers_for", "default_rules", "for_zennit", "pass_through", "zplus_fallback"]

_MISSING = object()


def _reduce_to(tensor: Tensor, like: Tensor) -> Tensor:
    return tensor if tensor.shape == like.shape else tensor.sum_to_size(like.shape)


class SumRule(Hook):
    """LRP rule for :class:`~xai_plugins.canonizers.modules.Sum`: ``R_i = x_i / stabilize(sum_j x_j) * R``."""

    def __init__(self, stabilizer: float = 1e-6) -> None:
        super().__init__()
        self.stabilizer = stabilizer

    def forward(self, module: nn.Module, input: tuple[Tensor, ...], output: Tensor) -> None:
        self.stored_tensors["input"] = input

    def backward(self, module: nn.Module, grad_input, grad_output):
        inputs = self.stored_tensors["input"]
        total = inputs[0]
        for other in inputs[1:]:
            total = total + other
        ratio = grad_output[0] / stabilize(total, self.stabilizer)
        return tuple(None if grad is None else _reduce_to(x * ratio, x) for x, grad in zip(inputs, grad_input))

    def copy(self) -> SumRule:
        return SumRule(self.stabilizer)


class SignalTakesAllRule(Hook):
    """LRP rule for :class:`~xai_plugins.canonizers.modules.Gate`: the signal receives all relevance of the
    output, the gate none (Pahde et al. 2023)."""

    def backward(self, module: nn.Module, grad_input, grad_output):
        signal, gate = grad_input[0], grad_input[1] if len(grad_input) > 1 else None
        relevance = None if signal is None else _reduce_to(grad_output[0], signal)
        return (relevance, None if gate is None else torch.zeros_like(gate))

    def copy(self) -> SignalTakesAllRule:
        return SignalTakesAllRule()


def _composite_uses_zplus(module: nn.Module, own: Hook) -> bool:
    """Whether another Zennit rule registered on ``module`` is z⁺ (``ZPlus`` or ``AlphaBeta(1, 0)``)."""
    for hook in module._forward_hooks.values():
        rule = getattr(hook, "__self__", None)
        if rule is own:
            continue
        if isinstance(rule, ZPlus) or (isinstance(rule, AlphaBeta) and rule.alpha == 1 and rule.beta == 0):
            return True
    return False


class ZPlusFallbackRule(Hook):
    """Completes z⁺ on a convolution: units without any positive contribution get the z⁻ rule instead.

    z⁺ divides a unit's relevance by the sum of its positive contributions ``x_i w_i > 0`` (biases ignored). A
    depthwise unit has only 9 or 25 inputs (fewer at borders), so with mixed-sign inputs (Hardswish, SiLU) it
    happens that none is positive; the relevance that unit received is then divided by the stabiliser and
    lost. This rule hands such a unit's relevance to its negative contributions in proportion (the z⁻ rule), so
    every unit with any non-zero contribution conserves. It is registered by the canonizer *before* the
    composite's rule, so its backward runs after it (closer to the input) and adds the missing share to the
    composite's result. It does nothing if the composite's rule on the module is not z⁺.
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        super().__init__()
        self.stabilizer = stabilizer

    def forward(self, module: nn.Module, input: tuple[Tensor, ...], output: Tensor) -> None:
        self.stored_tensors["input"] = input[0].detach() if _composite_uses_zplus(module, self) else None

    def backward(self, module: nn.Module, grad_input, grad_output):
        x = self.stored_tensors.get("input")
        if x is None or grad_input[0] is None:
            return None
        relevance = grad_output[0]
        if abs(float(relevance.sum() - grad_input[0].sum())) <= 1e-6 * float(relevance.abs().sum()):
            return None  # the composite's z⁺ conserved here (within rounding): nothing to complete
        weight = module.weight.detach()
        with torch.enable_grad():
            x_pos = x.clamp(min=0).requires_grad_()
            x_neg = x.clamp(max=0).requires_grad_()
            positive = module._conv_forward(x_pos, weight.clamp(min=0), None) + \
                module._conv_forward(x_neg, weight.clamp(max=0), None)
            negative = module._conv_forward(x_pos, weight.clamp(max=0), None) + \
                module._conv_forward(x_neg, weight.clamp(min=0), None)
        lost = torch.where(positive == 0, grad_output[0], torch.zeros_like(grad_output[0]))
        if not bool(lost.any()):
            return None
        grad_pos, grad_neg = torch.autograd.grad(negative, (x_pos, x_neg), lost / stabilize(negative, self.stabilizer))
        return (grad_input[0] + x_pos.detach() * grad_pos + x_neg.detach() * grad_neg, *grad_input[1:])

    def copy(self) -> ZPlusFallbackRule:
        return ZPlusFallbackRule(self.stabilizer)


def default_rules() -> list[tuple[type[nn.Module], Callable[[nn.Module], Hook | None]]]:
    """``(module type, factory)`` pairs: the rule each explicit module gets (``None``: no rule)."""
    return [
        (Sum, lambda module: SumRule()),
        (Gate, lambda module: SignalTakesAllRule() if module.signal_takes_all else None),
        (ThresholdReLU, pass_through),
        (nn.Conv2d, zplus_fallback),
    ]


MIXED_SIGN_ACTIVATIONS = (nn.SiLU, nn.Hardswish, nn.GELU, nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.LeakyReLU,
                          nn.PReLU, nn.Tanh, nn.Softsign, nn.Tanhshrink)
"""Activations with negative outputs: behind them a unit can receive relevance with no positive contribution."""


def pass_through(module: nn.Module) -> Pass:
    """Rule factory for :class:`ThresholdReLU`: relevance passes unchanged. :class:`ZennitCanonizer` does not call
    it but switches on the module's ``pass_through`` (the same gradient, no hooks); called directly, it gives
    Zennit's ``Pass``."""
    return Pass()


def zplus_fallback(module: nn.Module) -> ZPlusFallbackRule:
    """Rule factory for convolutions; :class:`ZennitCanonizer` uses it only in models with an activation from
    :data:`MIXED_SIGN_ACTIVATIONS` (in ReLU networks z⁺ conserves, and the extra hook would only cost time)."""
    return ZPlusFallbackRule()


class ZennitCanonizer:
    """A core canonizer plus the Zennit rules for the modules it introduces (Zennit's canonizer interface).

    ``apply`` canonizes, then registers the rules; ``remove`` removes the rules, then reverts the canonizer.
    Both are atomic and safe to repeat.
    """

    def __init__(self, canonizer: Canonizer, rules: list | None = None) -> None:
        self.canonizer = canonizer
        self.rules = default_rules() if rules is None else rules
        self._rule_handles = RemovableHandleList()
        self._switched: list[tuple[nn.Module, object]] = []
        self._applied = False

    def __repr__(self) -> str:
        return f"ZennitCanonizer({self.canonizer!r})"

    def apply(self, root_module: nn.Module) -> list:
        """Canonize ``root_module`` and attach the rules; returns one handle (``remove()`` reverts all)."""
        if self._applied and self.canonizer.applied:
            self.canonizer.apply(root_module)
            return [self]
        self.canonizer.apply(root_module)
        try:
            modules = modules_of(root_module)
            kinds = {type(module) for module in modules}
            mixed_sign = not kinds.isdisjoint(MIXED_SIGN_ACTIVATIONS) or \
                getattr(self.canonizer, "mixed_sign_inputs", False)
            factories: dict[type, Callable[[nn.Module], Hook | None]] = {}  # the first matching rule per type
            for kind in kinds:
                factory = next((factory for module_type, factory in self.rules if issubclass(kind, module_type)),
                               None)
                if factory is not None and (factory is not zplus_fallback or mixed_sign):
                    factories[kind] = factory
            for module in [module for module in modules if type(module) in factories] if factories else ():
                factory = factories[type(module)]
                if factory is pass_through and isinstance(module, ThresholdReLU):
                    self._switched.append((module, module.__dict__.get("pass_through", _MISSING)))
                    module.__dict__["pass_through"] = True
                    continue
                rule = factory(module)
                if rule is not None:
                    self._rule_handles.append(rule.register(module))
        except BaseException:
            self.remove()
            raise
        self._applied = True
        return [self]

    def remove(self) -> None:
        """Remove the rules and revert the canonizer; safe to call more than once."""
        self._rule_handles.remove()
        while self._switched:
            module, old = self._switched.pop()
            if old is _MISSING:
                module.__dict__.pop("pass_through", None)
            else:
                module.__dict__["pass_through"] = old
        self.canonizer.remove()
        self._applied = False

    def copy(self) -> ZennitCanonizer:
        """A fresh, unapplied copy (Zennit copies canonizers for each attribution)."""
        return ZennitCanonizer(self.canonizer.copy(), self.rules)


def for_zennit(canonizer: Canonizer) -> ZennitCanonizer:
    """Wrap any xai-plugins canonizer (e.g. ``MergeBatchNorm()``) so that its modules get Zennit rules."""
    return ZennitCanonizer(canonizer)


def canonizers_for(model: nn.Module) -> list[ZennitCanonizer]:
    """Zennit-ready canonizers for ``model``: ``EpsilonPlusFlat(canonizers=canonizers_for(model))``.

    Raises the core's clear error (supported families, how to register one) for an unknown model type.
    """
    return [ZennitCanonizer(canonizer) for canonizer in _core_canonizers_for(model)]
