"""Benchmark: forward + explanation of our B-cos ResNet-18 vs. the `bcos` package's and vs. torchvision.

Three ways of computing a per-sample input attribution, measured side by side in one process, interleaved
round by round so that load changes hit all three alike:

* ours: ``xai_plugins.bcos`` ResNet-18 (uncentered bias-free batch norm, eval mode), forward in explanation
  mode + gradient of the target logit with respect to the input (= dynamic linear weights W(x));
* bcos: the reference package's ResNet-18 with the same norm (``NoBias(BatchNormUncentered2d)``, its ImageNet
  configuration), same procedure inside its ``explanation_mode``;
* torchvision: standard ResNet-18 forward + input gradient.

Usage: ``python benchmarks/bench_bcos.py [--size 224] [--batch 1] [--rounds 15] [--threads 1]``.
Prints median and minimum times and the ratios ours/bcos (target <= 1.0) and ours/torchvision (target <= 1.15).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch


def explanation_step(model: torch.nn.Module, x: torch.Tensor, context: Callable) -> Callable[[], torch.Tensor]:
    """One forward pass and the input gradient of each sample's top logit, inside ``context(model)``."""

    def run() -> torch.Tensor:
        inputs = x.detach().requires_grad_(True)
        with context(model):
            logits = model(inputs)
            selected = logits.gather(1, logits.detach().argmax(1, keepdim=True)).sum()
            (grad,) = torch.autograd.grad(selected, inputs)
        return grad

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import contextlib

    import torchvision
    from bcos.common import explanation_mode as reference_mode
    from bcos.models.resnet import resnet18 as reference_resnet18
    from bcos.modules import norms as reference_norms

    from xai_plugins.bcos import create_model, encode_input, explanation_mode, from_authors_state_dict

    torch.manual_seed(0)
    image = torch.rand(args.batch, 3, args.size, args.size)
    x6 = encode_input(image)
    ours = create_model("bcos_resnet18", num_classes=1000).eval()
    reference = reference_resnet18(num_classes=1000,
                                   norm_layer=reference_norms.NoBias(reference_norms.BatchNormUncentered2d)).eval()
    ours.load_state_dict(from_authors_state_dict(reference.state_dict()))  # the same network, weight for weight
    standard = torchvision.models.resnet18(weights=None).eval()

    steps = {
        "ours": explanation_step(ours, x6, explanation_mode),
        "bcos": explanation_step(reference, x6, reference_mode),
        "torchvision": explanation_step(standard, image, lambda m: contextlib.nullcontext()),
    }
    for step in steps.values():  # warm-up
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)

    print(f"B-cos ResNet-18 forward + explanation, batch {args.batch}, {args.size}x{args.size}, "
          f"{args.threads} thread(s), {args.rounds} interleaved rounds")
    for name, values in times.items():
        print(f"  {name:12s} median {statistics.median(values) * 1e3:8.1f} ms   min {min(values) * 1e3:8.1f} ms")
    for other, target in (("bcos", 1.0), ("torchvision", 1.15)):
        med = statistics.median(times["ours"]) / statistics.median(times[other])
        best = min(times["ours"]) / min(times[other])
        print(f"  ours / {other:11s} median ratio {med:5.2f}x   min ratio {best:5.2f}x   (target <= {target:.2f}x)")


if __name__ == "__main__":
    main()
