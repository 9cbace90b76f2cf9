"""Extremal perturbations: the known-answer property over many image draws, not only the test's one.

Not a test. ``tests/extremal/test_known_answer.py`` checks, on one draw of two random images per size, that the
preserve mask at the region's area overlaps the off-centre box of ``RegionModel`` with IoU >= 0.8 (top-area
pixels). This script repeats that for ``--draws`` image seeds at each ``--sizes`` entry, for every ``--configs``
entry (JSON keyword sets of :func:`xai_plugins.extremal.extremal_perturbation`), and prints per size and
configuration the smallest IoU, the median and how many masks fall below 0.8.

Usage: python benchmarks/extremal_known_answer_draws.py [--sizes 40x24 32x32] [--draws 12]
       [--perturbation blur] [--configs '{}' '{"warmup": 0.15}']
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.extremal.conftest import RegionModel, off_centre_box, top_iou  # noqa: E402
from xai_plugins.extremal import extremal_perturbation  # noqa: E402

THRESHOLD = 0.8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["40x24", "32x32"])
    parser.add_argument("--draws", type=int, default=12)
    parser.add_argument("--perturbation", choices=("blur", "fade"), default="blur")
    parser.add_argument("--configs", nargs="+", type=json.loads, default=[{}])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"known-answer draws: {args.perturbation}, {args.draws} draws of 2 images per size, one thread")
    for text in args.sizes:
        size = tuple(int(v) for v in text.split("x"))
        model = RegionModel(off_centre_box(*size), size, contrast=args.perturbation == "blur").eval()
        area = float(model.region.mean())
        for config in args.configs:
            ious: list[float] = []
            for seed in range(args.draws):
                images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(seed))
                result = extremal_perturbation(model, images, 0, areas=(area,), perturbation=args.perturbation,
                                               seed=0, **config)
                ious += top_iou(result.masks[:, 0, 0], model.region)
            ious.sort()
            below = sum(v < THRESHOLD for v in ious)
            print(f"  {text} (box of {int(model.region.sum())} px) {config or 'defaults'}: smallest IoU "
                  f"{ious[0]:.3f}, median {ious[len(ious) // 2]:.3f}, {below} of {len(ious)} below {THRESHOLD}")


if __name__ == "__main__":
    main()
