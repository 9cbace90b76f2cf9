"""The registry: plugin manager, entry-point discovery, validation, provenance and failure isolation.

Discovery is lazy: nothing is loaded until the first call of :func:`get_registry` (through
``list_components``, ``get`` or ``plugins``). Each plugin is loaded and its hooks called in isolation: any
exception except ``KeyboardInterrupt`` (``SystemExit`` included) marks that plugin failed, while the others
load. What plugins print while they are imported or registered goes to stderr, so machine-readable stdout
(``xai-plugins list --json``) stays valid.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata as metadata
import os
import re
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from xai_plugins import hookspecs
from xai_plugins.errors import (
    ComponentNotFoundError,
    DuplicateComponentError,
    HookValidationError,
    RegistrationError,
)

ENTRY_POINT_GROUP = "xai_plugins"
DISABLE_ENV = "XAI_PLUGINS_DISABLE_AUTOLOAD"
BLOCK_ENV = "XAI_PLUGINS_BLOCK"
KINDS: tuple[str, ...] = tuple(hookspecs.HOOK_KINDS.values())
_WARNED: set[str] = set()  # plugins already warned about in this process: warn once, not per registry
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
"""Component and command names: ASCII letters, digits, ``_`` and ``-``, not starting with ``-`` (so a name is
never taken for a command-line option, and no look-alike Unicode letter can impersonate another name)."""


def check_name(name: object, what: str) -> None:
    """Raise :class:`RegistrationError` unless ``name`` matches :data:`NAME_PATTERN`; ``what`` says who named it."""
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        raise RegistrationError(
            f"{what} with invalid name {name!r}; use ASCII letters, digits, '_' or '-', not starting with '-'")


def failure_message(exc: BaseException) -> str:
    """One line naming the exception; for ``SystemExit`` its exit code."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: the plugin called exit with code {exc.code!r}"
    return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def plugin_output_to_stderr() -> Iterator[None]:
    """While plugin code runs, what it prints goes to stderr, keeping stdout for the command's own output."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def run_isolated(call: Callable[[], Any]) -> BaseException | None:
    """Run plugin code; return the exception it raised (anything but ``KeyboardInterrupt``), or ``None``."""
    try:
        with plugin_output_to_stderr():
            call()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a plugin's SystemExit must not end discovery
        return exc
    return None


class PluginWarning(UserWarning):
    """A plugin failed to load or to register; the other plugins are unaffected."""


@dataclass
class Component:
    """One registered component with its metadata and provenance."""

    kind: str
    name: str
    target: Any
    summary: str
    paper: str
    model_types: tuple[str, ...]
    plugin: str
    distribution: str | None
    version: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Any:
        """Return the component object, importing it first if it was registered as ``"module:attr"`` (what the
        import prints goes to stderr)."""
        if isinstance(self.target, str):
            module_name, _, attr = self.target.partition(":")
            with plugin_output_to_stderr():
                obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
            self.target = obj
        return self.target

    @property
    def doc(self) -> str:
        """The component's docstring (imports it if needed)."""
        return (getattr(self.load(), "__doc__", None) or "").strip()

    def as_dict(self) -> dict[str, Any]:
        """Metadata and provenance as plain JSON-serialisable data."""
        target = self.target
        qualname = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"
        return {
            "kind": self.kind,
            "name": self.name,
            "object": qualname,
            "summary": self.summary,
            "paper": self.paper,
            "model_types": list(self.model_types),
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
            "extra": {k: v if isinstance(v, (str, int, float, bool, type(None), list)) else repr(v)
                      for k, v in self.extra.items()},
        }


