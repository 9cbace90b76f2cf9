"""``xai-plugins check PLUGIN``: run the conformance suite on one plugin's components and print a table.

Exit codes: 0 every check passed (or was skipped), 1 a check failed, 2 usage error (unknown plugin, kind or
check, or a plugin that failed to load).
"""

from __future__ import annotations

import argparse
import json

from xai_plugins.hookspecs import Commands
from xai_plugins.registry import KINDS

STATUS_MARK = {"pass": "ok", "fail": "FAIL", "skip": "skip"}
MESSAGE_CHARS = 90
"""A message longer than this is cut in the table (and shown whole, wrapped, under it when its check failed)."""


def register_commands(subparsers: Commands) -> None:
    """Add the ``check`` subcommand to the ``xai-plugins`` command."""
    p = subparsers.add_parser("check", help="run the conformance suite on one plugin's components",
                              description="Run the conformance suite on every component a plugin registered. "
                                          "Exit 0 when all pass, 1 on failures, 2 on usage errors.")
    p.add_argument("plugin", help="plugin name as 'xai-plugins plugins' lists it (the entry-point name)")
    p.add_argument("--kind", choices=KINDS, help="only components of this kind")
    p.add_argument("--component", help="only the component with this name")
    p.add_argument("--check", action="append", dest="checks", metavar="NAME", help="only this check (repeatable)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-v", "--verbose", action="store_true", help="show the message of passing checks too")
    p.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    """Run the suite on the plugin's components; print a table (or JSON); 0 ok, 1 failures, 2 usage error."""
    from xai_plugins.cli import UsageError
    from xai_plugins.cli_output import table, wrap
    from xai_plugins.conformance.suite import _registry, checks_for, run_checks, select_components

    registry = _registry(None)
    records = {p.name: p for p in registry.plugins()}
    record = records.get(args.plugin)
    if record is None:
        raise UsageError(f"no plugin named {args.plugin!r}; plugins found: {', '.join(sorted(records)) or 'none'} "
                         "(run 'xai-plugins plugins')")
    if record.status == "blocked":
        raise UsageError(f"plugin {args.plugin!r} is blocked by XAI_PLUGINS_BLOCK; unblock it to check it")
    if record.status != "loaded":
        raise UsageError(f"plugin {args.plugin!r} failed to load, so it cannot be checked: {record.error}")
    components = select_components(args.plugin, args.kind, args.component, registry)
    if not components:
        what = " ".join(x for x in (args.kind, args.component) if x) or "any"
        raise UsageError(f"plugin {args.plugin!r} registered no {what} component")
    results = []
    for comp in components:
        only = None
        if args.checks:
            known = checks_for(comp.kind)
            unknown = [c for c in args.checks if c not in known and not any(c in checks_for(k) for k in KINDS)]
            if unknown:
                raise UsageError(f"unknown check(s) {', '.join(unknown)}; {comp.kind} checks: {', '.join(known)}")
            only = [c for c in args.checks if c in known]
            if not only:
                continue
        results += run_checks(comp, only)
    failures = [r for r in results if r.status == "fail"]
    if args.json:
        print(json.dumps({"plugin": args.plugin, "results": [r.as_dict() for r in results],
                          "failed": len(failures)}, indent=2))
        return 1 if failures else 0
    rows = [[r.component, r.check, STATUS_MARK[r.status],
             r.message if (args.verbose or r.status != "pass") else ""] for r in results]
    print(table([[a, b, c, (d[:MESSAGE_CHARS] + " ...") if len(d) > MESSAGE_CHARS + 4 else d] for a, b, c, d in rows],
                ["component", "check", "result", "message"]))
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
    print()
    print(wrap(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped "
               f"({len(components)} components of plugin {args.plugin!r})"))
    for r in failures:
        print(f"\nFAIL {r.component} {r.check}:\n{wrap(r.message, indent='  ', hanging='  ')}")
    return 1 if failures else 0
