"""Everything the Zennit adapter needs from Zennit (and torch) beyond their documented interfaces, in one place.

Supported: ``zennit>=0.5.1,<2`` (tested with 0.5.1 and 1.0.0). What differs between the releases and is handled
here:

- Zennit 1.0.0's ``ParamMod`` (used by every ``BasicHook`` rule in each backward pass) puts the original parameter
  values back with ``load_state_dict(..., assign=True)``, which wraps them in *new* ``Parameter`` objects: after
  one attribution, an optimizer built before it no longer updates the model. :class:`ParameterIdentity` records
  the Parameter objects before an attribution and puts the very same objects back afterwards (0.5.1 keeps them).
- Which Zennit rule a composite registered on a module is not exposed by Zennit; :func:`rules_on` reads it from
  the module's forward hooks (a Zennit ``Hook`` registers its bound ``forward`` method there in both releases).
- Whether the composite in use is a relevance (LRP) composite: :func:`relevance_rules_registered` looks for its
  ``BasicHook`` rules the same way.
- :func:`called_by_zennit` tells whether a canonizer's ``apply`` was called by a Zennit composite (both releases
  call ``canonizer.apply(module)`` directly from ``zennit.core``).
"""

from __future__ import annotations

import inspect
from importlib.metadata import PackageNotFoundError, version

import torch
from torch import nn
from zennit.core import BasicHook, Hook

__all__ = ["SUPPORTED", "ZENNIT_VERSION", "ParameterIdentity", "basic_rule_on", "called_by_zennit",
           "relevance_rules_registered", "rules_on"]

SUPPORTED = ((0, 5, 1), (2, 0, 0))
"""Zennit releases this module was written for: ``SUPPORTED[0] <= version < SUPPORTED[1]``."""


def _release() -> tuple[int, ...]:
    try:
        text = version("zennit")
    except PackageNotFoundError:  # an unpackaged checkout on the path
        import zennit

        text = getattr(zennit, "__version__", "0.5.1")
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (3 - len(parts)))


ZENNIT_VERSION = _release()
if not SUPPORTED[0] <= ZENNIT_VERSION < SUPPORTED[1]:
    raise ImportError(f"xai-plugins-zennit supports zennit>=0.5.1,<2, found zennit "
                      f"{'.'.join(map(str, ZENNIT_VERSION))}; install a supported release: "
                      "pip install 'zennit>=0.5.1,<2'")


def rules_on(module: nn.Module) -> list[Hook]:
    """The Zennit rules (``Hook`` instances) currently registered on ``module``, in registration order."""
    found = []
    for hook in module._forward_hooks.values():
        rule = getattr(hook, "__self__", None)
        if isinstance(rule, Hook) and rule not in found:
            found.append(rule)
    return found


def basic_rule_on(module: nn.Module, other_than: Hook) -> BasicHook | None:
    """The last ``BasicHook`` rule (ZPlus, AlphaBeta, Epsilon, Gamma, ZBox, Flat, ...) on ``module`` that is not
    ``other_than``: the composite's rule for that layer, or ``None``."""
    rules = [rule for rule in rules_on(module) if rule is not other_than and isinstance(rule, BasicHook)]
    return rules[-1] if rules else None


def relevance_rules_registered(model: nn.Module, other_than: list[Hook]) -> bool:
    """Whether an active ``BasicHook`` rule (an LRP rule: ZPlus, Epsilon, AlphaBeta, Norm, ...) other than those
    in ``other_than`` is registered on any module of ``model``: a relevance composite is in use, not a gradient
    one such as ``GuidedBackprop``."""
    ours = {id(rule) for rule in other_than}
    return any(isinstance(rule, BasicHook) and rule.active and id(rule) not in ours
               for module in model.modules() for rule in rules_on(module))


def called_by_zennit(depth: int = 2) -> bool:
    """Whether the function ``depth`` frames above the caller of this function lives in the ``zennit`` package."""
    frame = inspect.currentframe()
    try:
        for _ in range(depth + 1):
            frame = frame.f_back if frame is not None else None
        name = frame.f_globals.get("__name__", "") if frame is not None else ""
        return name == "zennit" or name.startswith("zennit.")
    finally:
        del frame


class ParameterIdentity:
    """Keeps a model's ``Parameter`` objects across Zennit attributions (see the module docstring).

    ``record(model)`` notes every module's parameters; ``restore()`` puts a recorded Parameter back wherever a
    different Parameter object now holds the same storage (what Zennit 1.0.0's ``ParamMod`` leaves behind).
    Parameters replaced by something else (another canonizer's merged weights, a user's assignment) are left
    alone. On Zennit 0.5.1 nothing needs restoring and ``restore`` finds nothing to do.
    """

    def __init__(self) -> None:
        self._recorded: list[tuple[nn.Module, str, nn.Parameter]] = []

    def record(self, model: nn.Module) -> None:
        self._recorded = [(module, name, param) for module in model.modules()
                          for name, param in module._parameters.items() if param is not None]

    def restore(self) -> None:
        for module, name, param in self._recorded:
            current = module._parameters.get(name)
            if current is param or not isinstance(current, nn.Parameter):
                continue
            if (current.shape == param.shape and current.dtype == param.dtype
                    and _memory_start(current) == _memory_start(param)):
                module._parameters[name] = param
        self._recorded = []


def _memory_start(tensor: torch.Tensor) -> int:
    """Address of the first element of the memory ``tensor`` views (equal for two views of one storage)."""
    return tensor.data_ptr() - int(tensor.storage_offset()) * tensor.element_size()
