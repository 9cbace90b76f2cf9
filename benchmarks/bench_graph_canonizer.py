"""The graph canonizer and the family presets over it, side by side with one LRP pass, in one process.

For ResNet-50 and DenseNet-121 (random weights, calibrated BatchNorm statistics) it measures, alternating the
contestants in every repeat so that drift of the shared machine hits all alike:

- apply+remove of the family canonizer ``canonizers_for`` picks (a graph canonizer preset, ``verify=False``),
- with ``--hand-written FILE``, apply+remove of the same family's canonizer from that file: the hand-written
  ``torchvision_models.py`` of an earlier commit, e.g. ``git show f4e4d24:xai_plugins/canonizers/torchvision_models.py
  > /tmp/hand_written.py`` (the last one with hand-written forwards),
- apply+remove of ``GraphCanonizer()`` with its plan cached (the first apply traces; later ones do not) and
  the probe verification on (four forward passes at the inferred probe size, 64x64),
- the same with ``verify=False``,
- one LRP pass (Zennit ``EpsilonPlusFlat`` with the family canonizer, at ``--size``): the canonization, a forward
  without gradients that picks the class, and the attribution,
- the first apply (trace + plan) once, cache cleared before,

and prints the medians, each apply+remove as a share of the LRP pass (with ``--hand-written``, also whether both
canonical models give the same output), and whether the family preset stays within 3 % of it (the simplification
issue's bound). Times are process CPU time; an apply+remove is timed as the mean of
``--calls`` consecutive calls per repeat, so the first call after the LRP pass (cold caches) does not dominate.

Run: ``python benchmarks/bench_graph_canonizer.py [--size 224] [--repeats 5] [--calls 10] [--threads 1]
[--models resnet50 densenet121] [--hand-written FILE]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

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


def _time(function: Callable[[], object], calls: int = 1) -> float:
    start = time.process_time()
    for _ in range(calls):
        function()
    return (time.process_time() - start) / calls


def _load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("hand_written_canonizers", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--hand-written {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _apply_remove(model: torch.nn.Module, make: Callable[[], object]) -> None:
    canonizer = make()
    canonizer.apply(model)
    canonizer.remove()


def _canonized_output(model: torch.nn.Module, make: Callable[[], object], x: torch.Tensor) -> torch.Tensor:
    canonizer = make()
    canonizer.apply(model)
    try:
        with torch.no_grad():
            return model(x)
    finally:
        canonizer.remove()


def _lrp(model: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        output = model(x)
    composite = EpsilonPlusFlat(zero_params="bias", canonizers=zennit_canonizers_for(model))
    with Gradient(model, composite) as attributor:
        attributor(x, torch.eye(output.shape[1])[output.argmax(1)] * output)


def run(name: str, size: int, repeats: int, calls: int, hand_written: ModuleType | None) -> None:
    torch.manual_seed(0)
    model = calibrate_batchnorm(MODELS[name](), 64)
    x = torch.randn(1, 3, size, size)
    graph._PLANS.clear()
    first = _time(lambda: _apply_remove(model, graph.GraphCanonizer))
    contestants: dict[str, Callable[[], object]] = {
        "family preset apply+remove": lambda: _apply_remove(model, lambda: canonizers_for(model)[0]),
        "graph apply+remove (verify)": lambda: _apply_remove(model, graph.GraphCanonizer),
        "graph apply+remove (verify=False)": lambda: _apply_remove(model, lambda: graph.GraphCanonizer(
            verify=False)),
    }
    if hand_written is not None:
        family = getattr(hand_written, type(canonizers_for(model)[0]).__name__)
        contestants["hand-written apply+remove"] = lambda: _apply_remove(model, family)
    lrp_label = f"one LRP pass at {size}x{size}"
    contestants[lrp_label] = lambda: _lrp(model, x)
    for function in contestants.values():  # warm-up
        function()
    times: dict[str, list[float]] = {label: [] for label in contestants}
    for _ in range(repeats):
        for label, function in contestants.items():
            times[label].append(_time(function, 1 if label == lrp_label else calls))
    medians = {label: statistics.median(values) for label, values in times.items()}
    print(f"\n{name} (median of {repeats}, process CPU time, {torch.get_num_threads()} thread(s))")
    print(f"  first graph apply+remove (trace, plan): {first * 1e3:9.1f} ms")
    for label, value in medians.items():
        print(f"  {label:<36} {value * 1e3:9.1f} ms")
    lrp = medians[lrp_label]
    for label in contestants:
        if label != lrp_label:
            print(f"  {label:<36} / LRP pass {medians[label] / lrp:6.3f}")
    if hand_written is not None:
        ratio = medians["family preset apply+remove"] / medians["hand-written apply+remove"]
        print(f"  family preset / hand-written {ratio:6.2f}")
        outputs = [_canonized_output(model, make, x) for make in (lambda: canonizers_for(model)[0], family)]
        difference = float((outputs[0] - outputs[1]).abs().max())
        print(f"  canonical outputs, preset vs hand-written: max |difference| {difference:.3g}")
    share = medians["family preset apply+remove"] / lrp
    print(f"  family preset within 3 % of an LRP pass: {'yes' if share <= 0.03 else 'NO'} ({100 * share:.1f} %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=10, help="apply+remove calls per repeat")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hand-written", metavar="FILE", help="a torchvision_models.py with hand-written families")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.models:
        run(name, args.size, args.repeats, args.calls, None if args.hand_written is None else _load(args.hand_written))


if __name__ == "__main__":
    main()
