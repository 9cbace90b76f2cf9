"""The one table of built-in canonizers: each canonizer class registers itself with :func:`builtin_canonizer`.

Everything else is derived from this table: :data:`~xai_plugins.canonizers.selection.FAMILIES` (the model
families ``canonizers_for`` recognises, in matching order), the registrations of the built-in plugin
(:mod:`xai_plugins.canonizers.plugin`) and the error message for an unsupported model. A family's model class
is named by its dotted public path (``"torchvision.models.ResNet"``, the form of ``model_types``) and resolved
only from modules already imported, so neither registering nor matching imports torchvision.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["BuiltinCanonizer", "builtin_canonizer", "builtin_canonizers"]

_C = TypeVar("_C", bound=type)

CANONIZER_MODULES = (
    "xai_plugins.canonizers.torchvision_models",
    "xai_plugins.canonizers.densenet_untangled",
    "xai_plugins.canonizers.relation_network",
    "xai_plugins.canonizers.batchnorm",
)
"""The modules whose classes register themselves here (imported by :func:`builtin_canonizers`)."""

_TABLE: dict[str, BuiltinCanonizer] = {}


@dataclass(frozen=True)
class BuiltinCanonizer:
    """One built-in canonizer: its registry ``name``, the class (as an import string ``module:Class``), a
    one-line ``summary``, the ``model_type`` it canonizes (``None`` for a generic one), a ``label`` for
    messages, whether ``canonizers_for`` picks it for that type (``default``) and further ``register()``
    metadata (``extra``)."""

    name: str
    target: str
    summary: str
    model_type: str | None = None
    label: str = ""
    default: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def model_class(self) -> type | None:
        """The model class, if the module that defines it is already imported (else no model can be one)."""
        if self.model_type is None:
            return None
        module, _, name = self.model_type.rpartition(".")
        return getattr(sys.modules.get(module), name, None)

    def load(self) -> type:
        """The canonizer class."""
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


def builtin_canonizer(name: str, *, summary: str, model_type: str | None = None, label: str = "",
                      default: bool = True, **extra: Any) -> Callable[[_C], _C]:
    """Class decorator: enter the canonizer class into the table under ``name`` (see :class:`BuiltinCanonizer`).

    ``model_type`` is the dotted public path of the model class; ``default=False`` registers a variant that
    ``canonizers_for`` does not pick (it is used explicitly). Raises ``ValueError`` if ``name`` is taken.
    """

    def register(cls: _C) -> _C:
        target = f"{cls.__module__}:{cls.__qualname__}"
        known = _TABLE.get(name)
        if known is not None and known.target != target:
            raise ValueError(f"built-in canonizer name {name!r} is used by {known.target} and {target}")
        _TABLE[name] = BuiltinCanonizer(name, target, summary, model_type, label or name, default, dict(extra))
        return cls

    return register


def builtin_canonizers() -> tuple[BuiltinCanonizer, ...]:
    """Every built-in canonizer (importing the modules that define them), in the order of
    ``CANONIZER_MODULES`` and, within a module, of definition, whatever order the modules were imported in."""
    for module in CANONIZER_MODULES:
        importlib.import_module(module)
    order = {module: index for index, module in enumerate(CANONIZER_MODULES)}
    entries = list(_TABLE.values())  # definition order within each module
    return tuple(sorted(entries, key=lambda entry: order.get(entry.target.partition(":")[0], len(order))))
