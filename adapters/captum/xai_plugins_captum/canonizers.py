"""Canonized models for Captum's ``LRP`` and ``LayerLRP``.

Captum's LRP walks the leaf modules of a model and needs, for each one, a propagation rule (``module.rule``)
or a type it knows (``Conv2d``, ``Linear``, pooling, ``BatchNorm2d``, ``ReLU``, ``Dropout``, ``Tanh``).
Everything else goes wrong on a stock torchvision model: additions written as ``+`` in ``forward`` copy the
relevance to both summands (the relevance sum of a ResNet-18 grows to about 1e8 times the logit), a
squeeze-and-excitation product ``scale * x`` counts relevance twice, and ``SiLU`` or ``Hardswish`` leaves
raise ``TypeError``.

:func:`canonized` fixes all of this for the duration of a ``with`` block: it applies the core canonizers of
:mod:`xai_plugins.canonizers` (BatchNorm merged, residual sums, concatenations and gates as explicit
modules), attaches a rule from :data:`CANONIZED_RULES` to every leaf Captum has no default for, and undoes
everything on exit (state dict and forward bitwise, no ``rule`` or hook left), also when the block raises.
The rules (:mod:`xai_plugins_captum.rules`) complete every unit they cannot divide by, and each ruled leaf works on
its own copy of its inputs, so that with them a canonized network conserves relevance (Σ relevance = logit up to
float32 rounding).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from xai_plugins.canonizers import canonizers_for
from xai_plugins.canonizers import modules as canonical
from xai_plugins.canonizers.base import canonizing
from xai_plugins.canonizers.host_rules import host_rules
from xai_plugins_captum._compat import SUPPORTED_NON_LINEAR_LAYERS, PropagationRule
from xai_plugins_captum.rules import FlatRule, PassRule, SignalTakesAllRule, ZeroBiasEpsilonRule, ZPlusRule

RuleFactory = Callable[[], PropagationRule]

_CAPTUM_ATTRIBUTES = ("rule", "activations")
"""Attributes Captum's LRP sets on leaf modules (it deletes ``rule`` after each call but leaves
``activations`` behind); :func:`canonized` restores both to what they were before the block."""


def _optional_torchvision_rules() -> dict[type, RuleFactory]:
    try:
        from torchvision.ops import StochasticDepth
    except ImportError:
        return {}
    return {StochasticDepth: PassRule}


CANONIZED_RULES: dict[type, RuleFactory] = {
    nn.Conv1d: ZPlusRule,
    nn.Conv2d: ZPlusRule,
    nn.Conv3d: ZPlusRule,
    nn.Linear: ZeroBiasEpsilonRule,
    nn.BatchNorm1d: PassRule,
    nn.BatchNorm2d: PassRule,
    nn.BatchNorm3d: PassRule,
    nn.MaxPool1d: FlatRule,
    nn.MaxPool2d: FlatRule,
    nn.MaxPool3d: FlatRule,
    nn.AdaptiveMaxPool2d: FlatRule,
    nn.AvgPool2d: FlatRule,
    nn.AdaptiveAvgPool1d: FlatRule,
    nn.AdaptiveAvgPool2d: FlatRule,
    nn.SiLU: PassRule,
    nn.ReLU6: PassRule,
    nn.Hardswish: PassRule,
    nn.GELU: PassRule,
    nn.LeakyReLU: PassRule,
    nn.ELU: PassRule,
    nn.Mish: PassRule,
    nn.Sigmoid: PassRule,
    nn.Hardsigmoid: PassRule,
    nn.Identity: PassRule,
    nn.Flatten: FlatRule,
    nn.Upsample: FlatRule,
    nn.Sequential: PassRule,  # only an empty Sequential is a leaf: an identity (ShuffleNetV2's branch1)
    canonical.Sum: FlatRule,
    canonical.Concat: FlatRule,
    canonical.Gate: SignalTakesAllRule,
    canonical.ThresholdReLU: PassRule,
    **_optional_torchvision_rules(),
}
"""Rule factory per leaf type, used by :func:`canonized` for every leaf that has no ``rule`` of its own.

