"""``xai-plugins check PLUGIN`` and ``pytest -p xai_plugins.conformance`` on a registry of test plugins."""

from __future__ import annotations

import json

import pytest

from tests.conformance import components as C
from xai_plugins import registry as registry_module
from xai_plugins.cli import main


@pytest.fixture
def test_registry(monkeypatch):
    """The process registry replaced by one holding a correct plugin 'good' and a broken plugin 'bad'."""
    reg = C.registry_with(
        good=C.plugin(attributor={"gxi": C.gradient_x_input}, canonizer={"merge_bn": C.MergeBatchNorm}),
        bad=C.plugin(attributor={"leaves_training": C.training_mode_attributor},
                     model={"unchecked_cnn": C.plain_cnn}),
    )
    monkeypatch.setattr(registry_module, "_registry", reg)
    return reg


def test_check_passing_plugin_exits_0_with_a_table(test_registry, capsys):
    assert main(["check", "good", "--check", "metadata", "--check", "restores_model",
                 "--check", "remove_restores"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["component", "check", "result", "message"]
    assert lines[2].split() == ["canonizer:merge_bn", "metadata", "ok"]
    assert lines[3].split() == ["canonizer:merge_bn", "remove_restores", "ok"]
    assert lines[5].split() == ["attributor:gxi", "restores_model", "ok"]
    assert "4 passed, 0 failed, 0 skipped (2 components of plugin 'good')" in out


def test_check_failing_plugin_exits_1_and_says_what_broke(test_registry, capsys):
    assert main(["check", "bad", "--check", "restores_model", "--check", "clear_errors"]) == 1
    out = capsys.readouterr().out
    assert "1 passed, 2 failed, 0 skipped (2 components of plugin 'bad')" in out
    assert "FAIL attributor:leaves_training restores_model:\n  after a call on a model in eval mode, the model" in out
    assert "FAIL model:unchecked_cnn clear_errors:\n  an input with 4 channels instead of 3: a bare RuntimeError" in out


def test_check_json(test_registry, capsys):
    assert main(["check", "bad", "--kind", "attributor", "--check", "restores_model", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["plugin"] == "bad" and data["failed"] == 1
    (result,) = data["results"]
    assert result["component"] == "attributor:leaves_training" and result["status"] == "fail"


def test_check_unknown_plugin_is_a_usage_error(test_registry, capsys):
    assert main(["check", "nosuch"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "xai-plugins: error: no plugin named 'nosuch'; plugins found: bad, good (run 'xai-plugins plugins')")


def test_check_unknown_check_is_a_usage_error(test_registry, capsys):
    assert main(["check", "good", "--check", "nosuch"]) == 2
    assert "unknown check(s) nosuch" in capsys.readouterr().err


def test_pytest_plugin_parametrizes_over_selected_components(test_registry, tmp_path, capsys):
    (tmp_path / "test_own.py").write_text("def test_own():\n    pass\n")
    args = [str(tmp_path / "test_own.py"), "-p", "xai_plugins.conformance", "-p", "no:cacheprovider",
            "--rootdir", str(tmp_path), "-c", str(tmp_path / "none.ini"), "-q", "-rA",
            "--xai-check", "metadata", "--xai-check", "restores_model"]
    (tmp_path / "none.ini").write_text("[pytest]\n")
    assert pytest.main([*args, "--xai-plugin", "good"]) == 0
    out = capsys.readouterr().out
    assert "4 passed" in out
    assert "test_conformance[attributor:gxi::restores_model]" in out
    assert "test_conformance[canonizer:merge_bn::metadata]" in out
    assert pytest.main([*args, "--xai-plugin", "bad", "--xai-kind", "attributor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL restores_model [attributor:leaves_training]: after a call on a model in eval mode" in out
    assert "1 failed, 2 passed" in out


def test_pytest_plugin_rejects_unknown_plugin(test_registry, tmp_path, capsys):
    (tmp_path / "none.ini").write_text("[pytest]\n")
    code = pytest.main([str(tmp_path), "-p", "xai_plugins.conformance", "-p", "no:cacheprovider", "-c",
                        str(tmp_path / "none.ini"), "--rootdir", str(tmp_path), "-q", "--xai-plugin", "nosuch"])
    assert code == pytest.ExitCode.USAGE_ERROR
    assert "--xai-plugin nosuch: no such plugin; plugins found: bad, good" in capsys.readouterr().err
