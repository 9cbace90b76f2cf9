"""Canonizer tests run single-threaded: the models are small and thread contention on shared CPUs costs more
than parallelism gains."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def only_builtin_canonizers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry holding just the built-in canonizer plugin, so other plugins cannot affect a test."""
    from xai_plugins.canonizers import plugin
    from xai_plugins.registry import Registry

    registry = Registry()
    registry.register_plugin(plugin, "canonizers")
    monkeypatch.setattr("xai_plugins.registry._registry", registry)
