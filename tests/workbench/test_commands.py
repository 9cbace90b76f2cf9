"""The workbench commands: evaluate (table, JSON, plot), explain (own model and image), demo (figure, report)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from xai_plugins_workbench import demo_cli
from xai_plugins_workbench.evaluate import EvalSettings, evaluate, headline, markdown_table, write_report

pytest.importorskip("zennit")
pytest.importorskip("captum")


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xai-plugins")
    demo_cli.register_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_evaluate_writes_table_json_and_plot(checkpoint_dir, tmp_path):
    settings = EvalSettings(models=("resnet", "densenet"), methods=("lrp_zennit_plain", "lrp_zennit_canonized",
                                                                    "gradient"),
                            metrics=("mass_accuracy", "pointing_game", "region_aopc", "conservation"), images=4,
                            batch_size=4, checkpoint_dir=checkpoint_dir)
    rows = evaluate(settings, progress=False)
    assert [(r["model"], r["method"]) for r in rows] == [("resnet", "lrp_zennit_plain"),
                                                         ("resnet", "lrp_zennit_canonized"), ("resnet", "gradient")]
    assert settings.skipped == ["model densenet: no checkpoint"]
    for row in rows:
        assert "error" not in row, row
        assert 0 <= row["mass_accuracy"]["mean"] <= 1 and row["mass_accuracy"]["n"] == 4
    assert rows[2]["conservation"]["n"] == 0  # gradient does not claim conservation
    assert headline(rows)[0]["model"] == "resnet" and "mass_accuracy" in headline(rows)[0]
    paths = write_report(rows, settings, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert len(data["rows"]) == 3 and data["headline"]
    text = paths["markdown"].read_text()
    assert "Canonized vs plain LRP" in text and "LRP (Zennit, canonized)" in text
    assert paths["plot"].stat().st_size > 1000
    assert markdown_table(rows, settings.metrics).count("\n") == 4


def test_evaluate_rejects_unknown_names(checkpoint_dir):
    with pytest.raises(ValueError, match="unknown methods lime; choose from"):
        evaluate(EvalSettings(methods=("lime",), checkpoint_dir=checkpoint_dir), progress=False)


def test_explain_command_on_a_torchvision_model(tmp_path, capsys):
    torchvision = pytest.importorskip("torchvision")
    from PIL import Image
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    weights = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    image = tmp_path / "image.png"
    Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)).save(image)
    out = tmp_path / "out.png"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    code = _run(["explain", "--model", "torchvision:resnet18", "--weights", str(weights), "--image", str(image),
                 "--method", "lrp", "--target", "1", "--size", "32", "-o", str(out)])
    assert code == 0 and out.stat().st_size > 1000
    assert "explained class 1" in capsys.readouterr().out
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    code = _run(["explain", "--model", "torchvision:resnet18", "--weights", str(weights), "--image", str(image),
                 "--method", "gradient", "--size", "32", "-o", str(out)])
    assert code == 0


def test_demo_writes_figure_and_report(checkpoint_dir, tmp_path):
    from xai_plugins_workbench.demo import run_demo

    result = run_demo(tmp_path / "demo", images=2, metric_images=4, checkpoint_dir=checkpoint_dir, progress=False,
                      dataset="digits")
    assert result.figure.stat().st_size > 10_000
    html = result.report.read_text()
    assert "<table>" in html and "demo.png" in html and "LRP (Zennit, canonized)" in html
    assert any("densenet: no checkpoint" in m for m in result.missing)
    rows = json.loads(result.metrics.read_text())["rows"]
    assert {r["model"] for r in rows} == {"resnet", "bcos"}
    assert all("error" not in r for r in rows), rows


def test_the_demo_defaults_to_the_textured_benchmark(textured_checkpoint_dir, tmp_path):
    """By default the panels explain TexturedCanvas images with the textured checkpoints; B-cos (no textured
    recipe) is shown on DigitsOnCanvas images of the same digits, and the figure, report and metrics say so."""
    from xai_plugins.evaluation.textured import TexturedCanvas
    from xai_plugins_workbench.demo import DEFAULT_DATASET, DEMO_METRICS, demo_models, run_demo

    assert DEFAULT_DATASET == "textured"
    chosen = demo_models("textured")
    assert chosen == {"resnet": "resnet_textured", "densenet": "densenet_textured",
                      "efficientnet": "efficientnet_textured", "bcos": "bcos", "explainfix": "explainfix"}
    assert demo_models("digits") == {f: f for f in chosen}
    result = run_demo(tmp_path / "demo", images=2, metric_images=4, checkpoint_dir=textured_checkpoint_dir,
                      progress=False)
    assert result.dataset == "textured" and result.models == chosen
    size = TexturedCanvas().config.size
    by_model = {}
    for panel in result.panels:
        by_model.setdefault(panel.model, []).append(panel)
    resnet = [p for p in by_model["resnet_textured"] if p.error is None]
    assert len(resnet) == 5  # Zennit and Captum, plain and canonized, and the extremal mask
    assert all(p.maps is not None and p.maps.shape == (2, size, size) and p.images is None for p in resnet)
    (bcos,) = by_model["bcos"]
    assert bcos.error is None and bcos.rgba is not None and bcos.images is not None
    assert bcos.rgba.shape[1:3] == bcos.images.shape[-2:] != (size, size)
    assert "DigitsOnCanvas" in bcos.title
    assert any("densenet_textured: no checkpoint" in m for m in result.missing)
    assert result.figure.stat().st_size > 10_000
    report = result.report.read_text()
    assert "TexturedCanvas" in report and "<h2>Metrics</h2>" in report and "LRP (Zennit, canonized)" in report
    assert "B-cos has no textured recipe" in report
    metrics = json.loads(result.metrics.read_text())
    assert metrics["dataset"] == "textured"
    rows = {(r["model"], r["method"]): r for r in metrics["rows"]}
    assert {m for m, _ in rows} == {"resnet_textured", "bcos"}
    assert {r["dataset"] for r in metrics["rows"] if r["model"] == "resnet_textured"} == {"textured"}
    assert rows[("bcos", "bcos")]["dataset"] == "digits"
    assert all("error" not in r and set(DEMO_METRICS) <= set(r) for r in metrics["rows"]), metrics["rows"]


def test_headline_compares_both_densenet_canonizations_with_plain_lrp():
    def row(method, mass):
        return {"model": "densenet_textured", "method": method, "label": method,
                "mass_accuracy": {"mean": mass, "sem": 0.01, "n": 4}}

    rows = [row("lrp_zennit_plain", 0.4), row("lrp_zennit_canonized", 0.3), row("lrp_zennit_untangled", 0.7)]
    entries = headline(rows)
    assert [e["host"] for e in entries] == ["zennit", "zennit untangled"]
    assert [e["mass_accuracy"]["better"] for e in entries] == [False, True]
    assert entries[1]["mass_accuracy"] == {"plain": 0.4, "canonized": 0.7, "better": True}
