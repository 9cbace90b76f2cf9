"""Subcommands the workbench adds to ``xai-plugins`` (through the ``xai_plugins.commands`` entry point)."""

from __future__ import annotations

import argparse
import importlib

_COMMAND_MODULES = (
    "xai_plugins_workbench.invariance_cli",
    "xai_plugins_workbench.demo_cli",
)


def register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the workbench's subcommands (invariance, demo, evaluate, explain, search) to the CLI."""
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register_commands(subparsers)
