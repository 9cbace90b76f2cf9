"""The ``xai-plugins`` command: list, inspect and check registered components.

Every subcommand comes through the hook ``xai_register_commands(commands)`` of the one plugin manager: the
core's own (``list``, ``info``, ``plugins``, ``check``) from this module, the others from plugins of the
entry-point group ``xai_plugins``, so ``XAI_PLUGINS_DISABLE_AUTOLOAD`` and ``XAI_PLUGINS_BLOCK`` govern them as
they govern components. A plugin whose command hook fails loses its commands, the others keep theirs.
Exit codes: 0 ok, 1 failures found, 2 usage error. Errors print as one line unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from functools import partial
from typing import Any, NoReturn

from xai_plugins import registry as _registry
from xai_plugins.cli_output import table, wrap
from xai_plugins.errors import ComponentNotFoundError, RegistrationError, XaiPluginsError
from xai_plugins.hookspecs import Commands, hookimpl

CORE = "xai-plugins"
"""The name the core's own commands are registered under."""

COMMANDS_OF_DISTRIBUTIONS: dict[str, tuple[str, str]] = {
    "demo": ("xai-plugins-workbench", "workbench"),
    "evaluate": ("xai-plugins-workbench", "workbench"),
    "explain": ("xai-plugins-workbench", "workbench"),
    "invariance": ("xai-plugins-workbench", "workbench"),
    "search": ("xai-plugins-workbench", "workbench"),
}
"""Commands of the project's optional distributions: command -> (distribution, plugin name), so that a user
without the distribution is told what to install instead of argparse's 'invalid choice'."""


class UsageError(XaiPluginsError):
    """The command line is wrong; exit code 2."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: dict[str, str] = {}  # subcommand -> plugin that registered it (top-level parser only)

    def error(self, message: str) -> NoReturn:  # one clear line, exit code 2
        self.print_usage(sys.stderr)
        print(f"xai-plugins: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _version() -> str:
    from xai_plugins import __version__

    return __version__


def _quiet_registry() -> _registry.Registry:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _registry.PluginWarning)
        return _registry.get_registry()


def _failed(reg: _registry.Registry) -> list[_registry.PluginRecord]:
    return [p for p in reg.plugins() if p.status == "failed"]


def cmd_list(args: argparse.Namespace) -> int:
    """Table of registered components by family, then any failed plugins."""
    reg = _quiet_registry()
    comps = reg.components(args.kind)
    failed = _failed(reg)
    if args.json:
        print(json.dumps({"components": [c.as_dict() for c in comps],
                          "failed_plugins": [p.as_dict() for p in failed]}, indent=2))
        return 1 if failed else 0
    for kind in _registry.KINDS:
        rows = [[c.name, c.plugin, f"{c.distribution or '-'} {c.version or ''}".strip(), c.summary]
                for c in comps if c.kind == kind]
        if rows:
            print(f"{kind}s ({len(rows)})")
            print(table(rows, ["name", "plugin", "distribution", "summary"], indent="  "))
            print()
    if not comps:
        print("no components registered")
    for p in failed:
        print(wrap(f"FAILED plugin {p.name} ({p.distribution or 'no distribution'}): {p.error}", hanging="  "))
    return 1 if failed else 0


def _find(reg: _registry.Registry, spec: str) -> _registry.Component:
    kind, sep, name = spec.partition(":")
    if sep:
        return reg.component(kind, name)
    matches = [c for c in reg.components() if c.name == spec]
    if not matches:
        raise UsageError(f"no component named {spec!r}; run 'xai-plugins list' to see the registered names")
    if len(matches) > 1:
        kinds = ", ".join(f"{c.kind}:{c.name}" for c in matches)
        raise UsageError(f"{spec!r} is ambiguous; name one of: {kinds}")
    return matches[0]


def cmd_info(args: argparse.Namespace) -> int:
    """Metadata, provenance and docstring of one component."""
    comp = _find(_quiet_registry(), args.name)
    data = comp.as_dict()
    data["doc"] = comp.doc
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for key in ("kind", "name", "summary", "paper", "model_types", "plugin", "distribution", "version", "object"):
        value = data[key]
        print(wrap(f"{key:13} {', '.join(value) if isinstance(value, list) else value}", hanging=" " * 14))
    for key, value in data["extra"].items():
        print(wrap(f"{key:13} {value}", hanging=" " * 14))
    if data["doc"]:
        print()
        print(wrap(data["doc"]))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    """Loaded, failed and blocked plugins."""
    reg = _quiet_registry()
    records = reg.plugins()
    if args.json:
        print(json.dumps([p.as_dict() for p in records], indent=2))
    else:
        rows = [[p.name, p.status, f"{p.distribution or '-'} {p.version or ''}".strip(),
                 str(len(p.components)) if p.status == "loaded" else (p.error or "")] for p in records]
        print(table(rows, ["plugin", "status", "distribution", "components / error"]) if rows
              else "no plugins found")
    return 1 if _failed(reg) else 0


class CommandTable:
    """The :class:`~xai_plugins.hookspecs.Commands` a command hook receives: one plugin's parsers, added to the
    command line only when its hook returns, so a hook that fails half-way adds nothing."""

    def __init__(self, subparsers: Any, owners: dict[str, str]) -> None:
        self._subparsers = subparsers
        self._owners = owners
        self._staged: list[tuple[str, dict[str, Any], argparse.ArgumentParser]] = []
        self.plugin = CORE

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """A parser for subcommand ``name``; ``help`` is its line in ``xai-plugins --help``."""
        _registry.check_name(name, f"plugin {self.plugin!r} registered a command")
        owner = self._owners.get(name) or (self.plugin if any(n == name for n, _, _ in self._staged) else None)
        if owner is not None:
            raise RegistrationError(f"command {name!r} is registered twice: by plugin {owner!r} "
                                    f"and by plugin {self.plugin!r}; block one plugin with {_registry.BLOCK_ENV}")
        options = {k: v for k, v in kwargs.items() if k not in ("help", "aliases")}
        parser = _Parser(prog=f"xai-plugins {name}", add_help=False, **options)
        self._staged.append((name, kwargs, parser))
        return parser

    def commit(self) -> None:
        """Add the staged parsers of the current plugin to the command line."""
        for name, kwargs, staged in self._staged:
            options = {k: v for k, v in kwargs.items() if k not in ("add_help", "parents")}
            self._subparsers.add_parser(name, parents=[staged], **options)
            self._owners[name] = self.plugin
        self._staged = []

    def discard(self) -> None:
        """Forget the staged parsers of a plugin whose hook failed."""
        self._staged = []


@hookimpl
def xai_register_commands(commands: Commands) -> None:
    """The core's commands: list, info, plugins and check."""
    from xai_plugins.conformance.cli import register_commands as register_check

    p = commands.add_parser("list", help="list registered components by family")
    p.add_argument("--kind", choices=_registry.KINDS, help="only this family")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)
    p = commands.add_parser("info", help="metadata and docstring of one component")
    p.add_argument("name", help="component name, or KIND:NAME when the name is ambiguous")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
    p = commands.add_parser("plugins", help="loaded, failed and blocked plugins")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)
    register_check(commands)


