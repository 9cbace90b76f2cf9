"""Extremal perturbations: the cost of one optimisation iteration, part by part, ours against the reference.

Not a test. In one process, one thread, at ``--size`` (default 224) with ``--rows`` masks (default 3, the areas of
one image): the mask generator forward and backward (ours against TorchRay's ``MaskGenerator``, same step 7 and
sigma 21, same parameters), the pyramid blend with the area penalty, and the model's forward and backward on the
perturbed rows (``--models``, random weights). Each part is timed ``--repeats`` times, alternating between the
implementations so that both see the same load; the ratios are what to read.

Usage: python benchmarks/bench_extremal_parts.py [--size 224] [--rows 3] [--repeats 5] [--models resnet50 vgg16]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torchvision

from xai_plugins.extremal.masks import SmoothMaskGenerator
from xai_plugins.extremal.optimiser import area_penalty, area_reference
from xai_plugins.extremal.perturbation import apply_pyramid, build_pyramid
from xai_plugins.extremal.scales import mask_scales


def timed(parts: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Mean seconds of each part, the parts run alternately ``repeats`` times after one warm-up round."""
    for run in parts.values():
        run()
    totals = dict.fromkeys(parts, 0.0)
    for _ in range(repeats):
        for name, run in parts.items():
            start = time.perf_counter()
            run()
            totals[name] += time.perf_counter() - start
    return {name: total / repeats for name, total in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rows", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="*", default=["resnet50", "vgg16"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    from torchray.attribution.extremal_perturbation import MaskGenerator

    scales = mask_scales(args.size, args.size)
    ours = SmoothMaskGenerator((args.size, args.size), scales.step, scales.sigma)
    theirs = MaskGenerator((args.size, args.size), scales.step, scales.sigma)
    params = torch.rand(args.rows, 1, *theirs.shape_in, generator=torch.Generator().manual_seed(0))
    margin = round(scales.sigma)
    crop = slice(margin, margin + args.size)
    image = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    pyramid = build_pyramid(image, 8, "blur", scales.max_blur)
    side = args.size + 2 * margin
    reference = area_reference((0.1,), side * side, args.size * args.size, image.device, image.dtype)
    rows = torch.zeros(args.rows, dtype=torch.long)

    def ours_generator() -> None:
        p = params[:, 0, :ours.param_shape[0], :ours.param_shape[1]].clone().requires_grad_(True)
        ours.generate(p, margin).sum().backward()

    def reference_generator() -> None:
        p = params.clone().requires_grad_(True)
        theirs.generate(p)[0].sum().backward()

    def blend_and_penalty() -> None:
        m = torch.rand(args.rows, side, side, requires_grad=True)
        x = apply_pyramid(pyramid, m[:, crop, crop], rows)
        (x.sum() + area_penalty(m, reference.expand(args.rows, -1)).sum()).backward()

    parts = {"mask generator, ours": ours_generator, "mask generator, reference": reference_generator,
             "pyramid blend + area penalty, ours": blend_and_penalty}
    x = pyramid[0, :1].expand(args.rows, -1, -1, -1)
    for name in args.models:
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None).eval().requires_grad_(False)

        def model_pass(model: torch.nn.Module = model) -> None:
            xi = x.clone().requires_grad_(True)
            model(xi)[:, 0].sum().backward()
        parts[f"{name} forward + backward"] = model_pass
    seconds = timed(parts, args.repeats)
    print(f"one iteration's parts, {args.rows} masks at {args.size}x{args.size}, one thread, mean of {args.repeats}:")
    for name, value in seconds.items():
        print(f"  {name:40s} {value:7.3f} s")
    ratio = seconds["mask generator, reference"] / seconds["mask generator, ours"]
    print(f"mask generator: ours {ratio:.2f}x as fast as the reference's (forward + backward)")


if __name__ == "__main__":
    main()
