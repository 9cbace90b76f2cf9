"""Re-measure the composite × family table of docs/canonizers.md: Σ relevance / logit on live networks.

For every supported torchvision family (stock widths, random weights, BatchNorm statistics calibrated on the data
by the test suite's randomiser, tests/support/batchnorm.py) and every composite Zennit ships, the relevance is
started at one-hot × logit of the top class and the ratio Σ relevance / logit printed; the last columns are
Captum's ``LRP`` inside ``canonized()`` and the network's liveness (output change between two inputs, relative).
Bias-free composites (``zero_params='bias'``) conserve: every such cell should read 1 ± 0.01.

    python benchmarks/measure_composites.py                 # 64 px, all families
    python benchmarks/measure_composites.py --size 224 --families mobilenet_v2,densenet121
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.batchnorm import BatchNormDraw, apply, liveness  # noqa: E402

FAMILIES = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "efficientnet_v2_s",
            "resnet50", "resnext50_32x4d", "densenet121", "regnet_x_400mf", "regnet_y_400mf", "vgg16_bn")


def composites(low: float, high: float) -> dict:
    from zennit import composites as zc

    bias_free = {"zero_params": "bias"}
    return {
        "EpsilonPlus": lambda c: zc.EpsilonPlus(canonizers=c, **bias_free),
        "EpsilonPlusFlat": lambda c: zc.EpsilonPlusFlat(canonizers=c, **bias_free),
        "EpsilonAlpha2Beta1": lambda c: zc.EpsilonAlpha2Beta1(canonizers=c, **bias_free),
        "EpsilonAlpha2Beta1Flat": lambda c: zc.EpsilonAlpha2Beta1Flat(canonizers=c, **bias_free),
        "EpsilonGammaBox": lambda c: zc.EpsilonGammaBox(low=low, high=high, canonizers=c, **bias_free),
        "EpsilonGammaBox(bias)": lambda c: zc.EpsilonGammaBox(low=low, high=high, canonizers=c),
        "ExcitationBackprop": lambda c: zc.ExcitationBackprop(canonizers=c, **bias_free),
        "GuidedBackprop": lambda c: zc.GuidedBackprop(canonizers=c),
    }


def measure(name: str, size: int, seed: int) -> dict[str, float]:
    import torchvision.models as tvm
    from captum.attr import LRP
    from zennit.attribution import Gradient

    from xai_plugins_captum import canonized
    from xai_plugins_zennit import canonizers_for

    torch.manual_seed(seed)
    model = getattr(tvm, name)(num_classes=10)
    apply(model, BatchNormDraw(seed=seed), input_shape=(4, 3, size, size))
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        output = model(x)
    target = int(output[0].argmax())
    logit = float(output[0, target])
    start = torch.zeros_like(output)
    start[0, target] = logit
    row = {"live": liveness(model, x, torch.Generator().manual_seed(seed + 1))}
    for label, make in composites(float(x.min()), float(x.max())).items():
        try:
            with Gradient(model, make(canonizers_for(model))) as attributor:
                _, relevance = attributor(x, start)
            row[label] = float(relevance.sum()) / logit
        except Exception as error:  # noqa: BLE001 - a crash is a result of this table, printed in its cell
            row[label] = f"{type(error).__name__}"
    with canonized(model):
        row["Captum LRP"] = float(LRP(model).attribute(x, target=target).detach().sum()) / logit
    return row


def _cell(value) -> str:
    if isinstance(value, str):
        return value
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="input height and width (default: 64)")
    parser.add_argument("--seed", type=int, default=0, help="weights, BatchNorm draw and input (default: 0)")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated torchvision builders")
    args = parser.parse_args()
    torch.set_num_threads(1)
    columns = None
    for name in args.families.split(","):
        row = measure(name, args.size, args.seed)
        if columns is None:
            columns = [c for c in row if c != "live"] + ["live"]
            print("| family | " + " | ".join(columns) + " |")
            print("|---" * (len(columns) + 1) + "|")
        print(f"| {name} | " + " | ".join(_cell(row[c]) for c in columns) + " |", flush=True)


if __name__ == "__main__":
    main()