def build_parser(registry: _registry.Registry | None = None) -> _Parser:
    """The argument parser with the core's subcommands and those every loaded plugin registers."""
    parser = _Parser(prog="xai-plugins", description="Explanation research for Captum and Zennit, as plugins.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    table = CommandTable(sub, parser.commands)
    xai_register_commands(table)
    table.commit()
    reg = registry or _quiet_registry()
    for impl in reg.hookimpls("xai_register_commands"):
        table.plugin = reg.plugin_name(impl.plugin)
        error = _registry.run_isolated(partial(impl.function, commands=table))
        if error is None:
            table.commit()
        else:
            table.discard()
            print(f"xai-plugins: warning: the commands of plugin {table.plugin!r} are unavailable: "
                  f"{_registry.failure_message(error)}", file=sys.stderr)
    return parser


def _command_word(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def missing_command_error(name: str, registry: _registry.Registry) -> UsageError | None:
    """Why a command of an optional distribution is not there (not installed, blocked, failed), or ``None``."""
    if name not in COMMANDS_OF_DISTRIBUTIONS:
        return None
    distribution, plugin = COMMANDS_OF_DISTRIBUTIONS[name]
    record = {p.name: p for p in registry.plugins()}.get(plugin)
    if record is not None and record.status == "blocked":
        why = f"but that plugin is blocked by {_registry.BLOCK_ENV}; remove {plugin!r} from it"
    elif record is not None and record.status == "failed":
        why = f"but that plugin failed to load: {record.error}"
    elif _registry.autoload_disabled():
        why = f"but plugin loading is off ({_registry.DISABLE_ENV} is set); unset it"
    else:
        why = f"which is not installed; install it with 'pip install {distribution}'"
    return UsageError(f"{name!r} is a command of plugin {plugin!r} of the distribution {distribution}, {why}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    registry = _quiet_registry()
    parser = build_parser(registry)
    word = _command_word(argv)
    missing = missing_command_error(word, registry) if word and word not in parser.commands else None
    if missing is not None:
        parser.print_usage(sys.stderr)
        print(f"xai-plugins: error: {missing}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (UsageError, ComponentNotFoundError) as exc:
        if args.debug:
            raise
        print(f"xai-plugins: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one clear line unless --debug
        if args.debug:
            raise
        print(f"xai-plugins: error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
