"""The command line stays light and guides: ``--help`` and ``list`` import no torch, ``--version``, defaults
in ``--help``, a description for every subcommand, and the package to install for a missing command."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from xai_plugins import cli


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["list", "--json"], ["--version"], ["plugins"]])
def test_help_and_list_do_not_import_torch(argv):
    script = ("import sys\nfrom xai_plugins.cli import main\n"
              "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
              "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=120)
    assert proc.stderr.strip().splitlines()[-1] == "NO-TORCH", proc.stderr


def test_version(capsys):
    import xai_plugins

    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"xai-plugins {xai_plugins.__version__}"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


@pytest.mark.parametrize("command", ["demo", "evaluate", "explain", "search"])
def test_workbench_subcommands_describe_themselves_and_show_defaults(command):
    sub = _subparsers(cli.build_parser())[command]
    assert sub.description and len(sub.description) > 40
    text = sub.format_help()
    for action in sub._actions:
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) and action.help:
            shown = " ".join(map(str, action.default)) if isinstance(action.default, list) else str(action.default)
            assert f"default: {shown}" in " ".join(text.split()), (command, action.dest)


def test_every_subcommand_has_help():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert set(helps) == set(sub.choices)
    assert all(helps.values()), helps


def test_lazy_choices_reject_unknown_names_with_the_list(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["search", "--metric", "nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err and "mass_accuracy" in err
