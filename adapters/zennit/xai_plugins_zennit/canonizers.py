"""Canonizers for Zennit, with the Zennit rules of the explicit modules attached by the canonizer itself.

``EpsilonPlusFlat(canonizers=canonizers_for(model))`` just works: when a composite applies the canonizer, the
canonizer first rewrites the model (see :mod:`xai_plugins.canonizers`) and then registers, on the modules it
introduced, the rules of :mod:`xai_plugins_zennit.rules` (``Sum``, ``Gate``, ``ThresholdReLU``) and the conserving
completion of the composite's rule on every convolution and linear layer. A plugin's canonizer adds rules for its
own explicit modules through its ``host_rules`` attribute (see :mod:`xai_plugins.canonizers.host_rules`).

These rules are independent of the composite, so any composite (``EpsilonPlusFlat``, ``EpsilonGammaBox``,
``NameMapComposite``, a custom ``LayerMapComposite``) gets them; the composite's own map still decides
convolutions, linear layers, activations and pooling. ``Concat`` needs no rule (the gradient routes relevance
slices exactly).

A core canonizer (``xai_plugins.canonizers.canonizers_for(model)``, ``ResNetCanonizer()``, the registry's
``xai_plugins.get("canonizer", name)()``) handed to a Zennit composite directly gets the same rules: importing this
module installs :func:`_zennit_extension` as the core's apply extension, which acts only when the caller of
``apply`` is Zennit itself.

On both supported Zennit releases an attribution leaves the model as it was: the Parameter objects are the
user's own again on ``remove`` (see :class:`~xai_plugins_zennit.compat.ParameterIdentity`).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from zennit.core import Hook, RemovableHandleList

from xai_plugins.canonizers import base
from xai_plugins.canonizers.base import Canonizer
from xai_plugins.canonizers.host_rules import host_rules
from xai_plugins.canonizers.modules import ThresholdReLU
from xai_plugins.canonizers.selection import canonizers_for as _core_canonizers_for
from xai_plugins_zennit import compat
from xai_plugins_zennit.rules import (
    ConservingFallbackRule,
    RuleFactory,
    SignalTakesAllRule,
    SumRule,
    default_rules,
    pass_through,
)

__all__ = ["ConservingFallbackRule", "SignalTakesAllRule", "SumRule", "ZennitCanonizer", "canonizers_for",
           "default_rules", "for_zennit", "host_rules", "missing_rules", "pass_through"]

_MISSING = object()


class _ZennitRules:
    """The Zennit rules of one canonized model: registered by ``attach``, removed by ``detach``.

    The rules are LRP rules (relevance split by contributions, all relevance to a gate's signal, pass-through
    thresholds, the conserving completion). Under a composite that puts no LRP rule on the model (Zennit's
    ``GuidedBackprop`` modifies ReLU gradients only) they would rescale a gradient instead, so before every
    forward of the model they are switched on only where some other active ``BasicHook`` rule is registered on
    it (see :func:`~xai_plugins_zennit.compat.relevance_rules_registered`); otherwise the explicit modules pass
    their plain gradient, and the canonized model's gradient is the original model's.
    """

    def __init__(self, rules: list) -> None:
        self.rules = rules
        self.handles = RemovableHandleList()
        self.registered: list[Hook] = []
        self.switched: list[tuple[nn.Module, object]] = []

    def attach(self, root: nn.Module) -> None:
        factories: dict[type, RuleFactory | None] = {}
        for module in root.modules():
            kind = type(module)
            if kind not in factories:
                factories[kind] = next((factory for module_type, factory in self.rules
                                        if issubclass(kind, module_type)), None)
            factory = factories[kind]
            if factory is None:
                continue
            if factory is pass_through and isinstance(module, ThresholdReLU):
                self.switched.append((module, module.__dict__.get("pass_through", _MISSING)))
                module.__dict__["pass_through"] = True
                continue
            rule = factory(module)
            if rule is not None:
                self.handles.append(rule.register(module))
                self.registered.append(rule)
        if self.registered or self.switched:
            self.handles.append(root.register_forward_pre_hook(self._select))

    def _select(self, root: nn.Module, args: tuple) -> None:
        """Forward pre-hook of the model: switch the rules on for a relevance composite, off for a gradient one."""
        relevance = compat.relevance_rules_registered(root, self.registered)
        for rule in self.registered:
            rule.active = relevance
        for module, _ in self.switched:
            module.__dict__["pass_through"] = relevance

    def detach(self) -> None:
        self.handles.remove()
        self.handles = RemovableHandleList()
        self.registered = []
        while self.switched:
            module, old = self.switched.pop()
            if old is _MISSING:
                module.__dict__.pop("pass_through", None)
            else:
                module.__dict__["pass_through"] = old


class ZennitCanonizer:
    """A core canonizer plus the Zennit rules for the modules it introduces (Zennit's canonizer interface).

    ``apply`` records the model's Parameter objects, canonizes, then registers the rules; ``remove`` removes the
    rules, reverts the canonizer and puts back the user's Parameter objects. Both are atomic and safe to repeat.
    ``rules`` (``(module type, factory)`` pairs, first match wins) defaults to the canonizer's own
    :func:`host_rules` followed by :func:`~xai_plugins_zennit.rules.default_rules`.
    """

    def __init__(self, canonizer: Canonizer, rules: list | None = None) -> None:
        self.canonizer = canonizer
        self.rules = host_rules(canonizer, "zennit") + default_rules() if rules is None else rules
        self._attached = _ZennitRules(self.rules)
        self._parameters = compat.ParameterIdentity()
        self._applied = False

    def __repr__(self) -> str:
        return f"ZennitCanonizer({self.canonizer!r})"

    def apply(self, root_module: nn.Module) -> list:
        """Canonize ``root_module`` and attach the rules; returns one handle (``remove()`` reverts all)."""
        if self._applied and self.canonizer.applied:
            self.canonizer.apply(root_module)
            return [self]
        self._parameters.record(root_module)
        self.canonizer.apply(root_module)
        try:
            self._attached.attach(root_module)
        except BaseException:
            self.remove()
            raise
        self._applied = True
        return [self]

    def remove(self) -> None:
        """Remove the rules, revert the canonizer and restore the Parameter objects; safe to call repeatedly."""
        try:
            self._attached.detach()
            self.canonizer.remove()
        finally:
            self._parameters.restore()
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


class _ExtensionHandle:
    def __init__(self, rules: _ZennitRules, parameters: compat.ParameterIdentity) -> None:
        self.rules, self.parameters = rules, parameters

    def remove(self) -> None:
        try:
            self.rules.detach()
        finally:
            self.parameters.restore()


def _zennit_extension(canonizer: Canonizer, model: nn.Module, phase: str) -> _ExtensionHandle | None:
    """The core's apply extension: when a Zennit composite applies a core canonizer directly, attach the same
    rules a :class:`ZennitCanonizer` would (``phase="after"``) and keep the Parameter objects (recorded at
    ``phase="before"``). Any other caller (our own :class:`ZennitCanonizer`, Captum's ``canonized()``, a user's
    ``apply``) gets nothing."""
    if not compat.called_by_zennit(depth=2):
        return None
    if phase == "before":
        parameters = compat.ParameterIdentity()
        parameters.record(model)
        return _ExtensionHandle(_ZennitRules([]), parameters)
    rules = _ZennitRules(host_rules(canonizer, "zennit") + default_rules())
    rules.attach(model)
    return _ExtensionHandle(rules, compat.ParameterIdentity())


def missing_rules(canonizer: Any, model: nn.Module) -> list[str]:
    """Conformance check: the explicit module types ``canonizer`` adds to ``model`` that have no Zennit rule.

    A type is covered when the canonizer's :func:`host_rules` or :func:`default_rules` name it, when it is one of
    the standard layers Zennit's composites map (convolutions, linear, activations, pooling, BatchNorm, flatten,
    identity, dropout), or when it is ``Concat`` (the gradient routes its slices exactly). Applies and removes the
    canonizer on ``model``.
    """
    from zennit import types as zt

    from xai_plugins.canonizers.modules import Concat

    known = tuple(kind for kind, _ in host_rules(canonizer, "zennit") + default_rules())
    known = tuple(k for entry in known for k in (entry if isinstance(entry, tuple) else (entry,)))
    standard = (zt.Convolution, zt.Linear, zt.Activation, zt.AvgPool, zt.MaxPool, zt.BatchNorm, nn.Flatten,
                nn.Identity, nn.Dropout, Concat)
    before = {type(module) for module in model.modules()}
    canonizer.apply(model)
    try:
        # rules attach to leaves; a container the canonizer adds (a ModuleList of copies) needs none
        added = {type(module) for module in model.modules() if next(module.children(), None) is None} - before
    finally:
        canonizer.remove()
    return sorted(f"{kind.__module__}.{kind.__qualname__}" for kind in added
                  if not issubclass(kind, known) and not any(issubclass(kind, s) for s in standard))


base.APPLY_EXTENSIONS.append(_zennit_extension)
