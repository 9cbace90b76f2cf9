"""Extremal perturbations: the known-answer property over many image draws, not only the test's one.

Not a test. ``tests/extremal/test_known_answer.py`` checks, on one draw of two random images per size, that the
preserve mask at the region's area overlaps the off-centre box of ``RegionModel`` with IoU >= 0.8 (top-area
pixels). This script repeats that for ``--draws`` image seeds at each ``--sizes`` entry, for every ``--configs``
entry (JSON keyword sets of :func:`xai_plugins.extremal.extremal_perturbation`), and prints per size and
configuration the smallest IoU, the median and how many masks fall below 0.8. ``--show`` also draws the mask with
the smallest IoU: ``#`` kept and in the box, ``+`` kept outside the box, ``.`` in the box but not kept.

Usage: python benchmarks/extremal_known_answer_draws.py [--sizes 40x24 32x32] [--draws 12]
       [--perturbation blur] [--configs '{}' '{"warmup": 0.15}'] [--show]
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
    parser.add_argument("--show", action="store_true", help="draw the mask with the smallest IoU")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"known-answer draws: {args.perturbation}, {args.draws} draws of 2 images per size, one thread")
    for text in args.sizes:
        size = tuple(int(v) for v in text.split("x"))
        model = RegionModel(off_centre_box(*size), size, contrast=args.perturbation == "blur").eval()
        area = float(model.region.mean())
        for config in args.configs:
            ious: list[float] = []
            worst: tuple[float, torch.Tensor] | None = None
            for seed in range(args.draws):
                images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(seed))
                result = extremal_perturbation(model, images, 0, areas=(area,), perturbation=args.perturbation,
                                               seed=0, **config)
                for mask, iou in zip(result.masks[:, 0, 0], top_iou(result.masks[:, 0, 0], model.region)):
                    ious.append(iou)
                    if worst is None or iou < worst[0]:
                        worst = (iou, mask)
            ious.sort()
            below = sum(v < THRESHOLD for v in ious)
            print(f"  {text} (box of {int(model.region.sum())} px) {config or 'defaults'}: smallest IoU "
                  f"{ious[0]:.3f}, median {ious[len(ious) // 2]:.3f}, {below} of {len(ious)} below {THRESHOLD}")
            if args.show and worst is not None:
                draw(worst[1], model.region)


def draw(mask: torch.Tensor, region: torch.Tensor) -> None:
    """Print the top-area pixels of ``mask`` against ``region`` (rows with neither are left out)."""
    k = int(region.sum())
    kept = torch.zeros(mask.numel(), dtype=torch.bool)
    kept[mask.flatten().topk(k).indices] = True
    kept = kept.view(mask.shape)
    inside = region.bool()
    for y in range(mask.shape[0]):
        if kept[y].any() or inside[y].any():
            print("    " + "".join("#" if kept[y, x] and inside[y, x] else "+" if kept[y, x] else
                                   "." if inside[y, x] else " " for x in range(mask.shape[1])))


if __name__ == "__main__":
    main()
