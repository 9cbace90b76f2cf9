"""Re-measure the numbers the README states for its quick starts, on the README's own inputs.

Stock Captum ``LRP`` on a torchvision ResNet-50 (random weights, ``torch.randn`` input, seeds 0..N-1): the
relevance sum divided by the explained logit, and inside ``xai_plugins_captum.canonized`` the convergence delta
divided by the logit. Run: ``python benchmarks/measure_readme_numbers.py --seeds 3``.
"""

from __future__ import annotations

import argparse
import warnings

import torch
import torchvision
from captum.attr import LRP

from xai_plugins_captum import canonized


def measure(seed: int) -> tuple[float, float]:
    """(stock relevance sum / logit, canonized |delta| / |logit|) for one seed."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet50(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        logits = model(x)
    target = int(logits.argmax())
    logit = float(logits[0, target])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stock = LRP(model).attribute(x.requires_grad_(True), target=target)
    with canonized(model):
        _, delta = LRP(model).attribute(x, target=target, return_convergence_delta=True)
    return float(stock.sum()) / logit, abs(float(delta)) / abs(logit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, ResNet-50, input randn 1x3x224x224")
    for seed in range(args.seeds):
        stock, delta = measure(seed)
        print(f"seed {seed}: stock Captum LRP relevance sum / logit = {stock:.3g}; "
              f"canonized |delta| / |logit| = {delta:.2g}")


if __name__ == "__main__":
    main()
