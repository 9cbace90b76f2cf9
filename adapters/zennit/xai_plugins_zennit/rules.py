"""Zennit rules for the explicit modules of the canonizers, and the conserving completion of layer rules.

- :class:`SumRule` for :class:`~xai_plugins.canonizers.modules.Sum`: relevance split in proportion to the
  summands (as Zennit's ``Norm`` does for its own ``Sum``).
- :class:`SignalTakesAllRule` for a signal-takes-all :class:`~xai_plugins.canonizers.modules.Gate`: all relevance
  to the signal, none to the gate (Pahde et al. 2023).
- :func:`pass_through` for :class:`~xai_plugins.canonizers.modules.ThresholdReLU`.
- :class:`ConservingFallbackRule` for convolutions and linear layers: completes whatever bias-free ``BasicHook``
  rule the composite put on the layer (z⁺, α-β, Flat, ZBox, ...) where that rule is degenerate.

Why the completion: a bias-free LRP rule divides a unit's relevance by a part of its pre-activation, z⁺ by
``p = Σ x⁺w⁺ + x⁻w⁻`` and α-β additionally by ``n = Σ x⁺w⁻ + x⁻w⁺``. Where that part is exactly zero the
stabiliser divides zero and the share is lost (z⁺), or not subtracted (α-β gives α·R instead of R). It happens
often in depthwise convolutions (9 or 25 inputs, many zeroed by ReLU/ReLU6), behind mixed-sign activations
(Hardswish, SiLU) and in units kept alive only by their bias (all contributions zero, output = bias > 0); where the
part is merely tiny, the stabiliser takes a share of the relevance away (α-β with ``n = 1e-7`` passes on 1.9·R).
The completion computes, per unit, the share ``s`` the composite's rule delivers (from the rule's own modifiers,
mapper and reducer) and hands the missing ``(1 − s)·R`` to the unit's inputs: in
proportion to the positive contributions if there are any, else to the negative ones, else (no contribution at
all) in proportion to ``w²`` (the w² rule). Every unit then passes on exactly its relevance, so a bias-free
composite conserves: Σ relevance = logit up to float32 rounding. ``Epsilon`` is completed only in units with
``p == 0`` or ``n == 0`` (its ε absorbs relevance on purpose), and rules that use biases (their non-conservation
is the rule's nature) are left to the composite.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from zennit.core import BasicHook, Hook, ParamMod, stabilize
from zennit.rules import Epsilon, Pass

from xai_plugins.canonizers.modules import Gate, Sum, ThresholdReLU
from xai_plugins_zennit.compat import basic_rule_on

__all__ = ["ConservingFallbackRule", "RuleFactory", "SignalTakesAllRule", "SumRule", "conserving_fallback",
           "default_rules", "pass_through"]

RuleFactory = Callable[[nn.Module], "Hook | None"]


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


def _linear_map(module: nn.Module, input: Tensor, weight: Tensor) -> Tensor:
    """The layer's linear map with ``weight`` and without any bias.

    Computed with the layer's own ``forward``, so that padding done there (timm's ``Conv2dSame`` pads
    dynamically) is part of the map: every parameter but ``weight`` is set to zero through Zennit's ``ParamMod``
    (as Zennit's own rules modify a layer), and what buffers add at zero input (a positional bias) is subtracted.
    ``forward`` is called directly, so the rules registered as hooks on the layer do not see these calls.
    """
    def modifier(param: Tensor, name: str) -> Tensor:
        return weight if name == "weight" else torch.zeros_like(param, dtype=weight.dtype)

    with ParamMod(modifier, require_params=False)(module) as modified:
        output = modified.forward(input)
        if next(module.buffers(recurse=False), None) is not None:
            output = output - modified.forward(torch.zeros_like(input))
    return output


def _delivered_share(rule: BasicHook, module: nn.Module, x: Tensor) -> Tensor | None:
    """Per output unit, the share of its relevance that ``rule`` passes on to the inputs; ``None`` if the rule
    uses a bias (or any other input-independent term), whose loss is the rule's nature, not a degeneracy.

    All of Zennit's ``BasicHook`` rules reduce with sums of ``input_k * gradient_k``; by homogeneity of the
    modified bias-free layers ``Σ_i in_k,i ∂z_k/∂in_k,i = z_k``, so the reducer applied per unit to the modified
    outputs ``z_k`` and the mapped gradients of a unit relevance gives that unit's delivered share.
    """
    outputs, offsets = [], []
    for in_mod, param_mod, out_mod in zip(rule.input_modifiers, rule.param_modifiers, rule.output_modifiers):
        with ParamMod.ensure(param_mod)(module) as modified:
            output = out_mod(modified.forward(in_mod(x)))
            offsets.append(out_mod(modified.forward(torch.zeros_like(x))))
        outputs.append(output)
    gradients = list(rule.gradient_mapper(torch.ones_like(outputs[0]), outputs))
    if bool(rule.reducer(offsets, gradients).any()):
        return None
    return rule.reducer([output - offset for output, offset in zip(outputs, offsets)], gradients)


class ConservingFallbackRule(Hook):
    """Completes the composite's bias-free rule on a convolution or linear layer where it is degenerate (see the
    module docstring). Registered by the canonizer *before* the composite's rule, so its backward runs after it
    (closer to the input) and adds the missing share to the composite's result. Does nothing where the layer has
    no ``BasicHook`` rule, where the rule uses biases, or where no unit is degenerate.
    """

    def forward(self, module: nn.Module, input: tuple[Tensor, ...], output: Tensor) -> None:
        rule = basic_rule_on(module, self)
        self.stored_tensors["input"] = input[0].detach() if rule is not None else None
        self.stored_tensors["rule"] = rule

    def backward(self, module: nn.Module, grad_input, grad_output):
        x, rule = self.stored_tensors.get("input"), self.stored_tensors.get("rule")
        if x is None or rule is None or grad_input[0] is None or grad_input[0].shape != x.shape:
            return None
        relevance = grad_output[0]
        total = float(relevance.abs().sum())
        if abs(float(relevance.sum() - grad_input[0].sum())) <= 1e-6 * total:
            return None  # the composite's rule conserved at this layer within float32 rounding: nothing to complete
        weight = module.weight.detach()
        with torch.no_grad():
            x_pos, x_neg = x.clamp(min=0), x.clamp(max=0)
            w_pos, w_neg = weight.clamp(min=0), weight.clamp(max=0)
            positive = _linear_map(module, x_pos, w_pos) + _linear_map(module, x_neg, w_neg)
            negative = _linear_map(module, x_pos, w_neg) + _linear_map(module, x_neg, w_pos)
            # Epsilon's ε is a modelling choice (it absorbs on purpose): complete only where it has nothing to
            # divide; for every other rule the stabiliser is numerical, so complete every unit
            incomplete = (positive == 0) | (negative == 0) if isinstance(rule, Epsilon) else relevance != 0
            if not bool((incomplete & (relevance != 0)).any()):
                return None
            share = _delivered_share(rule, module, x)
            if share is None:
                return None
            missing = torch.where(incomplete, relevance * (1 - share), torch.zeros_like(relevance))
        if not bool(missing.any()):
            return None
        # the split divides by contributions that can be denormal; float64 keeps it finite
        correction = _distribute(module, x.double(), weight.double(), missing.double(), positive, negative)
        return (grad_input[0] + correction.to(grad_input[0].dtype), *grad_input[1:])

    def copy(self) -> ConservingFallbackRule:
        return ConservingFallbackRule()


def _distribute(module: nn.Module, x: Tensor, weight: Tensor, missing: Tensor, positive: Tensor,
                negative: Tensor) -> Tensor:
    """Input relevance for ``missing`` output relevance: by positive contributions where a unit has any, else by
    its negative ones, else by ``w²``; conservative per unit (each unit's ``missing`` is passed on in full)."""
    by_positive = torch.where(positive > 0, missing, torch.zeros_like(missing))
    by_negative = torch.where((positive <= 0) & (negative < 0), missing, torch.zeros_like(missing))
    by_square = missing - by_positive - by_negative
    with torch.enable_grad():
        x_pos = x.clamp(min=0).requires_grad_()
        x_neg = x.clamp(max=0).requires_grad_()
        ones = torch.ones_like(x).requires_grad_()
        w_pos, w_neg = weight.clamp(min=0), weight.clamp(max=0)
        p = _linear_map(module, x_pos, w_pos) + _linear_map(module, x_neg, w_neg)
        n = _linear_map(module, x_pos, w_neg) + _linear_map(module, x_neg, w_pos)
        s = _linear_map(module, ones, weight * weight)
        total = (p * (by_positive / torch.where(p != 0, p, torch.ones_like(p))).detach()).sum() \
            + (n * (by_negative / torch.where(n != 0, n, torch.ones_like(n))).detach()).sum() \
            + (s * (by_square / torch.where(s != 0, s, torch.ones_like(s))).detach()).sum()
        g_pos, g_neg, g_ones = torch.autograd.grad(total, (x_pos, x_neg, ones))
    return x_pos.detach() * g_pos + x_neg.detach() * g_neg + g_ones


def pass_through(module: nn.Module) -> Pass:
    """Rule factory for :class:`ThresholdReLU`: relevance passes unchanged. The Zennit canonizer does not call it
    but switches on the module's ``pass_through`` (the same gradient, no hooks); called directly, it gives
    Zennit's ``Pass``."""
    return Pass()


def conserving_fallback(module: nn.Module) -> ConservingFallbackRule:
    """Rule factory for convolutions and linear layers: :class:`ConservingFallbackRule`."""
    return ConservingFallbackRule()


def default_rules() -> list[tuple[type[nn.Module] | tuple[type[nn.Module], ...], RuleFactory]]:
    """``(module type, factory)`` pairs: the rule each explicit module gets (``None``: no rule). The first
    matching entry wins, so entries put before these override them."""
    return [
        (Sum, lambda module: SumRule()),
        (Gate, lambda module: SignalTakesAllRule() if module.signal_takes_all else None),
        (ThresholdReLU, pass_through),
        ((nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear), conserving_fallback),
    ]
