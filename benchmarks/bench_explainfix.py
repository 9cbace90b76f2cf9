"""Benchmark of ExplainFix on torchvision ResNet-18 (CPU), everything measured side by side in one run.

1. Training-step time, batch 32 at 64x64, AdamW: fully learned vs fixed spatial filters (dct_steered), split
   into forward, backward and optimiser step so the saving can be attributed: frozen spatial filters need
   no weight gradients (one of the two backward convolutions of each 3x3 layer), the stem needs no backward
   pass at all (nothing before it needs a gradient), and the optimiser updates 0.7 M instead of 11.7 M
   parameters.
2. Training-step time of the fixed model after ChannelPrune of 90% of its spatial filters vs unpruned.
3. Pruning strength: parameters ResNet-18 keeps after ChannelPrune of 90% of its spatial filters with each
   removal mode (whole channels only, ``partial`` gathers and scatters, ``streams`` cuts), against the
   1.48 M the paper reports, with each pruned model's largest output difference from its zeroed model.
4. ExplainSteer with gradient saliency for one batch of 8 at 64x64 (the authors report about 4 s on a CPU of
   this kind), without saliency, and a plain forward + backward of the same batch as the floor.

Timings interleave the variants (A, B, A, B, ...) and report medians, so machine load hits both alike.
Run: ``python benchmarks/bench_explainfix.py [--reps N] [--only training|pruning|explainsteer]``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from xai_plugins.explainfix import explain_steer, fix_spatial_filters, prune_spatial_filters


def _step_parts(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], tuple[float, float, float]]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    model.train()

    def step() -> tuple[float, float, float]:
        t0 = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2
    return step


def _interleave(steps: dict[str, Callable[[], tuple[float, ...]]], reps: int, warmup: int = 2) -> dict:
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[tuple[float, ...]]] = {k: [] for k in steps}
    for _ in range(reps):
        for name, fn in steps.items():
            times[name].append(fn())
    out = {}
    for name, rows in times.items():
        cols = list(zip(*rows))
        out[name] = {"total": statistics.median(sum(r) for r in rows), "parts": [statistics.median(c) for c in cols]}
    return out


def _params(model: nn.Module) -> tuple[int, int]:
    return (sum(p.numel() for p in model.parameters()),
            sum(p.numel() for p in model.parameters() if p.requires_grad))


def main() -> None:
    """Run the three comparisons and print medians and ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--only", choices=("training", "pruning", "explainsteer"), default=None,
                        help="run one part")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 3, 64, 64, generator=g), torch.randint(0, 10, (32,), generator=g)
    learned = torchvision.models.resnet18(weights=None, num_classes=10)
    print(f"threads: {torch.get_num_threads()}, torch {torch.__version__}, reps {args.reps} (median)")
    if args.only in (None, "training"):
        _training(learned, x, y, args.reps)
    if args.only in (None, "pruning"):
        _pruning(learned, x, y)
    if args.only in (None, "explainsteer"):
        _explainsteer(learned, x[:8], y[:8], args.reps)