@dataclass
class PluginRecord:
    """A plugin the registry tried to load: where it came from and whether it worked."""

    name: str
    distribution: str | None
    version: str | None
    value: str | None
    status: str  # "loaded", "failed" or "blocked"
    error: str | None = None
    traceback: str | None = None
    components: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON-serialisable data."""
        return {k: getattr(self, k) for k in
                ("name", "distribution", "version", "value", "status", "error", "components")}


class Registry:
    """Holds the plugin manager and every registered component, keyed by (kind, name)."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self._components: dict[tuple[str, str], Component] = {}
        self._plugins: dict[str, PluginRecord] = {}

    def register_plugin(self, plugin: object, name: str | None = None, *, distribution: str | None = None,
                        version: str | None = None, value: str | None = None) -> PluginRecord:
        """Register a plugin object, validate its hooks and collect its components.

        Raises :class:`HookValidationError` for an unknown hook, :class:`DuplicateComponentError` for a name
        another plugin already registered, and whatever a hook raised; on any error nothing of this plugin
        stays registered.
        """
        name = name or getattr(plugin, "__name__", None) or repr(plugin)
        if name in self._plugins and self._plugins[name].status == "loaded":
            raise RegistrationError(f"a plugin named {name!r} is already registered; give this one another name")
        record = PluginRecord(name, distribution, version, value, "loaded")
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise HookValidationError(f"plugin {name!r} has an invalid hook implementation: {exc}") from exc
        added: list[tuple[str, str]] = []
        try:
            self._validate(plugin, name)
            for hook_name, kind in hookspecs.HOOK_KINDS.items():
                for impl in self.hookimpls(hook_name, plugin):
                    with plugin_output_to_stderr():
                        impl.function(register=self._make_register(kind, record, added))
        except BaseException:
            for key in added:
                self._components.pop(key, None)
            self.pm.unregister(plugin)
            raise
        record.components = [f"{kind}:{n}" for kind, n in added]
        self._plugins[name] = record
        return record

    def hookimpls(self, hook_name: str, plugin: object | None = None) -> list[Any]:
        """The implementations of one hook (of one plugin, if given), in pluggy's call order."""
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        return [i for i in impls if plugin is None or i.plugin is plugin]

    def plugin_name(self, plugin: object) -> str:
        """The name a plugin object was registered under."""
        return self.pm.get_name(plugin) or repr(plugin)

    def _validate(self, plugin: object, name: str) -> None:
        hooks = [n for n in vars(hookspecs) if self.pm.parse_hookspec_opts(hookspecs, n) is not None]
        known = ", ".join(hooks)
        for attr in dir(plugin):
            if attr not in hooks and self.pm.parse_hookimpl_opts(plugin, attr) is not None:
                raise HookValidationError(
                    f"plugin {name!r} implements unknown hook {attr!r}; known hooks are: {known}")
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise HookValidationError(f"plugin {name!r}: {exc}; known hooks are: {known}") from exc

    def _make_register(self, kind: str, record: PluginRecord, added: list[tuple[str, str]]):
        def register(name: str, component: Any, *, summary: str, paper: str,
                     model_types: Iterable[str] = (), **extra: Any) -> None:
            check_name(name, f"plugin {record.name!r} registered {'an' if kind[0] in 'aeiou' else 'a'} {kind}")
            if component is None or not (callable(component) or (isinstance(component, str) and ":" in component)):
                raise RegistrationError(
                    f"plugin {record.name!r} registered {kind} {name!r} with {component!r}; pass a class, a "
                    "factory or an import string 'module:attribute'")
            for label, value in (("summary", summary), ("paper", paper)):
                if not isinstance(value, str) or not value.strip():
                    raise RegistrationError(
                        f"plugin {record.name!r} registered {kind} {name!r} without a {label}; "
                        f"pass {label}='...' to register()")
            if isinstance(model_types, str):
                model_types = (model_types,)
            key = (kind, name)
            if key in self._components:
                other = self._components[key].plugin
                raise DuplicateComponentError(
                    f"{kind} {name!r} is registered twice: by plugin {other!r} and by plugin {record.name!r}; "
                    f"rename one of them or block one plugin with {BLOCK_ENV}")
            self._components[key] = Component(kind, name, component, summary.strip(), paper.strip(),
                                              tuple(model_types), record.name, record.distribution,
                                              record.version, dict(extra))
            added.append(key)
        return register

    def record_failure(self, name: str, exc: BaseException, *, distribution: str | None = None,
                       version: str | None = None, value: str | None = None) -> PluginRecord:
        """Remember a plugin that failed and warn about it once."""
        message = failure_message(exc)
        record = PluginRecord(name, distribution, version, value, "failed", message,
                              "".join(traceback.format_exception(exc)))
        self._plugins[name] = record
        if name not in _WARNED:
            _WARNED.add(name)
            warnings.warn(f"xai-plugins: plugin {name!r} failed to load and is skipped: {message}",
                          PluginWarning, stacklevel=3)
        return record

    def load_entry_points(self) -> None:
        """Load every plugin of the entry-point group, honouring the disable and block variables."""
        if autoload_disabled():
            return
        blocked = {b.strip() for b in os.environ.get(BLOCK_ENV, "").split(",") if b.strip()}
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            version = dist.version if dist is not None else None
            if ep.name in self._plugins:
                continue
            if ep.name in blocked:
                self._plugins[ep.name] = PluginRecord(ep.name, dist_name, version, ep.value, "blocked")
                continue
            def load(ep: metadata.EntryPoint = ep, dist_name: str | None = dist_name,
                     version: str | None = version) -> None:
                self.register_plugin(ep.load(), ep.name, distribution=dist_name, version=version, value=ep.value)

            error = run_isolated(load)
            if error is not None:
                self.record_failure(ep.name, error, distribution=dist_name, version=version, value=ep.value)

    def components(self, kind: str | None = None) -> list[Component]:
        """All components, or those of one kind, sorted by kind and name."""
        if kind is not None:
            check_kind(kind)
        return sorted((c for c in self._components.values() if kind is None or c.kind == kind),
                      key=lambda c: (KINDS.index(c.kind), c.name))

    def component(self, kind: str, name: str) -> Component:
        """The record of one component; a clear error lists what is registered otherwise."""
        check_kind(kind)
        try:
            return self._components[(kind, name)]
        except KeyError:
            known = ", ".join(c.name for c in self.components(kind)) or "none"
            raise ComponentNotFoundError(
                f"no {kind} named {name!r} is registered; registered {kind}s: {known}. "
                "Run 'xai-plugins list' to see all components and 'xai-plugins plugins' for failed plugins"
            ) from None

    def plugins(self) -> list[PluginRecord]:
        """Every plugin tried: loaded, failed and blocked."""
        return sorted(self._plugins.values(), key=lambda p: p.name)


def autoload_disabled() -> bool:
    """Whether ``XAI_PLUGINS_DISABLE_AUTOLOAD`` turns entry-point loading off (any value but empty or 0)."""
    return os.environ.get(DISABLE_ENV, "").strip() not in ("", "0")


def check_kind(kind: str) -> None:
    """Raise a clear error for an unknown component kind."""
    if kind not in KINDS:
        raise ComponentNotFoundError(f"unknown component kind {kind!r}; use one of: {', '.join(KINDS)}")


_registry: Registry | None = None
_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry, created and filled from entry points on first use."""
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                registry = Registry()
                registry.load_entry_points()
                _registry = registry
    return _registry


def reset_registry() -> None:
    """Forget the registry so the next use discovers plugins again (for tests and long-lived sessions)."""
    global _registry
    with _lock:
        _registry = None
