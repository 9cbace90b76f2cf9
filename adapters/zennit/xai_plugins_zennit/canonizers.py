"""Canonizers for Zennit, with the Zennit rules of the explicit modules attached by the canonizer itself.

``EpsilonPlusFlat(canonizers=canonizers_for(model))`` just works: when a composite applies the canonizer, the
canonizer first rewrites the model (see :mod:`xai_plugins.canonizers`) and then registers, on the modules it
introduced, the rules that Zennit's layer maps do not know about:

- :class:`~xai_plugins.canonizers.modules.Sum` → :class:`SumRule` (relevance split in proportion to the
  summands, as Zennit's ``Norm`` does for its own ``Sum``),
- :class:`~xai_plugins.canonizers.modules.Gate` → :class:`SignalTakesAllRule` (all relevance to the signal),
- :class:`~xai_plugins.canonizers.modules.ThresholdReLU` → Zennit's ``Pass``.

These rules are independent of the composite, so any composite (``EpsilonPlusFlat``, ``EpsilonGammaBox``,
a custom ``LayerMapComposite``) gets them; the composite's own layer map still decides convolutions, linear
layers, activations and pooling. ``Concat`` needs no rule (the gradient routes relevance slices exactly).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from zennit.core import Hook, RemovableHandleList, stabilize
from zennit.rules import Pass

from xai_plugins.canonizers.base import Canonizer
from xai_plugins.canonizers.modules import Gate, Sum, ThresholdReLU
from xai_plugins.canonizers.selection import canonizers_for as _core_canonizers_for

__all__ = ["SignalTakesAllRule", "SumRule", "ZennitCanonizer", "canonizers_for", "default_rules", "for_zennit"]


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


def default_rules() -> list[tuple[type[nn.Module], Callable[[nn.Module], Hook | None]]]:
    """``(module type, factory)`` pairs: the rule each explicit module gets (``None``: no rule)."""
    return [
        (Sum, lambda module: SumRule()),
        (Gate, lambda module: SignalTakesAllRule() if module.signal_takes_all else None),
        (ThresholdReLU, lambda module: Pass()),
    ]


class ZennitCanonizer:
    """A core canonizer plus the Zennit rules for the modules it introduces (Zennit's canonizer interface).

    ``apply`` canonizes, then registers the rules; ``remove`` removes the rules, then reverts the canonizer.
    Both are atomic and safe to repeat.
    """

    def __init__(self, canonizer: Canonizer, rules: list | None = None) -> None:
        self.canonizer = canonizer
        self.rules = default_rules() if rules is None else rules
        self._rule_handles = RemovableHandleList()
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
            for module in root_module.modules():
                for module_type, factory in self.rules:
                    if isinstance(module, module_type):
                        rule = factory(module)
                        if rule is not None:
                            self._rule_handles.append(rule.register(module))
                        break
        except BaseException:
            self.remove()
            raise
        self._applied = True
        return [self]

    def remove(self) -> None:
        """Remove the rules and revert the canonizer; safe to call more than once."""
        self._rule_handles.remove()
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
