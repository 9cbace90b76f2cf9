"""Argument-parser helpers for the workbench's subcommands: defaults shown in ``--help``, and choices read
from their table only when needed, so that building the parser (``xai-plugins --help``, ``list``) imports
no torch."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterator


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the default is None or False, or the help already
    speaks of its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (action.option_strings and default is not None and default is not False
                and default is not argparse.SUPPRESS and "default" not in text.lower()):
            shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else "%(default)s"
            text += f" (default: {shown})"
        return text


class LazyChoices:
    """The keys of a table ``module:NAME`` as argparse choices, imported on first use (membership, listing)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._names: list[str] | None = None

    def _load(self) -> list[str]:
        if self._names is None:
            module_name, _, attr = self.target.partition(":")
            self._names = [str(name) for name in getattr(importlib.import_module(module_name), attr)]
        return self._names

    def __contains__(self, item: object) -> bool:
        return item in self._load()

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return ", ".join(self._load())
