"""xai-plugins: explanation research for Captum and Zennit, as pluggy plugins.

The public API is small: :func:`list_components`, :func:`get` and :func:`plugins` query the registry, which
discovers plugins lazily through the entry-point group ``xai_plugins`` on first use; :func:`create_model` and
:func:`list_models` build any registered model by name. Plugin authors mark hook
implementations with :data:`hookimpl` (see :mod:`xai_plugins.hookspecs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xai_plugins._lazy import lazy_exports
from xai_plugins._version import distribution_version
from xai_plugins.errors import (
    ComponentContractError,
    ComponentNotFoundError,
    DuplicateComponentError,
    HookValidationError,
    HostMetadataError,
    RegistrationError,
    XaiPluginsError,
)
from xai_plugins.hookspecs import hookimpl
from xai_plugins.registry import Component, PluginRecord, get_registry, reset_registry

__version__ = distribution_version("xai-plugins")

_EXPORTS = {"create_model": "xai_plugins.models", "list_models": "xai_plugins.models"}
"""Imported on first use: they need torch, which ``import xai_plugins`` (and plugin discovery) does not."""
__getattr__ = lazy_exports(__name__, _EXPORTS)[0]

if TYPE_CHECKING:  # the lazy exports, visible to type checkers and editors
    from xai_plugins.models import create_model, list_models  # noqa: F401

__all__ = [
    "Component",
    "ComponentContractError",
    "ComponentNotFoundError",
    "DuplicateComponentError",
    "HookValidationError",
    "HostMetadataError",
    "PluginRecord",
    "RegistrationError",
    "XaiPluginsError",
    "create_model",
    "describe",
    "get",
    "get_registry",
    "hookimpl",
    "list_components",
    "list_models",
    "plugins",
    "reset_registry",
]


def list_components(kind: str | None = None) -> list[Component]:
    """Registered components with metadata and provenance; ``kind`` is one of
    ``"canonizer"``, ``"model"``, ``"attributor"``, ``"initializer"`` or ``None`` for all."""
    return get_registry().components(kind)


def get(kind: str, name: str) -> Any:
    """The registered component object (class or factory) of that kind and name."""
    return get_registry().component(kind, name).load()


def describe(kind: str, name: str) -> Component:
    """The registry record of one component: metadata, plugin, distribution and version."""
    return get_registry().component(kind, name)


def plugins() -> list[PluginRecord]:
    """Every plugin discovery tried, with its status (loaded, failed, blocked) and error."""
    return get_registry().plugins()
