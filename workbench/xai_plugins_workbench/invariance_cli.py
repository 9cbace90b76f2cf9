"""``xai-plugins invariance``: write the implementation-invariance table as markdown and JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from xai_plugins.cli_options import add_no_progress, add_output_dir
from xai_plugins.hookspecs import Commands


def register_commands(subparsers: Commands) -> None:
    """Add the ``invariance`` subcommand."""
    p = subparsers.add_parser(
        "invariance", help="write the implementation-invariance table (markdown and JSON)",
        description="Run our attributors, Captum's Saliency, InputXGradient, IntegratedGradients and LRP, and "
                    "Zennit's EpsilonPlusFlat (with and without our canonizers) over pairs of functionally "
                    "equivalent models; write the worst relative difference per method and pair.")
    add_arguments(p)
    p.set_defaults(func=cmd_invariance)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of the command."""
    add_output_dir(p, ".", "directory for invariance.md and invariance.json")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (weights and inputs) per pair")
    p.add_argument("--no-ours", action="store_true", help="only the Captum and Zennit baselines")
    add_no_progress(p)
    p.add_argument("--attributor-kwargs", action="append", default=[], metavar="NAME=JSON",
                   help="keyword arguments for one of our attributors, e.g. 'extremal_perturbation={\"max_iter\": 20}' "
                        "(default: its example_kwargs metadata); repeatable")


def cmd_invariance(args: argparse.Namespace) -> int:
    """Run the report and write both files; prints where they are. Exit 2 on a bad option."""
    from xai_plugins_workbench.invariance import as_json, as_markdown, methods, run

    if args.seeds < 1:
        print("xai-plugins: error: --seeds must be at least 1", file=sys.stderr)
        return 2
    overrides = {}
    for item in args.attributor_kwargs:
        name, sep, text = item.partition("=")
        try:
            value = json.loads(text) if sep else None
        except json.JSONDecodeError as exc:
            value = exc
        if not isinstance(value, dict):
            print(f"xai-plugins: error: --attributor-kwargs {item!r}: expected NAME={{json object}}", file=sys.stderr)
            return 2
        overrides[name] = value
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = run(methods(include_ours=not args.no_ours, kwargs=overrides), seeds=args.seeds,
                 progress=not args.no_progress)
    command = " ".join(["xai-plugins invariance", f"--output-dir {args.output_dir}", f"--seeds {args.seeds}",
                        *(f"--attributor-kwargs '{item}'" for item in args.attributor_kwargs)])
    (out / "invariance.md").write_text(as_markdown(report, command))
    (out / "invariance.json").write_text(json.dumps(as_json(report), indent=2) + "\n")
    print(f"wrote {out / 'invariance.md'} and {out / 'invariance.json'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command without the ``xai-plugins`` entry point (``python -m xai_plugins_workbench.invariance_cli``)."""
    parser = argparse.ArgumentParser(prog="xai-plugins invariance")
    add_arguments(parser)
    return cmd_invariance(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
