"""The conformance suite over every built-in component: one test case per (component, check).

A built-in is what a plugin of the ``xai-plugins`` distribution itself registers; third-party plugins in the
environment (the docs' example package included) are checked by their own tests and by ``xai-plugins check``.
"""

from __future__ import annotations

import warnings

import pytest

from xai_plugins.conformance.pytest_plugin import run_case
from xai_plugins.conformance.suite import checks_for
from xai_plugins.registry import PluginWarning, get_registry

BUILTIN_DISTRIBUTION = "xai-plugins"
BUILTIN_PLUGINS = ("bcos", "canonizers", "explainfix", "extremal")


def _registry():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        return get_registry()


def _cases() -> list[tuple[str, str, str]]:
    return [(c.kind, c.name, check) for c in _registry().components()
            if c.distribution == BUILTIN_DISTRIBUTION for check in checks_for(c.kind)]


CASES = _cases()


@pytest.mark.parametrize("plugin", BUILTIN_PLUGINS)
def test_builtin_plugin_loads(plugin):
    records = {p.name: p for p in _registry().plugins()}
    assert plugin in records, f"built-in plugin {plugin!r} is not an entry point of {BUILTIN_DISTRIBUTION}"
    record = records[plugin]
    assert record.status == "loaded", f"built-in plugin {plugin!r} {record.status}: {record.error}"
    assert record.components, f"built-in plugin {plugin!r} registered no component"


@pytest.mark.parametrize("case", CASES, ids=[f"{k}:{n}::{c}" for k, n, c in CASES])
def test_builtin_component(case):
    run_case(case)
