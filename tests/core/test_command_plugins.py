"""Subcommands come through the ``xai_register_commands`` hook of the one plugin manager: the autoload switch
and the block list govern command plugins, a failing command hook loses only its own commands, and a command
of a distribution that is not there says what to install."""

from __future__ import annotations

import sys

import pytest

from xai_plugins import cli
from xai_plugins.cli import main

CORE_COMMANDS = ["list", "info", "plugins", "check"]


def _help(capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_autoload_switch_and_block_list_govern_command_plugins(install_plugins, monkeypatch, tmp_path, capsys):
    marker = tmp_path / "imported.txt"
    monkeypatch.setenv("XAI_TEST_MARKER", str(marker))
    install_plugins("commands")
    monkeypatch.setenv("XAI_PLUGINS_DISABLE_AUTOLOAD", "1")
    assert "hello" not in _help(capsys)
    assert not marker.exists() and "xai_testcommands" not in sys.modules
    monkeypatch.delenv("XAI_PLUGINS_DISABLE_AUTOLOAD")
    cli._registry.reset_registry()
    monkeypatch.setenv("XAI_PLUGINS_BLOCK", "testcommands")
    assert "hello" not in _help(capsys)
    assert not marker.exists() and "xai_testcommands" not in sys.modules
    monkeypatch.delenv("XAI_PLUGINS_BLOCK")
    cli._registry.reset_registry()
    monkeypatch.setenv("XAI_PLUGINS_BLOCK", "canonizers,bcos,extremal,explainfix,example,workbench")
    assert "say hello (test command plugin)" in _help(capsys)
    assert marker.read_text() == "imported\n"
    assert main(["hello", "world"]) == 0
    assert capsys.readouterr().out == "hello world\n"


def test_core_commands_come_through_the_hook_in_order(install_plugins):
    install_plugins("commands")
    parser = cli.build_parser()
    assert list(parser.commands) == [*CORE_COMMANDS, "hello"]
    assert set(parser.commands.values()) == {cli.CORE, "testcommands"}
    assert parser.commands["hello"] == "testcommands"


def test_a_failing_command_hook_adds_none_of_its_commands(install_plugins, monkeypatch, capsys):
    monkeypatch.setenv("XAI_TEST_COMMAND_ABORT", "1")
    install_plugins("good", "commands")
    parser = cli.build_parser()
    assert list(parser.commands) == CORE_COMMANDS
    assert ("xai-plugins: warning: the commands of plugin 'testcommands' are unavailable: Abort: command hook "
            "aborted on purpose") in capsys.readouterr().err
    assert main(["list"]) == 0


def test_a_command_cannot_take_another_plugins_name(install_plugins, capsys):
    install_plugins("commands")

    class Clashing:
        from xai_plugins import hookimpl

        @hookimpl
        def xai_register_commands(self, commands):
            commands.add_parser("hello", help="a second hello")

    registry = cli._quiet_registry()
    registry.register_plugin(Clashing(), "zclash")
    parser = cli.build_parser(registry)
    assert parser.commands["hello"] == "testcommands"
    assert ("the commands of plugin 'zclash' are unavailable: RegistrationError: command 'hello' is registered "
            "twice: by plugin 'testcommands' and by plugin 'zclash'") in capsys.readouterr().err


@pytest.mark.parametrize("name", ["--json", "-v", "h\u0435llo"])
def test_command_names_follow_the_component_name_rule(install_plugins, capsys, name):
    class Hostile:
        from xai_plugins import hookimpl

        @hookimpl
        def xai_register_commands(self, commands):
            commands.add_parser(name, help="hostile")

    install_plugins()
    registry = cli._quiet_registry()
    registry.register_plugin(Hostile(), "hostile")
    assert list(cli.build_parser(registry).commands) == CORE_COMMANDS
    assert f"registered a command with invalid name {name!r}" in capsys.readouterr().err


def test_command_of_a_blocked_distribution_names_the_block(install_plugins, capsys):
    install_plugins()
    assert main(["demo"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "xai-plugins: error: 'demo' is a command of plugin 'workbench' of the distribution xai-plugins-workbench, "
        "but that plugin is blocked by XAI_PLUGINS_BLOCK; remove 'workbench' from it")


def test_command_of_a_missing_distribution_says_what_to_install(install_plugins, monkeypatch, capsys):
    install_plugins()
    monkeypatch.setitem(cli.COMMANDS_OF_DISTRIBUTIONS, "frobnicate", ("xai-plugins-frob", "frob"))
    assert main(["--debug", "frobnicate", "--fast"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "xai-plugins: error: 'frobnicate' is a command of plugin 'frob' of the distribution xai-plugins-frob, "
        "which is not installed; install it with 'pip install xai-plugins-frob'")


def test_command_while_autoload_is_off_names_the_switch(install_plugins, monkeypatch, capsys):
    install_plugins()
    monkeypatch.setenv("XAI_PLUGINS_DISABLE_AUTOLOAD", "1")
    assert main(["invariance"]) == 2
    assert "but plugin loading is off (XAI_PLUGINS_DISABLE_AUTOLOAD is set); unset it" in capsys.readouterr().err
