"""Captum's LRP with and without ``xai_plugins_captum.canonized``, side by side in one run.

For each torchvision model (random weights, BatchNorm statistics randomised on the scale of the real
activations) it prints the target logit, the convergence delta of Captum's ``LRP`` on the stock model (or the
error it raises) and inside ``canonized(model)``, both as |delta| / |logit|, the time to enter and leave
``canonized`` without attributing, and the time of canonized LRP divided by the time of a plain gradient
(Captum's ``Saliency``) on the same input. Not a test; run ``python benchmarks/bench_canonizers_captum.py``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torchvision
from captum.attr import LRP, Saliency

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.batchnorm import calibrate_batchnorm  # noqa: E402
from xai_plugins_captum import canonized  # noqa: E402

MODELS = ("resnet18", "resnet50", "densenet121", "efficientnet_b0", "vgg16_bn", "mobilenet_v3_small", "regnet_y_400mf")


def best_time(run: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` runs in seconds (the least disturbed by other load on the machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def stock_delta(model: torch.nn.Module, x: torch.Tensor, target: int, logit: float) -> str:
    try:
        _, delta = LRP(model).attribute(x, target=target, return_convergence_delta=True)
    except TypeError as error:
        unsupported = re.search(r"<class '[\w.]*?(\w+)'>", str(error))
        return f"TypeError (no rule for {unsupported.group(1) if unsupported else 'a leaf'})"
    except RuntimeError as error:
        return f"RuntimeError ({str(error)[:60]})"
    return f"{abs(float(delta)) / abs(logit):.2e}"


def canonized_lrp(model: torch.nn.Module, x: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    with canonized(model):
        return LRP(model).attribute(x, target=target, return_convergence_delta=True)


def enter_and_exit(model: torch.nn.Module) -> None:
    with canonized(model):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="input height and width")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("models", nargs="*", default=MODELS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, input 1x3x{args.size}x{args.size}, "
          f"1 thread, best of {args.repeats}")
    print(f"{'model':<20}{'logit':>10}{'canonized |d|/|z|':>19}{'enter+exit ms':>15}{'LRP/grad':>10}  stock |d|/|z|")
    for name in args.models:
        torch.manual_seed(0)
        model = calibrate_batchnorm(getattr(torchvision.models, name)(weights=None), args.size)
        x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            output = model(x)
        target = int(output.argmax())
        logit = float(output[0, target])
        attribution, delta = canonized_lrp(model, x, target)
        ratio = abs(float(delta)) / abs(logit)
        finite = "" if torch.isfinite(attribution).all() else " (non-finite!)"
        switch = best_time(partial(enter_and_exit, model), args.repeats)
        lrp = best_time(partial(canonized_lrp, model, x, target), args.repeats)
        gradient = best_time(partial(Saliency(model).attribute, x, target=target, abs=False), args.repeats)
        stock = stock_delta(model, x, target, logit)
        print(f"{name:<20}{logit:>10.3f}{ratio:>19.2e}{switch * 1e3:>15.1f}{lrp / gradient:>10.1f}  {stock}{finite}")


if __name__ == "__main__":
    main()
