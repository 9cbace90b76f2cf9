"""The ``xai-plugins explainfix`` subcommand."""

from __future__ import annotations

import pytest

from xai_plugins.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::xai_plugins.registry.PluginWarning")


def test_explainfix_command_fixes_a_torchvision_model_and_writes_the_plot(tmp_path, capsys):
    pytest.importorskip("torchvision")
    out = tmp_path / "spectra.png"
    code = main(["explainfix", "--model", "torchvision:mobilenet_v3_small", "--method", "dct_steered", "--seed", "0",
                 "--num-classes", "10", "-o", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert "mobilenet_v3_small: fixed 12 spatial convolution(s) with 'dct_steered' (seed 0): 59,016 parameters " \
        "frozen; trainable parameters " in text
    assert "wrote the spectra of 12 spatial layers to" in text
    assert out.stat().st_size > 10_000


def test_explainfix_command_unknown_method_lists_the_known_ones(tmp_path, capsys):
    pytest.importorskip("torchvision")
    code = main(["explainfix", "--method", "dct", "-o", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown ExplainFix method 'dct'; known initializers:" in err and "dct_steered" in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("method", ["guided_steered", "svd_steered", "dct2_steered"])
def test_explainfix_command_refuses_fitted_initializers_with_the_python_call(tmp_path, capsys, method):
    pytest.importorskip("torchvision")
    code = main(["explainfix", "--method", method, "-o", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{method} is fitted to a trained model's filters; use it from Python: " \
        f"fix_spatial_filters(model, '{method}', source=trained_model)" in err