Looked up along the type's MRO, so subclasses inherit their parent's rule. Add an entry (or set
``module.rule`` yourself) to support a custom leaf type. ``ReLU``, ``Dropout`` and ``Tanh`` are left to
Captum, which passes relevance through them.
"""


def _private_inputs(module: nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook of every ruled leaf: the leaf gets its own copy of each input tensor.

    Captum turns a layer's input gradient into relevance with a hook on the input tensor, once per tensor, for the
    sum over all its consumers. Where an operation Captum does not see sits between two leaves (a slice
    ``x[:, :k]`` in DPN, a merged norm with children in timm's ``BatchNormAct2d``), relevance that already passed
    that operation meets gradient that has not been converted yet in one tensor (DPN-48b: Σ relevance = 4e12 ×
    logit). With a copy per consumer, each rule converts only its own share and what flows between leaves is
    relevance everywhere.
    """
    return tuple(value.clone() if isinstance(value, torch.Tensor) else value for value in inputs)


def _pass_through_norm(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> Any:
    """Forward hook for a norm module with children that no canonizer merged (timm's ``BatchNormAct2d`` in front
    of a ``SiLU``, "left" in :func:`~xai_plugins.canonizers.graph.explain_canonization`): Captum sees only
    leaves, so its affine map would scale the relevance by its slope like a gradient (DPN-48b: Σ relevance =
    2.3 × logit). Same output; relevance (the gradient in Captum's pass) goes through unchanged, which is the
    bias-free LRP rule of an element-wise affine map."""
    input = inputs[0] if inputs else None
    if not (isinstance(input, torch.Tensor) and isinstance(output, torch.Tensor)) or input.shape != output.shape \
            or not output.requires_grad:
        return None
    return output.detach() + (input - input.detach())


class ContainerRelevance(PropagationRule):
    """The relevance at the output and inputs of a module with children, where Captum's ``LayerLRP`` reads it.

    ``LayerLRP`` reads a layer's relevance from ``layer.rule.relevance_output`` (``relevance_input`` with
    ``attribute_to_layer_input=True``), per device and normalised as Captum's rules store it, but Captum's ``LRP``
    gives rules to leaves only, so ``LayerLRP(model, model.layer4)`` would raise. :func:`canonized` sets one of
    these as the ``rule`` of every module with children (a block, a stage, an ``nn.Sequential``). Its pre-hook
    hands the module a copy of each input tensor and its hook returns a copy of the output; what flows back
    through a copy is relevance (every ruled leaf converts gradient to relevance at its own inputs, and the output
    copy sits before the producing leaf's rule divides by its output), and hooks on the copies record it. Values
    are unchanged; a module that was not called in the last relevance pass (one the graph canonizer lists as
    ``flat``) raises a clear error instead.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._output: dict[torch.device, Any] = {}
        self._inputs: dict[torch.device, dict[int, torch.Tensor]] = {}
        self._input_count = 0

    @property
    def relevance_output(self) -> dict[torch.device, Any]:
        return self._recorded(self._output, "output")

    @property
    def relevance_input(self) -> dict[torch.device, Any]:
        relevance = {device: values[0] if self._input_count == 1 else
                     tuple(values.get(index) for index in range(self._input_count))
                     for device, values in self._inputs.items()}
        return self._recorded(relevance, "inputs")

    def _recorded(self, relevance: dict[torch.device, Any], where: str) -> dict[torch.device, Any]:
        if not relevance:
            raise RuntimeError(
                f"LayerLRP: module '{self.name}' was not called with gradients in the last relevance pass, so its "
                f"{where} have no relevance. A module the graph canonizer keeps flat is not called while canonized "
                "(explain_canonization(model) lists it); use a leaf it feeds, with attribute_to_layer_input=True.")
        return relevance

    def _manipulate_weights(self, module: nn.Module, inputs: Any, outputs: Any) -> None:
        return None

    def pre_hook(self, module: nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not torch.is_grad_enabled():
            return None
        self._inputs = {}
        self._input_count = len(inputs)
        copies = []
        for index, value in enumerate(inputs):
            if isinstance(value, torch.Tensor) and value.requires_grad:
                value = value.clone()
                value.register_hook(self._record_input(index))
            copies.append(value)
        return tuple(copies)

    def hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> Any:
        if not (isinstance(output, torch.Tensor) and output.requires_grad):
            return None
        self._output = {}
        output = output.clone()
        output.register_hook(self._record_output)
        return output

    def _record_output(self, grad: torch.Tensor) -> None:
        self._output[grad.device] = grad.detach()

    def _record_input(self, index: int) -> Callable[[torch.Tensor], None]:
        def record(grad: torch.Tensor) -> None:
            self._inputs.setdefault(grad.device, {})[index] = grad.detach()

        return record


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules in the order Captum's LRP collects them (children, recursively)."""
    return [(name, module) for name, module in model.named_modules() if not any(True for _ in module.children())]


def _rule_factory(module: nn.Module, rules: Mapping[type, RuleFactory]) -> RuleFactory | None:
    return next((rules[cls] for cls in type(module).__mro__ if cls in rules), None)


class _CaptumCanonization:
    """State of one :func:`canonized` block: applied canonizers, attached rules and what to restore."""

    def __init__(self, model: nn.Module, canonizers: Sequence[Any], rules: Mapping[type, RuleFactory]) -> None:
        self.model = model
        self.canonizers = list(canonizers)
        self.rules = rules
        self.applied: list[Any] = []
        self.saved_attributes: dict[nn.Module, dict[str, Any]] | None = None
        self.module_rules: dict[nn.Module, PropagationRule] = {}
        self.state_dict_hook: Any = None
        self.input_hooks: list[Any] = []
        self.inplace: list[nn.Module] = []

    def enter(self) -> None:
        """Canonize and attach rules; on any failure undo what was done and re-raise."""
        try:
            for canonizer in self.canonizers:
                canonizer.apply(self.model)
                self.applied.append(canonizer)
            # canonizers never set these attributes: saved once the canonizers have accepted the model, so a
            # refused block leaves every attribute alone
            self.saved_attributes = {
                module: {key: module.__dict__[key] for key in _CAPTUM_ATTRIBUTES if key in module.__dict__}
                for module in self.model.modules()
            }
            self.module_rules = self._rules_for_leaves()
            self._attach_rules()
            self._disable_inplace()
            self.input_hooks = [module.register_forward_hook(_pass_through_norm) for module in self.model.modules()
                                if isinstance(module, _BatchNorm) and any(True for _ in module.children())]
            self.input_hooks += [module.register_forward_pre_hook(_private_inputs) for module in self.module_rules]
            self._attach_container_relevance()
            self.state_dict_hook = self.model.register_state_dict_pre_hook(self._reattach_rules)
        except BaseException:
            self.exit()
            raise

    def exit(self) -> None:
        """Remove hooks, rules and Captum's leftovers, then the canonizers (last applied first)."""
        try:
            if self.state_dict_hook is not None:
                self.state_dict_hook.remove()
                self.state_dict_hook = None
            while self.input_hooks:
                self.input_hooks.pop().remove()
            if self.saved_attributes is not None:
                for module in self.model.modules():
                    for key in _CAPTUM_ATTRIBUTES:
                        module.__dict__.pop(key, None)
                for module, saved in self.saved_attributes.items():
                    module.__dict__.update(saved)
                self.saved_attributes = None
            while self.inplace:
                self.inplace.pop().inplace = True
        finally:
            while self.applied:
                self.applied.pop().remove()

    def _rules_for_leaves(self) -> dict[nn.Module, PropagationRule]:
        rules: dict[nn.Module, PropagationRule] = {}
        unsupported: list[str] = []
        for name, module in _leaves(self.model):
            if "rule" in module.__dict__:
                rules[module] = module.__dict__["rule"]
                continue
            if type(module) in SUPPORTED_NON_LINEAR_LAYERS:
                continue
            factory = _rule_factory(module, self.rules)
            if factory is None:
                unsupported.append(f"{name or '<model>'} ({type(module).__module__}.{type(module).__qualname__})")
            else:
                rules[module] = factory()
        if unsupported:
            raise TypeError(
                "canonized(): no LRP rule for these leaf modules: "
                + ", ".join(unsupported)
                + ". If a canonizer created them, declare their Captum rule on the canonizer class "
                "(host_rules = {'captum': {ModuleType: RuleFactory}}, see xai_plugins.canonizers.host_rules); "
                "for a module of your own model, set `module.rule` to a captum.attr PropagationRule, or pass "
                "canonized(model, rules={**CANONIZED_RULES, ModuleType: RuleFactory})."
            )
        return rules

    def _attach_container_relevance(self) -> None:
        for name, module in self.model.named_modules():
            if module is self.model or "rule" in module.__dict__ or not any(True for _ in module.children()):
                continue
            container = ContainerRelevance(name)
            module.rule = container
            self.input_hooks.append(module.register_forward_pre_hook(container.pre_hook))
            self.input_hooks.append(module.register_forward_hook(container.hook))

    def _attach_rules(self) -> None:
        for module, rule in self.module_rules.items():
            if "rule" not in module.__dict__:
                module.rule = rule

    def _disable_inplace(self) -> None:
        # A rule needs the layer's input as it was; an in-place activation overwrites it (also Captum's own
        # ReLU, whose input another layer may read).
        for _, module in _leaves(self.model):
            if module.__dict__.get("inplace") is True:
                module.inplace = False
                self.inplace.append(module)

    def _reattach_rules(self, module: nn.Module, prefix: str, keep_vars: bool) -> None:
        # Captum's LRP deletes every ``rule`` at the end of ``attribute``; it takes the model's state dict at
        # the start of the next call, before it looks for rules, so this keeps every call of the block alike.
        self._attach_rules()


class _CanonizedBlock:
    """Holder of a model in a :func:`canonized` block, as the core's concurrency errors name it."""

    def __repr__(self) -> str:
        return "a xai_plugins_captum.canonized() block"


_BLOCK = _CanonizedBlock()


@contextlib.contextmanager
def canonized(
    model: nn.Module,
    canonizers: Sequence[Any] | None = None,
    rules: Mapping[type, RuleFactory] | None = None,
) -> Iterator[nn.Module]:
    """Canonize ``model`` in place for Captum's ``LRP``/``LayerLRP`` for the duration of a ``with`` block.

    ``canonizers`` defaults to :func:`xai_plugins.canonizers.canonizers_for` (raises for unsupported
    families); ``rules`` defaults to :data:`CANONIZED_RULES`, completed by the Captum rules the canonizers
    declare for their own modules (``host_rules``, see :mod:`xai_plugins.canonizers.host_rules`). Leaves that
    already carry a ``rule`` keep it.
    One block holds the model for its thread (:func:`xai_plugins.canonizers.base.canonizing`): a block or a
    canonizer on the same model from another thread meanwhile raises ``RuntimeError`` before it reads or changes
    the model, and a block refused that way (or by a canonizer shared with another thread) changes nothing.
    Yields the model itself. On exit the model is restored exactly: parameters and buffers bitwise, forward
    bitwise, no hooks, no ``rule`` or ``activations`` attributes left (those present before are put back)::

        with canonized(model):
            attribution, delta = LRP(model).attribute(x, target=3, return_convergence_delta=True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"canonized() expects a torch.nn.Module, got {type(model).__name__}")
    with canonizing(model, _BLOCK):  # a block in another thread: the core's clear error, before the model is read
        chosen = canonizers_for(model) if canonizers is None else canonizers
        declared = {kind: factory for canonizer in chosen for kind, factory in host_rules(canonizer, "captum")}
        canonization = _CaptumCanonization(model, chosen,
                                           {**declared, **(CANONIZED_RULES if rules is None else rules)})
        canonization.enter()
        try:
            yield model
        finally:
            canonization.exit()


def missing_rules(canonizer: Any, model: nn.Module, rules: Mapping[type, RuleFactory] | None = None) -> list[str]:
    """Conformance check: leaf module types ``canonizer`` adds to ``model`` that get no Captum LRP rule from
    ``rules`` (default :data:`CANONIZED_RULES`), the canonizer's ``host_rules`` or Captum's own defaults.
    Applies and removes the canonizer on ``model``."""
    table = {**{kind: f for kind, f in host_rules(canonizer, "captum")}, **(CANONIZED_RULES if rules is None
                                                                            else rules)}
    before = {type(module) for module in model.modules()}
    canonizer.apply(model)
    try:
        added = {type(module) for _, module in _leaves(model)} - before
    finally:
        canonizer.remove()
    return sorted(f"{kind.__module__}.{kind.__qualname__}" for kind in added
                  if kind not in SUPPORTED_NON_LINEAR_LAYERS and not any(cls in table for cls in kind.__mro__))
