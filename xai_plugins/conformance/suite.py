"""Run the conformance checks: on one component, on everything one plugin registered, or on a selection."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from xai_plugins.conformance import attributors, canonizers, common, initializers, invariance, models  # noqa: F401
from xai_plugins.conformance.checks import CHECKS, CheckFunction
from xai_plugins.conformance.results import CheckResult
from xai_plugins.registry import KINDS, Component, PluginWarning, Registry, get_registry


def checks_for(kind: str) -> dict[str, CheckFunction]:
    """The checks that apply to components of ``kind``, by name, in the order they run."""
    if kind not in CHECKS:
        raise ValueError(f"unknown component kind {kind!r}; use one of: {', '.join(KINDS)}")
    return dict(CHECKS[kind])


def run_checks(component: Component, only: Iterable[str] | None = None) -> list[CheckResult]:
    """Every check of the component's kind (or those named in ``only``) run on ``component``."""
    selected = checks_for(component.kind)
    if only is not None:
        wanted = list(only)
        unknown = [n for n in wanted if n not in selected]
        if unknown:
            raise ValueError(f"unknown {component.kind} check(s) {unknown}; known: {', '.join(selected)}")
        selected = {n: selected[n] for n in wanted}
    return [fn(component) for fn in selected.values()]


def _registry(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        return get_registry()


def select_components(plugin: str | None = None, kind: str | None = None, name: str | None = None,
                      registry: Registry | None = None) -> list[Component]:
    """Registered components, optionally only those of one plugin, one kind and/or one name."""
    return [c for c in _registry(registry).components(kind)
            if (plugin is None or c.plugin == plugin) and (name is None or c.name == name)]


def run_suite(plugin: str | None = None, kind: str | None = None, name: str | None = None,
              registry: Registry | None = None) -> list[CheckResult]:
    """All checks on every selected component (see :func:`select_components`)."""
    return [r for c in select_components(plugin, kind, name, registry) for r in run_checks(c)]
