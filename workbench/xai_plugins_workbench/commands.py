"""The workbench's plugin (entry point ``workbench`` of the group ``xai_plugins``): it adds the subcommands
invariance, demo, evaluate, explain and search to ``xai-plugins`` through the ``xai_register_commands`` hook."""

from __future__ import annotations

import importlib

from xai_plugins.hookspecs import Commands, hookimpl

_COMMAND_MODULES = (
    "xai_plugins_workbench.invariance_cli",
    "xai_plugins_workbench.demo_cli",
)


@hookimpl
def xai_register_commands(commands: Commands) -> None:
    """Add the workbench's subcommands (invariance, demo, evaluate, explain, search) to the CLI."""
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register_commands(commands)
