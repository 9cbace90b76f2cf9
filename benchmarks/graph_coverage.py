"""The graph canonizer's coverage table (docs/canonizers.md): per model, what it merged, made explicit and left,
the relative output change, bitwise restore and conservation with Zennit and Captum.

Each model is built with random weights (nothing downloads); the function check uses randomised BatchNorm
statistics with negative and zero scales (``randomize_batchnorm``), conservation calibrated statistics
(``calibrate_batchnorm``) and ``EpsilonPlusFlat(zero_params='bias')`` / Captum ``LRP`` inside ``canonized``,
both with ``GraphCanonizer``, in float32 unless the calibrated network amplifies float32 rounding beyond
``CONDITIONED`` (its ``rounding_sensitivity`` is listed; such a network's float32 output is not determined to the
tolerance, so its conservation is measured in float64). Models with LayerNorm or attention are listed with the
error they get.

Run: ``python benchmarks/graph_coverage.py [--full] [--models torchvision:NAME timm:NAME ...]`` (default: the
test sweep's models, see ``tests/canonizers/graph_models.py``; ``--full``: every torchvision classification
builder and the test sweep's timm models).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.canonizers.graph_models import TIMM_CI, TORCHVISION_CI, build, input_size  # noqa: E402
from tests.canonizers.test_graph import CONDITIONED, _captum_ratio, _zennit_ratio  # noqa: E402
from tests.support.batchnorm import calibrate_batchnorm, randomize_batchnorm, rounding_sensitivity  # noqa: E402
from tests.support.canonizers import assert_same  # noqa: E402
from xai_plugins.canonizers.graph import GraphCanonizer, explain_canonization  # noqa: E402
from xai_plugins.conformance.state import snapshot  # noqa: E402

REFUSED = ("timm:convnext_atto", "timm:vit_tiny_patch16_224", "torchvision:swin_t")


def row(spec: str) -> str:
    size = 224 if spec.endswith("_224") else input_size(spec)
    shape = (1, 3, size, size)
    try:
        counts = explain_canonization(build(spec), shape).counts()
        model = randomize_batchnorm(build(spec), seed=1)
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            reference = model(x)
        before = snapshot(model)
        canonizer = GraphCanonizer(input_shape=shape)
        canonizer.apply(model)
        with torch.no_grad():
            error = float((model(x) - reference).abs().max() / reference.abs().max())
        canonizer.remove()
        assert_same(before, snapshot(model))
        model = calibrate_batchnorm(build(spec), size)
        x = x[:1]
        sensitivity = rounding_sensitivity(model, x)
        dtype = "float32"
        if sensitivity > CONDITIONED:
            model, x, dtype = model.double(), x.double(), "float64"
        with torch.no_grad():
            output = model(x)
        target = int(output.argmax())
        logit = float(output[0, target])
        zennit = _zennit_ratio(model, x, target, logit)
        captum = _captum_ratio(model, x, target, logit)
    except Exception as exc:  # noqa: BLE001 - the table reports whatever happens
        message = str(exc).split(". ")[0].replace("|", "/")
        return f"| `{spec}` | {type(exc).__name__}: {message} | | | | | | |"
    merged, explicit = counts.get("merged", 0), counts.get("explicit", 0) + counts.get("copied", 0)
    left = counts.get("left", 0)
    return (f"| `{spec}` | {merged} merged, {explicit} explicit, {counts.get('split', 0)} split, {left} left | "
            f"{error:.1e} | yes | {sensitivity:.1e} | {zennit:.4f} | {captum:.4f} | {dtype} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--models", nargs="+", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    if args.models is not None:
        specs = args.models
    else:
        from tests.canonizers.graph_models import torchvision_cnns

        names = torchvision_cnns() if args.full else TORCHVISION_CI
        specs = [f"torchvision:{name}" for name in names] + [f"timm:{name}" for name in TIMM_CI] + list(REFUSED)
    print("| model | canonization | output change (rel.) | restored bitwise | float32 rounding sensitivity | "
          "Zennit Σ R / logit | Captum Σ R / logit | conservation measured in |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in specs:
        print(row(spec), flush=True)


if __name__ == "__main__":
    main()
