"""The ``xai-plugins`` command: output, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xai_plugins.cli import main


def test_list_shows_components_by_family_with_provenance(install_plugins, capsys):
    install_plugins("good")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "attributors (1)" in out
    row = next(line for line in out.splitlines() if "test_gxi" in line)
    assert row.split()[:4] == ["test_gxi", "testgood", "xai-plugins-testgood", "1.2.3"]
    assert row.endswith("Gradient times input (test plugin)")


def test_list_json(install_plugins, capsys):
    install_plugins("good")
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (comp,) = data["components"]
    assert comp["name"] == "test_gxi" and comp["distribution"] == "xai-plugins-testgood"
    assert comp["object"] == "xai_testgood:gradient_x_input"
    assert data["failed_plugins"] == []


def test_list_reports_failed_plugin_with_exception_and_exits_1(install_plugins, capsys):
    install_plugins("good", "hook_error")
    assert main(["list"]) == 1
    out = capsys.readouterr().out
    assert ("FAILED plugin testhookerror (xai-plugins-testhookerror): RuntimeError: hook exploded on purpose"
            in out.splitlines())
    assert "test_gxi" in out


def test_plugins_table(install_plugins, capsys):
    install_plugins("good", "misspelled")
    assert main(["plugins"]) == 1
    lines = capsys.readouterr().out.splitlines()
    good = next(line for line in lines if line.startswith("testgood"))
    assert good.split() == ["testgood", "loaded", "xai-plugins-testgood", "1.2.3", "1"]
    bad = next(line for line in lines if line.startswith("testmisspelled"))
    assert "failed" in bad and "unknown hook 'xai_register_canonizer'" in bad
    blocked = next(line for line in lines if line.startswith("canonizers"))
    assert blocked.split()[:2] == ["canonizers", "blocked"]


def test_info_prints_metadata_and_docstring(install_plugins, capsys):
    install_plugins("good")
    assert main(["info", "test_gxi"]) == 0
    out = capsys.readouterr().out
    assert "paper         Shrikumar et al., Not Just a Black Box, 2016" in out
    assert "plugin        testgood" in out
    assert out.rstrip().endswith("Gradient times input for the target logits.")
    assert main(["info", "attributor:test_gxi", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["doc"] == "Gradient times input for the target logits."


def test_unknown_name_is_a_usage_error_in_one_line(install_plugins, capsys):
    install_plugins("good")
    assert main(["info", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.endswith("xai-plugins: error: no component named 'nope'; run 'xai-plugins list' to see the "
                        "registered names\n")
    assert "Traceback" not in err


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["list", "--kind", "widget"])
    assert exc.value.code == 2
    assert "xai-plugins: error: argument --kind: invalid choice: 'widget'" in capsys.readouterr().err


def test_errors_have_no_traceback_unless_debug(install_plugins, capsys):
    install_plugins("good")
    assert main(["info", "model:missing"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(
        "xai-plugins: error: no model named 'missing' is registered; registered models: none")
    assert "Traceback" not in err
    with pytest.raises(Exception, match="no model named 'missing'"):
        main(["--debug", "info", "model:missing"])


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "xai_plugins.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("list", "info", "plugins"):
        assert command in out.stdout
