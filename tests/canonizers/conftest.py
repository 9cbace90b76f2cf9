"""Canonizer test fixtures (torch runs single-threaded for every test, see tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def only_builtin_canonizers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry holding just the built-in canonizer plugin, so other plugins cannot affect a test."""
    from xai_plugins.canonizers import plugin
    from xai_plugins.registry import Registry

    registry = Registry()
    registry.register_plugin(plugin, "canonizers")
    monkeypatch.setattr("xai_plugins.registry._registry", registry)
