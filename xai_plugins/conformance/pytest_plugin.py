"""The pytest plugin: ``pytest -p xai_plugins.conformance`` runs one test per (component, check) of every
registered component, next to the project's own tests.

Options select what runs: ``--xai-plugin NAME`` (a plugin as ``xai-plugins plugins`` lists it),
``--xai-kind KIND``, ``--xai-component NAME`` (or ``KIND:NAME``) and ``--xai-check NAME``; each may be
repeated. A ``--xai-plugin`` that does not exist, is blocked, failed to load or registered nothing is a usage
error (exit code 4) naming the plugin and why, never an empty, passing run.
``pytest --pyargs xai_plugins.conformance`` collects the same tests without the options.
"""

from __future__ import annotations

import os
from typing import Any

from xai_plugins.registry import KINDS

SUITE_MODULE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_conformance.py")
CASE_FIXTURE = "xai_conformance_case"


def pytest_addoption(parser: Any) -> None:
    """The selection options of the conformance suite."""
    group = parser.getgroup("xai-plugins", "xai-plugins conformance suite")
    group.addoption("--xai-plugin", action="append", default=None, metavar="NAME",
                    help="only components registered by this plugin (repeatable)")
    group.addoption("--xai-kind", action="append", default=None, choices=KINDS,
                    help="only components of this kind (repeatable)")
    group.addoption("--xai-component", action="append", default=None, metavar="NAME",
                    help="only the component with this name or KIND:NAME (repeatable)")
    group.addoption("--xai-check", action="append", default=None, metavar="NAME",
                    help="only this check, e.g. restores_model (repeatable)")


def pytest_configure(config: Any) -> None:
    """Add the suite's test module to the collection when the plugin is loaded with ``-p``."""
    plugins = _option(config, "xai_plugin")
    if plugins:
        from xai_plugins.conformance.suite import _registry

        check_plugins_loaded(plugins, _registry(None))
    if SUITE_MODULE not in config.args:
        config.args.append(SUITE_MODULE)


def _option(config: Any, name: str) -> list[str] | None:
    value = config.getoption(name, default=None)
    return list(value) if value else None


def selected_cases(config: Any) -> list[tuple[str, str, str]]:
    """``(kind, name, check)`` for every selected component and check, from the command-line options."""

    from xai_plugins.conformance.suite import _registry, checks_for

    registry = _registry(None)
    plugins, kinds = _option(config, "xai_plugin"), _option(config, "xai_kind")
    names, checks = _option(config, "xai_component"), _option(config, "xai_check")
    cases = []
    for comp in registry.components():
        if plugins and comp.plugin not in plugins:
            continue
        if kinds and comp.kind not in kinds:
            continue
        if names and comp.name not in names and f"{comp.kind}:{comp.name}" not in names:
            continue
        for check_name in checks_for(comp.kind):
            if not checks or check_name in checks:
                cases.append((comp.kind, comp.name, check_name))
    return cases


def check_plugins_loaded(plugins: list[str], registry: Any) -> None:
    """Raise ``pytest.UsageError`` naming each plugin of ``--xai-plugin`` that does not exist, is blocked, failed
    to load or registered no component, so the suite never passes for a plugin it did not check."""
    import pytest

    from xai_plugins.registry import BLOCK_ENV

    records = {p.name: p for p in registry.plugins()}
    problems = []
    for name in plugins:
        record = records.get(name)
        if record is None:
            problems.append(f"--xai-plugin {name}: no such plugin; plugins found: "
                            f"{', '.join(sorted(records)) or 'none'} (see 'xai-plugins plugins')")
        elif record.status == "blocked":
            problems.append(f"--xai-plugin {name}: the plugin is blocked by {BLOCK_ENV}; unblock it to check it")
        elif record.status != "loaded":
            problems.append(f"--xai-plugin {name}: the plugin failed to load, so it cannot be checked: "
                            f"{record.error}")
        elif not record.components:
            problems.append(f"--xai-plugin {name}: the plugin registered no component, so there is nothing to check")
    if problems:
        raise pytest.UsageError("\n".join(problems))


def run_case(case: tuple[str, str, str]) -> None:
    """Run one check on one component inside a test: skip, or fail with the check's message."""
    import pytest

    from xai_plugins.conformance.results import FAIL, SKIP
    from xai_plugins.conformance.suite import _registry, run_checks

    kind, name, check_name = case
    (result,) = run_checks(_registry(None).component(kind, name), only=[check_name])
    if result.status == SKIP:
        pytest.skip(result.message)
    if result.status == FAIL:
        pytest.fail(str(result), pytrace=False)
