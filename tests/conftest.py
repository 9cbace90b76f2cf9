"""Fixtures shared by every test: torch runs on one intra-op thread; command output is not wrapped; under CI
(``CI`` set) hypothesis draws a fixed sequence of examples.

The test models are small, and on a shared 2-core CPU two OpenMP threads per process spin against each other
(measured up to 10x slower); one thread also makes float reductions run in one fixed order. Outside CI every run
draws new examples and may find a new failing one (hypothesis prints it; keep it as an ``@example``); in CI the
same commit gives the same verdict.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands fit their output to ``COLUMNS``; tests that read whole lines see them unwrapped, tests of the
    wrapping set ``COLUMNS`` themselves."""
    monkeypatch.setenv("COLUMNS", "250")
