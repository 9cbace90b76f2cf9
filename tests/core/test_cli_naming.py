"""One naming scheme across every subcommand: ``-o/--output FILE``, ``--output-dir DIR``, ``--no-progress``,
``--model SOURCE:NAME``; the spellings of earlier releases still parse, hidden, with one deprecation line."""

from __future__ import annotations

import argparse

import pytest

from xai_plugins.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _visible(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.help is not argparse.SUPPRESS]


COMMANDS = _subparsers(build_parser())


def test_every_project_command_is_checked():
    assert {"list", "info", "plugins", "check", "canonize", "explainfix", "demo", "evaluate", "explain",
            "invariance", "search"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_output_options_follow_the_scheme(name):
    for action in _visible(COMMANDS[name]):
        strings = set(action.option_strings)
        if action.dest == "output":
            assert strings == {"-o", "--output"} and action.metavar == "FILE", name
        elif action.dest == "output_dir":
            assert strings == {"--output-dir"} and action.metavar == "DIR", name
        else:
            assert not strings & {"-o", "--out", "--output", "--quiet"}, (name, strings)
            assert not any(s.startswith("--out") for s in strings), (name, strings)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_progress_is_switched_off_by_one_name(name):
    for action in _visible(COMMANDS[name]):
        if "progress" in action.dest or "quiet" in action.dest:
            assert action.option_strings == ["--no-progress"], name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_model_options_name_their_source(name):
    for action in _visible(COMMANDS[name]):
        if "--model" in action.option_strings and action.default is not None:
            assert ":" in action.default, (name, action.default)


@pytest.mark.parametrize(("argv", "dest", "replacement"), [
    (["demo", "-o", "d"], "output_dir", "--output-dir"),
    (["evaluate", "--out", "d"], "output_dir", "--output-dir"),
    (["invariance", "--output", "d"], "output_dir", "--output-dir"),
    (["search", "--out", "d"], "output", "-o/--output"),
    (["invariance", "--quiet"], "no_progress", "--no-progress"),
])
def test_old_spellings_parse_and_name_the_new_option(argv, dest, replacement, capsys):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == (True if dest == "no_progress" else "d")
    err = capsys.readouterr().err
    assert f"is deprecated; use {replacement}" in err


def test_search_takes_the_checkpoint_form_of_explain():
    assert build_parser().parse_args(["search", "--model", "checkpoint:resnet"]).model == "resnet"
    assert build_parser().parse_args(["search", "--model", "resnet"]).model == "resnet"
