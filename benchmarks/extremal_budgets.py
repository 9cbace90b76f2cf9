"""Extremal perturbations: rewards of ours under several budgets and step sizes, on images the benchmark does
not use.

Not a test. Chooses the default schedule without looking at the benchmark's images: for ``--images`` synthetic
images of ``--seed`` (the benchmark uses seeds 0 and 1) and the top class of ``--model`` (random weights), ours runs
with each ``--configs`` entry (JSON keyword sets of :func:`xai_plugins.extremal.extremal_perturbation`) and prints
the reward of each area, scored like ``bench_extremal.py`` (target logit under the blur pyramid, no jitter), and
each reward relative to the first configuration's.

Usage: python benchmarks/extremal_budgets.py [--model resnet18] [--seed 7] [--images 3]
       [--configs '{"max_iter": 70, "learning_rate": 0.08}' '{"max_iter": 30}']
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from bench_extremal import AREAS, build, evaluate, synthetic_images

from xai_plugins.extremal import extremal_perturbation
from xai_plugins.extremal.scales import mask_scales


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--configs", nargs="+", type=json.loads,
                        default=[{"max_iter": 70, "learning_rate": 0.08}, {}])
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = build(args.model)
    images = synthetic_images(args.images, args.size, seed=args.seed)
    max_blur = mask_scales(args.size, args.size).max_blur
    print(f"{args.model} {args.size}x{args.size}, images of seed {args.seed}, areas {AREAS}, one thread")
    for i in range(args.images):
        image = images[i: i + 1]
        with torch.no_grad():
            target = int(model(image).argmax())
        first = None
        for config in args.configs:
            start = time.perf_counter()
            result = extremal_perturbation(model, image, target, areas=AREAS, seed=0, **config)
            seconds = time.perf_counter() - start
            rewards, _ = evaluate(model, image, target, result.masks[0, :, 0], 8, max_blur)
            first = rewards if first is None else first
            rel = " / ".join(f"{100 * (r - f) / max(abs(f), 1e-12):+.1f} %" for r, f in zip(rewards, first))
            print(f"image {i} {json.dumps(config) if config else 'defaults'}: {int(result.iterations[0])} "
                  f"iterations, {seconds:.1f} s, rewards {' / '.join(f'{r:.4f}' for r in rewards)} ({rel})",
                  flush=True)


if __name__ == "__main__":
    main()
