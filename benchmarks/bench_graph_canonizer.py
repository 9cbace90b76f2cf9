"""The graph canonizer side by side with the hand-written one and with one LRP pass, in one process.

For ResNet-50 and DenseNet-121 (random weights, calibrated BatchNorm statistics) it measures, alternating the
contestants in every repeat so that drift of the shared machine hits all alike:

- apply+remove of the hand-written canonizer (``canonizers_for``),
- apply+remove of ``GraphCanonizer()`` with its plan cached (the first apply traces; later ones do not) and
  the probe verification on (three forward passes at the inferred probe size, 64x64),
- the same with ``verify=False``,
- one LRP pass (Zennit ``EpsilonPlusFlat`` with the hand-written canonizer, at ``--size``),
- the first apply (trace + plan) once, cache cleared before,

and prints the medians and the ratios graph / hand-written and graph / LRP pass. Times are process CPU time.

Run: ``python benchmarks/bench_graph_canonizer.py [--size 224] [--repeats 5] [--threads 1]
[--models resnet50 densenet121]``.
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
from tests.support.batchnorm import calibrate_batchnorm  # noqa: E402
from xai_plugins.canonizers import (
    canonizers_for,  # noqa: E402
    graph,  # noqa: E402
)
from xai_plugins_zennit.canonizers import canonizers_for as zennit_canonizers_for  # noqa: E402

MODELS: dict[str, Callable[[], torch.nn.Module]] = {
    "resnet50": lambda: tvm.resnet50(num_classes=1000),
    "densenet121": lambda: tvm.densenet121(num_classes=1000),
}


def _time(function: Callable[[], object]) -> float:
    start = time.process_time()
    function()
    return time.process_time() - start


def _apply_remove(model: torch.nn.Module, make: Callable[[], object]) -> None:
    canonizer = make()
    canonizer.apply(model)
    canonizer.remove()


def _lrp(model: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        output = model(x)
    composite = EpsilonPlusFlat(zero_params="bias", canonizers=zennit_canonizers_for(model))
    with Gradient(model, composite) as attributor:
        attributor(x, torch.eye(output.shape[1])[output.argmax(1)] * output)


def run(name: str, size: int, repeats: int) -> None:
    torch.manual_seed(0)
    model = calibrate_batchnorm(MODELS[name](), 64)
    x = torch.randn(1, 3, size, size)
    graph._PLANS.clear()
    first = _time(lambda: _apply_remove(model, graph.GraphCanonizer))
    contestants: dict[str, Callable[[], object]] = {
        "hand-written apply+remove": lambda: _apply_remove(model, lambda: canonizers_for(model)[0]),
        "graph apply+remove (verify)": lambda: _apply_remove(model, graph.GraphCanonizer),
        "graph apply+remove (verify=False)": lambda: _apply_remove(model, lambda: graph.GraphCanonizer(
            verify=False)),
        f"one LRP pass at {size}x{size}": lambda: _lrp(model, x),
    }
    for function in contestants.values():  # warm-up
        function()
    times: dict[str, list[float]] = {label: [] for label in contestants}
    for _ in range(repeats):
        for label, function in contestants.items():
            times[label].append(_time(function))
    medians = {label: statistics.median(values) for label, values in times.items()}
    print(f"\n{name} (median of {repeats}, process CPU time, {torch.get_num_threads()} thread(s))")
    print(f"  first graph apply+remove (trace, plan): {first * 1e3:9.1f} ms")
    for label, value in medians.items():
        print(f"  {label:<36} {value * 1e3:9.1f} ms")
    hand, lrp = medians["hand-written apply+remove"], medians[f"one LRP pass at {size}x{size}"]
    for label in ("graph apply+remove (verify)", "graph apply+remove (verify=False)"):
        print(f"  {label:<36} / hand-written {medians[label] / hand:6.2f}   / LRP pass {medians[label] / lrp:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.models:
        run(name, args.size, args.repeats)


if __name__ == "__main__":
    main()
