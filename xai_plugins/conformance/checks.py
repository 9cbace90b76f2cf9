"""The table of checks by component kind, and the decorator that turns a check body into a check function.

A check body takes a :class:`~xai_plugins.registry.Component` and returns a message (or a tuple
``(message, measured, tolerance)``) when the component passes; it raises :class:`CheckFailure` with what broke
and by how much, or :class:`CheckSkipped` when it does not apply. The decorated function always returns a
:class:`CheckResult`; an unexpected exception from the component is a failure that names where it was raised.
"""

from __future__ import annotations

import functools
import traceback
import warnings
from collections.abc import Callable
from typing import Any

from xai_plugins.conformance.results import FAIL, PASS, SKIP, CheckFailure, CheckResult, CheckSkipped
from xai_plugins.registry import Component

CheckFunction = Callable[[Component], CheckResult]

CHECKS: dict[str, dict[str, CheckFunction]] = {"canonizer": {}, "model": {}, "attributor": {}, "initializer": {}}
"""kind -> check name -> check function, in the order they run."""


def label(component: Component) -> str:
    """``kind:name`` of a component, as results and the CLI show it."""
    return f"{component.kind}:{component.name}"


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def check(name: str, *kinds: str, order: int = 50) -> Callable[[Callable[[Component], Any]], CheckFunction]:
    """Register the decorated body as check ``name`` for the given component kinds; checks run by ``order``
    (metadata first, the slow implementation-invariance check last), then in registration order."""
    def decorate(body: Callable[[Component], Any]) -> CheckFunction:
        @functools.wraps(body)
        def run(component: Component) -> CheckResult:
            who = label(component)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    outcome = body(component)
            except CheckSkipped as exc:
                return CheckResult(name, who, SKIP, str(exc))
            except CheckFailure as exc:
                return CheckResult(name, who, FAIL, exc.message, exc.measured, exc.tolerance)
            except Exception as exc:  # noqa: BLE001 - a crashing component is a failed check
                return CheckResult(name, who, FAIL, f"raised {type(exc).__name__}: {exc}{_where(exc)}")
            if isinstance(outcome, tuple):
                message, measured, tol = outcome
                return CheckResult(name, who, PASS, message, measured, tol)
            return CheckResult(name, who, PASS, outcome or "")

        run.check_name = name  # type: ignore[attr-defined]
        run.order = order  # type: ignore[attr-defined]
        for kind in kinds:
            CHECKS[kind][name] = run
            ordered = sorted(CHECKS[kind].items(), key=lambda item: item[1].order)  # type: ignore[attr-defined]
            CHECKS[kind].clear()
            CHECKS[kind].update(ordered)
        return run

    return decorate


def failed(results: list[CheckResult]) -> list[CheckResult]:
    """The failed results."""
    return [r for r in results if r.status == FAIL]


__all__ = ["CHECKS", "FAIL", "PASS", "SKIP", "check", "failed", "label"]
