"""The implementation-invariance report of the workbench: rows, numbers and errors end up in both formats."""

from __future__ import annotations

import pytest

invariance = pytest.importorskip("xai_plugins_workbench.invariance")
invariance_cli = pytest.importorskip("xai_plugins_workbench.invariance_cli")


def _broken(model, inputs, target):
    raise RuntimeError("no rule for this module")


def test_report_has_a_number_or_an_error_per_method_and_pair():
    rows = [m for m in invariance.methods(include_ours=False) if m.name == "InputXGradient"]
    rows.append(invariance.Method("Broken", "test", _broken))
    report = invariance.run(rows, seeds=1, progress=False)
    assert set(report.results) == {"InputXGradient", "Broken"}
    assert all(v < 1e-5 for v in report.results["InputXGradient"].values())
    assert set(report.results["Broken"].values()) == {"RuntimeError: no rule for this module"}
    data = invariance.as_json(report)
    assert [p["name"] for p in data["pairs"]] == [p.name for p in invariance.PAIRS]
    assert data["methods"][1]["results"]["fx_traced"] == {"error": "RuntimeError: no rule for this module"}
    text = invariance.as_markdown(report, "cmd")
    assert "| Broken | test | error [1] | error [1]" in text
    assert "1. `RuntimeError: no rule for this module`" in text


def test_command_rejects_bad_kwargs(tmp_path, capsys):
    code = invariance_cli.main(["--output-dir", str(tmp_path), "--attributor-kwargs", "x=[1]", "--no-progress"])
    assert code == 2
    assert "expected NAME={json object}" in capsys.readouterr().err
    assert not (tmp_path / "invariance.json").exists()