def _training(learned: nn.Module, x: torch.Tensor, y: torch.Tensor, reps: int) -> None:
    """Training steps: learned vs fixed vs fixed and pruned."""
    fixed = copy.deepcopy(learned)
    print(fix_spatial_filters(fixed, "dct_steered", seed=0))
    # a short warm-up training of the fixed model so saliency is meaningful before pruning
    warm = _step_parts(fixed, x, y)
    for _ in range(3):
        warm()
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)]
    pruned = prune_spatial_filters(fixed, 0.9, batches, example_input=x[:2])
    print(pruned)

    print("\n== training step, ResNet-18, batch 32, 64x64, AdamW (seconds: total = forward + backward + step)")
    res = _interleave({"learned": _step_parts(learned, x, y), "fixed": _step_parts(fixed, x, y),
                       "fixed+pruned": _step_parts(pruned.pruned, x, y)}, reps)
    for name, model in (("learned", learned), ("fixed", fixed), ("fixed+pruned", pruned.pruned)):
        total, trainable = _params(model)
        f, b, s = res[name]["parts"]
        print(f"{name:13s} {res[name]['total']:.3f} s = {f:.3f} + {b:.3f} + {s:.3f}   "
              f"params {total:,} trainable {trainable:,}")
    lt, ft, pt = res["learned"]["total"], res["fixed"]["total"], res["fixed+pruned"]["total"]
    print(f"fixed vs learned: {100 * (1 - ft / lt):.1f}% faster per step (target >= 20%); "
          f"backward {100 * (1 - res['fixed']['parts'][1] / res['learned']['parts'][1]):.1f}% faster, "
          f"optimiser step {100 * (1 - res['fixed']['parts'][2] / res['learned']['parts'][2]):.1f}% faster, "
          f"forward {100 * (1 - res['fixed']['parts'][0] / res['learned']['parts'][0]):.1f}% faster")
    print(f"pruned vs unpruned (both fixed): {100 * (1 - pt / ft):.1f}% faster per step")



PAPER_PARAMETERS_LEFT = 1_480_000
"""ResNet-18 after ChannelPrune of 90% of its spatial filters, as the paper reports it."""


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _pruning(learned: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """Parameters left by each removal mode at 90%, and the outputs' distance to the zeroed model."""
    fixed = copy.deepcopy(learned)
    fix_spatial_filters(fixed, "dct_steered", seed=0)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)]
    probe = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    total = sum(p.numel() for p in fixed.parameters())
    print("\n== pruning strength, ResNet-18 fixed with dct_steered, 90% of spatial filters, paper's saliency "
          "(4 batches of 8 at 64x64)")
    print(f"paper: {PAPER_PARAMETERS_LEFT:,} parameters left ({100 * PAPER_PARAMETERS_LEFT / total:.1f}%)")
    with torch.no_grad():
        original = fixed.eval()(probe)
    for label, kwargs in (("whole channels only (partial=False)", {"partial": False}),
                          ("partial (default)", {}), ("partial + streams=True", {"streams": True})):
        result = prune_spatial_filters(fixed, 0.9, batches, example_input=x[:2], **kwargs)
        with torch.no_grad():
            zeroed, pruned = result.zeroed.eval()(probe), result.pruned.eval()(probe)
        print(f"{label:38s} {result.parameters_after:>10,} left ({100 * result.parameters_after / total:.1f}%, "
              f"{result.parameters_after / PAPER_PARAMETERS_LEFT:.2f}x the paper's); pruned vs zeroed "
              f"{_relative(pruned, zeroed):.1e}; zeroed vs unpruned {_relative(zeroed, original):.2f}")


def _explainsteer(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, reps: int) -> None:
    """ExplainSteer with and without saliency, and the forward + backward floor."""
    print("\n== ExplainSteer on ResNet-18, one batch of 8 at 64x64 (authors report about 4 s)")
    model.eval()

    def with_saliency() -> tuple[float]:
        t = time.perf_counter()
        explain_steer(model, [(xb, yb)])
        return (time.perf_counter() - t,)

    def without_saliency() -> tuple[float]:
        t = time.perf_counter()
        explain_steer(model)
        return (time.perf_counter() - t,)

    def forward_backward() -> tuple[float]:
        t = time.perf_counter()
        model.zero_grad(set_to_none=True)
        model(xb).gather(1, yb[:, None]).sum().backward()
        model.zero_grad(set_to_none=True)
        return (time.perf_counter() - t,)

    res = _interleave({"with saliency": with_saliency, "without saliency": without_saliency,
                       "forward+backward floor": forward_backward}, reps)
    for name, r in res.items():
        print(f"{name:24s} {r['total']:.3f} s")
    print(f"ExplainSteer with saliency: {res['with saliency']['total']:.3f} s vs about 4 s reported by the "
          f"authors: {4.0 / res['with saliency']['total']:.1f}x faster (target < 1 s)")


if __name__ == "__main__":
    main()
