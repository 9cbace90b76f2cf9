"""The conformance suite: the checks every registered component must pass, for built-ins and third parties.

Use it three ways:

- as plain functions: ``run_checks(xai_plugins.describe("attributor", "mine"))`` returns a list of
  :class:`CheckResult` (status, what broke and by how much);
- as a pytest plugin: ``pytest -p xai_plugins.conformance`` adds one test per (component, check) of
  everything registered, selectable with ``--xai-plugin``, ``--xai-kind`` and ``--xai-component``;
- from the command line: ``xai-plugins check PLUGIN`` prints a table and exits 1 on failures.

How a component's metadata tells the suite what to run it on is described in
:mod:`xai_plugins.conformance.fixtures` and ``docs/conformance.md``.
"""

from __future__ import annotations

from xai_plugins.conformance.checks import CHECKS, check, failed
from xai_plugins.conformance.invariance import PAIRS, ModelPair, pair_difference
from xai_plugins.conformance.pytest_plugin import pytest_addoption, pytest_configure
from xai_plugins.conformance.results import FAIL, PASS, SKIP, CheckFailure, CheckResult, CheckSkipped
from xai_plugins.conformance.suite import checks_for, run_checks, run_suite, select_components

__all__ = [
    "CHECKS",
    "FAIL",
    "PAIRS",
    "PASS",
    "SKIP",
    "CheckFailure",
    "CheckResult",
    "CheckSkipped",
    "ModelPair",
    "check",
    "checks_for",
    "failed",
    "pair_difference",
    "pytest_addoption",
    "pytest_configure",
    "run_checks",
    "run_suite",
    "select_components",
]
