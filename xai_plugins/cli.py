"""The ``xai-plugins`` command: list, inspect and check registered components.

Further subcommands come from the entry-point group ``xai_plugins.commands``: each entry point names a
function ``register_commands(subparsers)`` that adds parsers whose ``func(args) -> int`` runs the command.
Exit codes: 0 ok, 1 failures found, 2 usage error. Errors print as one line unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import sys
import textwrap
import warnings
from collections.abc import Sequence
from typing import NoReturn

from xai_plugins import registry as _registry
from xai_plugins.errors import ComponentNotFoundError, XaiPluginsError

COMMANDS_GROUP = "xai_plugins.commands"
OPTIONAL_COMMANDS: dict[str, tuple[str, str]] = {
    name: ("xai-plugins-workbench", "xai-plugins[workbench]")
    for name in ("demo", "evaluate", "explain", "search", "invariance")
}
"""Subcommands that live in another distribution: (distribution, what to pip install)."""


class UsageError(XaiPluginsError):
    """The command line is wrong; exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one clear line, exit code 2
        self.print_usage(sys.stderr)
        print(f"xai-plugins: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _quiet_registry() -> _registry.Registry:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _registry.PluginWarning)
        return _registry.get_registry()


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


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
            print(textwrap.indent(_table(rows, ["name", "plugin", "distribution", "summary"]), "  "))
            print()
    if not comps:
        print("no components registered")
    for p in failed:
        print(f"FAILED plugin {p.name} ({p.distribution or 'no distribution'}): {p.error}")
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
        print(f"{key:13} {', '.join(value) if isinstance(value, list) else value}")
    for key, value in data["extra"].items():
        print(f"{key:13} {value}")
    if data["doc"]:
        print()
        print(data["doc"])
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
        print(_table(rows, ["plugin", "status", "distribution", "components / error"]) if rows
              else "no plugins found")
    return 1 if _failed(reg) else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with the core subcommands and those of installed command entry points."""
    parser = _Parser(prog="xai-plugins", description="Explanation research for Captum and Zennit, as plugins.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("list", help="list registered components by family")
    p.add_argument("--kind", choices=_registry.KINDS, help="only this family")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("info", help="metadata and docstring of one component")
    p.add_argument("name", help="component name, or KIND:NAME when the name is ambiguous")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("plugins", help="loaded, failed and blocked plugins")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)
    for ep in sorted(metadata.entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            ep.load()(sub)
        except Exception as exc:  # noqa: BLE001 - a broken command module must not break the others
            print(f"xai-plugins: warning: commands from {ep.value!r} unavailable: {exc}", file=sys.stderr)
    return parser


def _version() -> str:
    from xai_plugins import __version__

    return __version__


def _missing_distribution(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """The one-line message for a subcommand whose distribution is not installed, or None."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in OPTIONAL_COMMANDS:
        return None
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if command in sub.choices:
        return None
    distribution, install = OPTIONAL_COMMANDS[command]
    return (f"'{command}' comes with the {distribution} distribution, which is not installed; "
            f"pip install \"{install}\"")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    missing = _missing_distribution(parser, argv)
    if missing:
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
