"""The quantus metrics backend of ``xai-plugins evaluate`` gives the torch backend's numbers."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("quantus")
pytest.importorskip("zennit")

from xai_plugins_workbench.evaluate import EvalSettings, evaluate  # noqa: E402
from xai_plugins_workbench.quantus_metrics import QUANTUS_METRICS  # noqa: E402

# Tolerances of tests/evaluation/test_metrics.py: the faithfulness curves and max sensitivity agree to
# rtol=1e-4 (atol=1e-5 for the curves), the localisation and complexity metrics to rtol=1e-5.
TOLERANCES = {"region_aopc": (1e-4, 1e-5), "pixel_flipping": (1e-4, 1e-5), "max_sensitivity": (1e-5, 0.0)}
# The randomisation check re-draws the model's parameters, and Quantus draws differently from
# xai_plugins.evaluation.metrics.randomised_model: the two agree in kind (a control scores 1, see
# tests/evaluation/test_textured.py), not in value.
AGREEING = [key for key in QUANTUS_METRICS if key != "randomisation"]


def _rows(backend: str, checkpoint_dir) -> list[dict]:
    settings = EvalSettings(models=["resnet"], methods=["gradient", "lrp_zennit_canonized"],
                            metrics=[*AGREEING, "conservation"], images=6, batch_size=3,
                            checkpoint_dir=checkpoint_dir, metrics_backend=backend)
    return evaluate(settings, progress=False)


def test_quantus_and_torch_backends_agree(checkpoint_dir):
    torch_rows, quantus_rows = _rows("torch", checkpoint_dir), _rows("quantus", checkpoint_dir)
    assert [(r["model"], r["method"]) for r in quantus_rows] == [("resnet", "gradient"),
                                                                 ("resnet", "lrp_zennit_canonized")]
    for ours, theirs in zip(torch_rows, quantus_rows):
        assert "error" not in ours and "error" not in theirs, (ours.get("error"), theirs.get("error"))
        for key in [*AGREEING, "conservation"]:
            rtol, atol = TOLERANCES.get(key, (1e-5, 0.0))
            assert theirs[key]["n"] == ours[key]["n"], key
            if ours[key]["n"] == 0:
                continue
            assert math.isclose(theirs[key]["mean"], ours[key]["mean"], rel_tol=rtol, abs_tol=atol), (
                key, ours["method"], ours[key]["mean"], theirs[key]["mean"])


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="unknown metrics backend numpy; choose from torch, quantus"):
        evaluate(EvalSettings(models=[], metrics_backend="numpy"), progress=False)
