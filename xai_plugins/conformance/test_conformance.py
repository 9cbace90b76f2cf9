"""The conformance suite as pytest tests: one test per (registered component, check).

Collected by ``pytest -p xai_plugins.conformance`` (which adds this module and the selection options) or by
``pytest --pyargs xai_plugins.conformance`` (everything registered).
"""

from __future__ import annotations

from typing import Any

from xai_plugins.conformance.pytest_plugin import CASE_FIXTURE, run_case, selected_cases


def pytest_generate_tests(metafunc: Any) -> None:
    if CASE_FIXTURE in metafunc.fixturenames:
        cases = selected_cases(metafunc.config)
        metafunc.parametrize(CASE_FIXTURE, cases, ids=[f"{k}:{n}::{c}" for k, n, c in cases])


def test_conformance(xai_conformance_case: tuple[str, str, str]) -> None:
    run_case(xai_conformance_case)
