"""Canonizers side by side with Zennit's own: cost relative to the LRP pass they serve, exactness, conservation.

For ResNet-50 and DenseNet-121 (EfficientNet-B0 on request; random weights, calibrated BatchNorm statistics),
at 224x224 on one thread by default, it prints per canonizer, all measured interleaved in one process:

- apply+remove time of the canonizer divided by the time of one LRP pass with it (Zennit ``EpsilonPlusFlat``);
  the canonizer core's target is at most 3 %,
- that LRP pass divided by the plain gradient,
- the relative output change while canonized, and the conservation ratio (relevance sum / target logit),

for ``xai_plugins_zennit.canonizers_for`` (core canonizer plus Zennit rules), for the core canonizer alone
(``xai_plugins.canonizers.canonizers_for``, in a Zennit composite without our rules) and for Zennit's own
canonizer where it has one (``ResNetCanonizer`` for ResNet; its generic ``SequentialMergeBatchNorm`` for the
others, which is what Zennit offers there).

Run: ``python benchmarks/bench_canonizers.py [--size 224] [--repeats 3] [--threads 1] [--clock cpu|wall]
[--models resnet50 densenet121 efficientnet_b0]``.
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
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import EpsilonPlusFlat
from zennit.torchvision import ResNetCanonizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.batchnorm import calibrate_batchnorm  # noqa: E402
from xai_plugins.canonizers import canonizers_for as core_canonizers_for  # noqa: E402
from xai_plugins_zennit import canonizers_for  # noqa: E402

MODELS: dict[str, Callable[[], torch.nn.Module]] = {
    "resnet50": lambda: tvm.resnet50(num_classes=1000),
    "densenet121": lambda: tvm.densenet121(num_classes=1000),
    "efficientnet_b0": lambda: tvm.efficientnet_b0(num_classes=1000),
}
ZENNIT_OWN: dict[str, tuple[str, Callable[[], list]]] = {
    "resnet50": ("zennit ResNetCanonizer", lambda: [ResNetCanonizer()]),
    "densenet121": ("zennit SequentialMergeBatchNorm", lambda: [SequentialMergeBatchNorm()]),
    "efficientnet_b0": ("zennit SequentialMergeBatchNorm", lambda: [SequentialMergeBatchNorm()]),
}


_CLOCK = time.process_time


def _cpu_time(function: Callable[[], object]) -> float:
    """Time of one call on the chosen clock: process CPU time (default) or wall time (``--clock wall``)."""
    start = _CLOCK()
    function()
    return _CLOCK() - start


def _apply_remove(model: torch.nn.Module, make: Callable[[], list]) -> None:
    handles = []
    for canonizer in make():
        handles += canonizer.apply(model)
    for handle in handles:
        handle.remove()


def _check(model: torch.nn.Module, make: Callable[[], list], x: torch.Tensor) -> dict:
    """Output change while canonized and conservation of EpsilonPlusFlat(zero_params='bias')."""
    with torch.no_grad():
        reference = model(x)
    target = reference.argmax(1)
    start = torch.zeros_like(reference)
    start[0, target] = 1.0
    handles = []
    try:
        for canonizer in make():
            handles += canonizer.apply(model)
        with torch.no_grad():
            changed = model(x)
    finally:
        for handle in handles:
            handle.remove()
    composite = EpsilonPlusFlat(zero_params="bias", canonizers=make())
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x, start * reference)
    return {"output_change": ((changed - reference).abs().max() / reference.abs().max()).item(),
            "conservation": (relevance.sum() / reference[0, target]).item(), "start": start * reference}


def _timings(model: torch.nn.Module, makers: dict[str, Callable[[], list]], x: torch.Tensor, start: torch.Tensor,
             repeats: int) -> dict[str, dict[str, float]]:
    """Median CPU times, the candidates interleaved so that machine load hits all of them alike."""
    def gradient() -> None:
        inputs = x.clone().requires_grad_()
        torch.autograd.grad(model(inputs), inputs, start)

    times: dict[str, dict[str, list[float]]] = {k: {"apply": [], "lrp": [], "grad": []} for k in makers}
    attributors = {k: Gradient(model, EpsilonPlusFlat(zero_params="bias", canonizers=make()))
                   for k, make in makers.items()}
    for _ in range(repeats):
        for key, make in makers.items():
            for _ in range(4):
                times[key]["apply"].append(_cpu_time(lambda make=make: _apply_remove(model, make)))
            with attributors[key] as attributor:
                times[key]["lrp"].append(_cpu_time(lambda a=attributor: a(x, start)))
            times[key]["grad"].append(_cpu_time(gradient))
    return {key: {"apply_remove_ms": 1e3 * statistics.median(t["apply"]),
                  "apply_over_lrp": statistics.median(t["apply"]) / statistics.median(t["lrp"]),
                  "lrp_over_gradient": statistics.median(t["lrp"]) / statistics.median(t["grad"])}
            for key, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=["resnet50", "densenet121"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="process CPU time (sums all threads) or wall time (what a user waits with --threads > 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global _CLOCK
    _CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"torch {torch.__version__}, input 1x3x{args.size}x{args.size}, "
          f"{args.threads} thread(s), median {'process CPU' if args.clock == 'cpu' else 'wall'} time of "
          f"{args.repeats} interleaved repeats (4x for apply+remove)")
    header = (f"{'model':16s} {'canonizer':34s} {'apply+remove':>12s} {'/ LRP pass':>10s} {'LRP/grad':>9s} "
              f"{'out change':>10s} {'R sum/logit':>11s}")
    print(header)
    print("-" * len(header))
    for name in args.models:
        builder = MODELS[name]
        torch.manual_seed(0)
        model = calibrate_batchnorm(builder(), size=64, seed=0)
        x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
        own_label, own_make = ZENNIT_OWN[name]
        makers = {"xai_plugins_zennit.canonizers_for": lambda m=model: canonizers_for(m),
                  "core canonizers_for in Zennit": lambda m=model: core_canonizers_for(m), own_label: own_make}
        checks, start = {}, None
        for label, make in makers.items():
            try:
                checks[label] = _check(model, make, x)
                start = checks[label]["start"]
            except Exception as exc:  # noqa: BLE001 - a reference failing is a result to report
                checks[label] = {"error": f"{type(exc).__name__}: {str(exc)[:60]}"}
                model = calibrate_batchnorm(builder(), size=64, seed=0)  # the failure may leave it broken
        working = {label: make for label, make in makers.items() if "error" not in checks[label]}
        timings = _timings(model, working, x, start, args.repeats)
        for label in makers:
            if "error" in checks[label]:
                print(f"{name:16s} {label:34s} fails: {checks[label]['error']}")
                continue
            check, timing = checks[label], timings[label]
            print(f"{name:16s} {label:34s} {timing['apply_remove_ms']:9.1f} ms {timing['apply_over_lrp']:9.2%} "
                  f"{timing['lrp_over_gradient']:9.2f} {check['output_change']:10.1e} {check['conservation']:11.4g}")


if __name__ == "__main__":
    main()
