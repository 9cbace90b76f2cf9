"""DenseNet-121: the paper's two canonizations side by side (threshold ReLU vs untangling), in one run.

For each BatchNorm setting (torchvision's initial statistics; ``calibrate_batchnorm`` seeds 0-3; and
``randomize_batchnorm`` with negative and zero gamma) it prints, for

- ``threshold``: ``DenseNetCanonizer`` through ``xai_plugins_zennit.canonizers_for`` (the default), and
- ``untangled``: ``for_zennit(DenseNetUntangledCanonizer())``,

the relative output change while canonized and the conservation ratio (relevance sum / target logit) of Zennit's
``EpsilonPlusFlat(zero_params='bias')`` with relevance started at one-hot x output. Then, on the seed-0 model,
the cost: parameters and convolutions while canonized, apply+remove time, LRP time, plain gradient time and their
ratio (median process CPU time, candidates interleaved so that machine load hits both alike).

Run: ``python benchmarks/compare_densenet_variants.py [--size 64] [--repeats 5] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision.models as tvm
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlusFlat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.batchnorm import calibrate_batchnorm, randomize_batchnorm  # noqa: E402
from xai_plugins.canonizers import DenseNetUntangledCanonizer  # noqa: E402
from xai_plugins_zennit import canonizers_for  # noqa: E402
from xai_plugins_zennit.canonizers import for_zennit  # noqa: E402

VARIANTS: dict[str, Callable[[torch.nn.Module], list]] = {
    "threshold": lambda model: canonizers_for(model),
    "untangled": lambda model: [for_zennit(DenseNetUntangledCanonizer())],
}


def _model(setting: str, size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = tvm.densenet121(num_classes=1000).eval()
    if setting.startswith("calibrated"):
        return calibrate_batchnorm(model, size=size, seed=int(setting.rsplit(" ", 1)[1]))
    if setting == "negative gamma":
        return randomize_batchnorm(model, seed=3)
    return model


def _start(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        output = model(x)
    start = torch.zeros_like(output)
    start[0, output.argmax(1)] = 1.0
    return start * output


def _check(model: torch.nn.Module, make: Callable[[torch.nn.Module], list], x: torch.Tensor) -> tuple[float, float]:
    """(relative output change while canonized, relevance sum / target logit)."""
    start = _start(model, x)
    with torch.no_grad():
        reference = model(x)
    canonizers = make(model)
    handles = [handle for canonizer in canonizers for handle in canonizer.apply(model)]
    try:
        with torch.no_grad():
            changed = model(x)
    finally:
        for handle in handles:
            handle.remove()
    with Gradient(model, EpsilonPlusFlat(zero_params="bias", canonizers=make(model))) as attributor:
        _, relevance = attributor(x, start)
    change = ((changed - reference).abs().max() / reference.abs().max()).item()
    return change, (relevance.sum() / start.sum()).item()


def _cpu_time(function: Callable[[], object]) -> float:
    begin = time.process_time()
    function()
    return time.process_time() - begin


def _size_while_canonized(model: torch.nn.Module, make: Callable[[torch.nn.Module], list]) -> tuple[int, int]:
    canonizers = make(model)
    for canonizer in canonizers:
        canonizer.apply(model)
    try:
        return (sum(p.numel() for p in model.parameters()),
                sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()))
    finally:
        for canonizer in canonizers:
            canonizer.remove()


def _timings(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> dict[str, dict[str, float]]:
    start = _start(model, x)

    def gradient() -> None:
        inputs = x.clone().requires_grad_()
        torch.autograd.grad(model(inputs), inputs, start)

    def apply_remove(make: Callable[[torch.nn.Module], list]) -> None:
        canonizers = make(model)
        for canonizer in canonizers:
            canonizer.apply(model)
        for canonizer in canonizers:
            canonizer.remove()

    times = {key: {"apply": [], "lrp": [], "grad": []} for key in VARIANTS}
    gradient()  # warm-up
    for _ in range(repeats):
        for key, make in VARIANTS.items():
            for _ in range(3):
                times[key]["apply"].append(_cpu_time(lambda make=make: apply_remove(make)))
            with Gradient(model, EpsilonPlusFlat(zero_params="bias", canonizers=make(model))) as attributor:
                times[key]["lrp"].append(_cpu_time(lambda a=attributor: a(x, start)))
            times[key]["grad"].append(_cpu_time(gradient))
    return {key: {name: statistics.median(values) for name, values in t.items()} for key, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="input height and width")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{time.strftime('%Y-%m-%d %H:%M')} torch {torch.__version__}, DenseNet-121 (1000 classes), input "
          f"1x3x{args.size}x{args.size}, {args.threads} thread(s); EpsilonPlusFlat(zero_params='bias')")
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    header = f"{'BatchNorm statistics':22s}" + "".join(f" {k + ' change':>17s} {k + ' R/logit':>18s}" for k in VARIANTS)
    print(header)
    print("-" * len(header))
    settings = ["initial", *(f"calibrated seed {seed}" for seed in range(4)), "negative gamma"]
    for setting in settings:
        model = _model(setting, args.size)
        row = f"{setting:22s}"
        for make in VARIANTS.values():
            change, ratio = _check(model, make, x)
            row += f" {change:17.1e} {ratio:18.7f}"
        print(row)

    model = _model("calibrated seed 0", args.size)
    params, convs = sum(p.numel() for p in model.parameters()), sum(isinstance(m, torch.nn.Conv2d)
                                                                     for m in model.modules())
    print(f"\ncost on the seed-0 model (uncanonized: {params / 1e6:.2f} M parameters, {convs} convolutions); median "
          f"process CPU time of {args.repeats} interleaved repeats (3x for apply+remove)")
    timings = _timings(model, x, args.repeats)
    header = (f"{'variant':10s} {'params':>9s} {'convs':>6s} {'apply+remove':>13s} {'LRP':>9s} {'gradient':>9s} "
              f"{'LRP/grad':>9s}")
    print(header)
    print("-" * len(header))
    for key, make in VARIANTS.items():
        params, convs = _size_while_canonized(model, make)
        t = timings[key]
        print(f"{key:10s} {params / 1e6:7.2f} M {convs:6d} {1e3 * t['apply']:10.1f} ms {1e3 * t['lrp']:6.0f} ms "
              f"{1e3 * t['grad']:6.0f} ms {t['lrp'] / t['grad']:9.2f}")


if __name__ == "__main__":
    main()
