"""Exceptions of the plugin core; each message names the problem and the fix."""

from __future__ import annotations


class XaiPluginsError(Exception):
    """Base class of every error raised by xai-plugins."""


class RegistrationError(XaiPluginsError, ValueError):
    """A ``register`` call was malformed (bad name, missing metadata, unknown kind)."""


class DuplicateComponentError(RegistrationError):
    """Two plugins registered the same name in the same family."""


class HookValidationError(XaiPluginsError):
    """A plugin implements a hook that does not exist (for example a misspelled hook name)."""


class ComponentNotFoundError(XaiPluginsError, LookupError):
    """No component of that kind and name is registered."""


class HostMetadataError(XaiPluginsError, ValueError):
    """A component's registration metadata does not allow the host it was asked for (Captum, Zennit, ...)."""


class ComponentContractError(XaiPluginsError, RuntimeError):
    """A component returned a result that breaks its contract (wrong shape or type, NaN or infinite values)."""
