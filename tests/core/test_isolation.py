"""Plugins that exit, print, pick hostile names or are missing: isolated, kept off stdout, refused, reported.

Every plugin here is installed through its entry point (the ``tests/plugins`` packages), as a user would.
"""

from __future__ import annotations

import json
import string
import subprocess
import sys

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import xai_plugins
from xai_plugins.cli import main
from xai_plugins.registry import PluginWarning, Registry

ALLOWED = set(string.ascii_letters + string.digits + "_-")


def _records():
    with pytest.warns(PluginWarning):
        return {p.name: p for p in xai_plugins.plugins()}


def _run(args, env, cwd=None):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=300,
                          cwd=cwd)


def test_system_exit_at_import_is_a_failed_plugin_with_its_code(install_plugins, capsys):
    install_plugins("good", "system_exit_import")
    records = _records()
    assert records["testsysexitimport"].status == "failed"
    assert records["testsysexitimport"].error == "SystemExit: the plugin called exit with code 3"
    assert records["testgood"].status == "loaded"
    assert [c.name for c in xai_plugins.list_components()] == ["test_gxi"]
    assert main(["plugins"]) == 1
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("testsysexitimport"))
    assert row.split()[:2] == ["testsysexitimport", "failed"] and row.endswith("with code 3")


def test_system_exit_in_a_hook_is_isolated_and_rolled_back(install_plugins):
    install_plugins("good", "system_exit_hook")
    records = _records()
    assert records["testsysexithook"].error == "SystemExit: the plugin called exit with code 4"
    assert "exit_half_registered" not in {c.name for c in xai_plugins.list_components()}
    assert records["testgood"].status == "loaded"


def test_keyboard_interrupt_is_not_swallowed():
    class Interrupting:
        @xai_plugins.hookimpl
        def xai_register_models(self, register):
            raise KeyboardInterrupt

    reg = Registry()
    with pytest.raises(KeyboardInterrupt):
        reg.register_plugin(Interrupting(), "interrupting")
    assert reg.components() == [] and reg.plugins() == []


def test_plugin_output_never_reaches_stdout(install_plugins):
    install_plugins("good", "printing", "system_exit_import")
    out = _run(["xai_plugins.cli", "list", "--json"], install_plugins.env())
    assert out.returncode == 1  # one plugin failed
    data = json.loads(out.stdout)
    assert sorted(c["name"] for c in data["components"]) == ["test_gxi", "test_printing"]
    assert [p["name"] for p in data["failed_plugins"]] == ["testsysexitimport"]
    for line in ("testprinting: imported", "testprinting: registering {not json", "testprinting: adding a command"):
        assert line in out.stderr.splitlines()


def test_plugin_output_goes_to_stderr_in_process(install_plugins, capsys):
    install_plugins("printing")
    assert main(["list", "--json"]) == 0
    captured = capsys.readouterr()
    assert [c["name"] for c in json.loads(captured.out)["components"]] == ["test_printing"]
    assert "testprinting: registering {not json" in captured.err


FAILURES = {
    "testimporterror": "the plugin failed to load, so it cannot be checked: ModuleNotFoundError: No module named "
                       "'xai_plugins_no_such_dependency'",
    "testsysexitimport": "the plugin failed to load, so it cannot be checked: SystemExit: the plugin called exit "
                         "with code 3",
    "testnosuch": "no such plugin; plugins found: ",
    "testcommands": "the plugin registered no component, so there is nothing to check",
}


def test_conformance_route_fails_for_a_plugin_that_did_not_load(install_plugins, tmp_path):
    install_plugins("good", "import_error", "system_exit_import", "commands")
    (tmp_path / "none.ini").write_text("[pytest]\n")
    selection = [arg for name in FAILURES for arg in ("--xai-plugin", name)]
    out = _run(["pytest", str(tmp_path), "-p", "xai_plugins.conformance", "-p", "no:cacheprovider", "-c",
                str(tmp_path / "none.ini"), "--rootdir", str(tmp_path), "-q", *selection],
               install_plugins.env(), cwd=tmp_path)
    assert out.returncode == pytest.ExitCode.USAGE_ERROR, out.stdout + out.stderr
    for name, why in FAILURES.items():
        assert f"--xai-plugin {name}: {why}" in out.stderr


def test_conformance_route_runs_a_loaded_plugin(install_plugins, tmp_path):
    install_plugins("good", "import_error")
    (tmp_path / "none.ini").write_text("[pytest]\n")
    out = _run(["pytest", str(tmp_path), "-p", "xai_plugins.conformance", "-p", "no:cacheprovider", "-W", "ignore",
                "-c", str(tmp_path / "none.ini"), "--rootdir", str(tmp_path), "-q", "--xai-plugin", "testgood",
                "--xai-check", "metadata", "--xai-check", "output"], install_plugins.env(), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout


def _name_is_allowed(name: str) -> bool:
    return bool(name) and set(name) <= ALLOWED and not name.startswith("-")


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=12), st.text(alphabet=sorted(ALLOWED), max_size=12)))
@example("--help")
@example("-x")
@example("t\u0435st")  # Cyrillic e
@example("\uff54est")  # fullwidth t
@example("caf\u00e9")
@example("ok_name-2")
@example("٣")  # an Arabic-Indic digit: isalnum() but not ASCII
def test_component_names_are_ascii_words_not_options(name):
    class Plugin:
        @xai_plugins.hookimpl
        def xai_register_models(self, register):
            register(name, torch.nn.Identity, summary="identity", paper="none")

    reg = Registry()
    if _name_is_allowed(name):
        reg.register_plugin(Plugin(), "p")
        assert [c.name for c in reg.components()] == [name]
    else:
        with pytest.raises(xai_plugins.RegistrationError, match="use ASCII letters, digits, '_' or '-', not starting"):
            reg.register_plugin(Plugin(), "p")
        assert reg.components() == [] and reg.plugins() == []


@pytest.mark.parametrize("name", ["--help", "-x", "test_gx\u0456"])  # the last ends in a Cyrillic i
def test_hostile_names_from_an_installed_plugin_fail_that_plugin(install_plugins, monkeypatch, capsys, name):
    install_plugins("good", "named")
    monkeypatch.setenv("XAI_TEST_COMPONENT_NAME", name)
    records = _records()
    assert records["testnamed"].status == "failed"
    assert records["testnamed"].error == (
        f"RegistrationError: plugin 'testnamed' registered an attributor with invalid name {name!r}; use ASCII "
        "letters, digits, '_' or '-', not starting with '-'")
    assert [c.name for c in xai_plugins.list_components()] == ["test_gxi"]
    assert main(["info", "test_gxi"]) == 0
    assert "plugin        testgood" in capsys.readouterr().out


def test_a_plain_name_from_an_installed_plugin_loads(install_plugins, monkeypatch):
    install_plugins("named")
    monkeypatch.setenv("XAI_TEST_COMPONENT_NAME", "my-attributor_2")
    assert xai_plugins.describe("attributor", "my-attributor_2").plugin == "testnamed"
