"""Explanation mode: detach the dynamic scalings of B-cos layers so the input gradient is W(x).

A B-cos network computes ``y = W(x) x`` where ``W(x)`` depends on the input through the alignment scalings
(|cos|^(B-1)) and the normalisation statistics. Treating those as constants ("detaching" them) makes the
gradient of a logit with respect to the input exactly the row of ``W(x)``, so ``W(x) · x`` reproduces the
logit (minus the logit bias). Every module that has such a scaling derives from :class:`Detachable`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


class Detachable:
    """Mixin for modules whose input-dependent scaling is treated as constant in explanation mode."""

    explanation: bool = False

    def set_explanation_mode(self, active: bool = True) -> None:
        """Switch explanation mode (detached dynamic scaling) on or off for this module."""
        self.explanation = bool(active)


def detachable_modules(model: nn.Module) -> list[Detachable]:
    """All modules of ``model`` (itself included) that have an explanation mode."""
    return [m for m in model.modules() if isinstance(m, Detachable)]


class ExplanationModeSwitch:
    """Sets the explanation mode of every B-cos module of a model and remembers the previous states;
    :meth:`remove` puts them back (the handle interface Zennit composites use)."""

    def __init__(self, model: nn.Module, active: bool = True) -> None:
        self.modules = detachable_modules(model)
        self.previous = [m.__dict__.get("explanation") for m in self.modules]
        try:
            for m in self.modules:
                m.set_explanation_mode(active)
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        """Restore every module's previous explanation state (idempotent)."""
        for m, state in zip(self.modules, self.previous):
            if state is None:
                m.__dict__.pop("explanation", None)
            else:
                m.explanation = state
        self.modules, self.previous = [], []


@contextmanager
def explanation_mode(model: nn.Module, active: bool = True) -> Iterator[nn.Module]:
    """Put every B-cos module of ``model`` in explanation mode for the ``with`` block.

    The previous state of each module is restored on exit, also when the block raises, so nested use and
    models that were already in explanation mode come out exactly as they went in.
    """
    switch = ExplanationModeSwitch(model, active)
    try:
        yield model
    finally:
        switch.remove()
