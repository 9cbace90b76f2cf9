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

from typing import TYPE_CHECKING

from xai_plugins._lazy import lazy_exports
from xai_plugins.conformance.pytest_plugin import pytest_addoption as pytest_addoption  # pytest finds its
from xai_plugins.conformance.pytest_plugin import pytest_configure as pytest_configure  # hooks here

_EXPORTS: dict[str, str] = {
    "CHECKS": "xai_plugins.conformance.checks",
    "check": "xai_plugins.conformance.checks",
    "failed": "xai_plugins.conformance.checks",
    "PAIRS": "xai_plugins.conformance.invariance",
    "ModelPair": "xai_plugins.conformance.invariance",
    "pair_difference": "xai_plugins.conformance.invariance",
    "FAIL": "xai_plugins.conformance.results",
    "PASS": "xai_plugins.conformance.results",
    "SKIP": "xai_plugins.conformance.results",
    "CheckFailure": "xai_plugins.conformance.results",
    "CheckResult": "xai_plugins.conformance.results",
    "CheckSkipped": "xai_plugins.conformance.results",
    "checks_for": "xai_plugins.conformance.suite",
    "run_checks": "xai_plugins.conformance.suite",
    "run_suite": "xai_plugins.conformance.suite",
    "select_components": "xai_plugins.conformance.suite",
}

if TYPE_CHECKING:  # the lazy exports, visible to type checkers and editors
    from xai_plugins.conformance.checks import CHECKS, check, failed  # noqa: F401
    from xai_plugins.conformance.invariance import PAIRS, ModelPair, pair_difference  # noqa: F401
    from xai_plugins.conformance.results import FAIL, PASS, SKIP, CheckFailure, CheckResult, CheckSkipped  # noqa: F401
    from xai_plugins.conformance.suite import checks_for, run_checks, run_suite, select_components  # noqa: F401

__getattr__, _lazy_dir, _lazy_all = lazy_exports(__name__, _EXPORTS)
__all__ = sorted([*_lazy_all, "pytest_addoption", "pytest_configure"])


def __dir__() -> list[str]:
    return __all__
