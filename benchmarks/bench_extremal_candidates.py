"""What the larger-area candidates of the exact-area step cost, side by side in one process.

Not a test. For each model (random weights, seed 0) on one synthetic 224² image of ``bench_extremal``, areas
0.05 / 0.1 / 0.2, one thread: ``extremal_perturbation`` with ``area_candidates=True`` (the default) and ``False``,
alternated over ``--repeats`` repeats; prints the process CPU time of each, the ratio of the best of each, and the
reward of every area with and without the candidates (with them it can only be higher).

Usage: python benchmarks/bench_extremal_candidates.py [--models resnet50 vgg16] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_extremal import AREAS, build, synthetic_images

from xai_plugins.extremal import extremal_perturbation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "vgg16"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.models:
        model = build(name)
        image = synthetic_images(1, 224)[0:1]
        with torch.no_grad():
            target = int(model(image).argmax())
        times: dict[bool, list[float]] = {True: [], False: []}
        rewards = {}
        for repeat in range(args.repeats):
            for candidates in ((True, False) if repeat % 2 == 0 else (False, True)):
                start = time.process_time()
                result = extremal_perturbation(model, image, target, areas=AREAS, seed=0,
                                               area_candidates=candidates)
                times[candidates].append(time.process_time() - start)
                rewards[candidates] = result.rewards[0].tolist()
        ratio = min(times[True]) / min(times[False])
        print(f"{name}: with candidates {' / '.join(f'{t:.1f}' for t in times[True])} s, without "
              f"{' / '.join(f'{t:.1f}' for t in times[False])} s; best of each: {ratio:.3f}x the time")
        for area, with_, without in zip(AREAS, rewards[True], rewards[False]):
            print(f"    area {area:.2f}: reward with {with_:.4f}, without {without:.4f}")


if __name__ == "__main__":
    main()
