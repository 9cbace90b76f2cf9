"""The outcome of one conformance check: status, what broke, and by how much."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PASS = "pass"
FAIL = "fail"
SKIP = "skip"


@dataclass
class CheckResult:
    """One check run on one component.

    ``status`` is ``"pass"``, ``"fail"`` or ``"skip"`` (the check does not apply, with the reason in
    ``message``). ``measured`` and ``tolerance`` carry the number a numeric check compared, so a failure says
    by how much it missed.
    """

    check: str
    component: str
    status: str
    message: str = ""
    measured: float | None = None
    tolerance: float | None = None

    @property
    def passed(self) -> bool:
        """True unless the check failed (a skipped check is not a failure)."""
        return self.status != FAIL

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data."""
        return {"check": self.check, "component": self.component, "status": self.status,
                "message": self.message, "measured": self.measured, "tolerance": self.tolerance}

    def __str__(self) -> str:
        text = f"{self.status.upper()} {self.check} [{self.component}]"
        return f"{text}: {self.message}" if self.message else text


class CheckFailure(Exception):
    """Raised inside a check to end it as failed with ``message`` (and the measured number, if any)."""

    def __init__(self, message: str, measured: float | None = None, tolerance: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.measured = measured
        self.tolerance = tolerance


class CheckSkipped(Exception):
    """Raised inside a check when it does not apply to the component; the message says why."""
