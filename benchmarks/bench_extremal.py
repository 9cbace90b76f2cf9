"""Extremal perturbations: xai-plugins against the reference (TorchRay), side by side in one process.

Not a test. For each model (default ResNet-50 and VGG-16, random weights, seed 0) at ``--size`` (default 224)
on synthetic images, areas 0.05 / 0.1 / 0.2, one thread:

1. the reference's default run (800 iterations, its flip jitter, the image-equivalent areas of
   :func:`image_equivalent_areas` so both optimise the same objective; the grid step and sigma of
   :func:`xai_plugins.extremal.scales.mask_scales`, the paper's at 224, while its blur stays 20 px at every size)
   and ours with the library defaults, each
   timed as a whole call. With ``--ref-iters K < 800`` the reference runs K iterations, its time is extrapolated
   to 800 (K/800 of the run measured, stated in the table) and its masks are those of the K-iteration run, so
   its reward is not that of the default run; only complete runs give the reward verdict.
2. both masks scored by one evaluator (target logit under the blur pyramid of the reference, no jitter), the
   area error of each, and ours relative to the reference per area; for information also the reference's masks
   fitted to the exact areas (its masks keep more than the area; the verdict uses its own masks);
3. batching: ours on a batch of ``--batch`` images against the same images in single calls, alternated over
   ``--batch-repeats`` repeats, the best of each.

The last lines are the verdict table: speed-up >= 30x and reward >= reference - 2 % at every area.

Usage: python benchmarks/bench_extremal.py [--models resnet50 vgg16] [--size 224] [--images 1] [--ref-iters 800]
       [--batch 4] [--batch-model resnet50] [--batch-repeats 2] [--skip-batch] [--threads 1] [--ref-cache DIR]
       [--max-iter N] [--learning-rate LR] [--warmup FRACTION]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torchvision

from xai_plugins.extremal import extremal_perturbation
from xai_plugins.extremal.masks import fit_area
from xai_plugins.extremal.perturbation import apply_pyramid, build_pyramid
from xai_plugins.extremal.scales import mask_scales

AREAS = (0.05, 0.1, 0.2)


def synthetic_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random backgrounds with a few bright blobs, roughly ImageNet-normalised."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    images = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    for i in range(n):
        for _ in range(3):
            cy, cx, r = torch.rand(3, generator=g).tolist()
            blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.01 + 0.03 * r))
            images[i] += blob * torch.rand(3, 1, 1, generator=g)
    return (images - images.mean()) / images.std()


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def evaluate(model: torch.nn.Module, image: torch.Tensor, target: int, masks: torch.Tensor, num_levels: int,
             max_blur: float) -> tuple[list[float], list[float]]:
    """Reward (target logit, preserve, no jitter) and area error of masks (A, H, W), same evaluator for both."""
    pyramid = build_pyramid(image, num_levels, "blur", max_blur)
    with torch.no_grad():
        x = apply_pyramid(pyramid, masks, torch.zeros(masks.shape[0], dtype=torch.long))
        rewards = model(x)[:, target].tolist()
    errors = [abs(m.mean().item() - a) for m, a in zip(masks, AREAS)]
    return rewards, errors


def top_iou(a: torch.Tensor, b: torch.Tensor, area: float) -> float:
    k = max(1, int(round(area * a.numel())))
    sa = torch.zeros(a.numel(), dtype=torch.bool)
    sb = torch.zeros(b.numel(), dtype=torch.bool)
    sa[a.flatten().topk(k).indices] = True
    sb[b.flatten().topk(k).indices] = True
    return (sa & sb).sum().item() / (sa | sb).sum().item()


def image_equivalent_areas(shape: tuple[int, int], step: int, sigma: float) -> list[float]:
    """Areas that make the reference's ranking vector hold ``a * H * W`` ones, as ours does by default.

    The reference counts ``a`` of its mask including the margin around the image, ``(H + 2m) (W + 2m)`` entries;
    this converts each area to that domain, so both methods optimise the same objective.
    """
    from torchray.attribution.extremal_perturbation import MaskGenerator

    out = MaskGenerator(shape, step, sigma).shape_out
    return [a * shape[0] * shape[1] / (out[0] * out[1]) for a in AREAS]


def reference_run(model, image, target, max_iter, convention="extended", **kw):
    """TorchRay's masks (A, H, W); ``convention="image"`` passes :func:`image_equivalent_areas` instead of AREAS."""
    from torchray.attribution.extremal_perturbation import extremal_perturbation as torchray_ep

    areas = list(AREAS)
    if convention == "image":
        areas = image_equivalent_areas(tuple(image.shape[-2:]), kw.get("step", 7), kw.get("sigma", 21.0))
    masks, _ = torchray_ep(model, image, target, areas=areas, max_iter=max_iter, **kw)
    return masks[:, 0]


def reference_timed(model, image, target, iterations: int, knobs: dict, cache: Path | None) -> dict:
    """The reference's run of ``iterations`` (its defaults otherwise): masks and wall time, from ``cache`` if
    that directory holds the same run."""
    key = None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        shape = "x".join(map(str, image.shape))
        key = cache / f"ref_{type(model).__name__}_{shape}_{target}_{iterations}_{float(image.sum()):.6g}.pt"
        if key.exists():
            return torch.load(key)
    start = time.perf_counter()
    masks = reference_run(model, image, target, iterations, convention="image", **knobs)
    run = dict(masks=masks, seconds=time.perf_counter() - start, iterations=iterations)
    if key is not None:
        torch.save(run, key)
    return run


def compare(name: str, args: argparse.Namespace) -> list[dict]:
    """Reference and ours side by side on ``args.images`` images of one model."""
    model = build(name)
    images = synthetic_images(args.images, args.size)
    scales = mask_scales(args.size, args.size)
    knobs = dict(step=scales.step, sigma=scales.sigma)
    rows = []
    for i in range(args.images):
        image = images[i: i + 1]
        with torch.no_grad():
            target = int(model(image).argmax())
        ref = reference_timed(model, image, target, args.ref_iters, knobs, args.ref_cache)
        ref_seconds = ref["seconds"] * 800 / ref["iterations"]
        start = time.perf_counter()
        ours = extremal_perturbation(model, image, target, areas=AREAS, seed=0, **args.ours)
        our_seconds = time.perf_counter() - start
        ref_reward, ref_err = evaluate(model, image, target, ref["masks"], 8, scales.max_blur)
        our_reward, our_err = evaluate(model, image, target, ours.masks[0, :, 0], 8, scales.max_blur)
        rel = [(o - r) / max(abs(r), 1e-12) for o, r in zip(our_reward, ref_reward)]
        row = dict(model=name, image=i, target=target, ref_seconds=ref_seconds, ref_iters=ref["iterations"],
                   our_seconds=our_seconds, our_iters=int(ours.iterations[0]), ref_reward=ref_reward,
                   our_reward=our_reward, rel=rel, ref_err=ref_err, our_err=our_err,
                   peak=float(ours.masks.amax(dim=(2, 3, 4)).min()))
        rows.append(row)
        measured = "measured" if ref["iterations"] == 800 else f"extrapolated from {ref['iterations']} iterations"
        print(f"{name} image {i} target {target}: reference {ref_seconds:.1f} s ({measured}); ours "
              f"{our_seconds:.1f} s ({row['our_iters']} iterations); load average {os.getloadavg()[0]:.1f}")
        for j, area in enumerate(AREAS):
            print(f"    area {area:.2f}: reward ref {ref_reward[j]:.4f} ours {our_reward[j]:.4f} ({100 * rel[j]:+.2f}%)"
                  f", area error ref {ref_err[j]:.4f} ours {our_err[j]:.4f}")
        fitted = fit_area(ref["masks"], torch.tensor(AREAS, dtype=ref["masks"].dtype))
        fitted_reward, _ = evaluate(model, image, target, fitted, 8, scales.max_blur)
        print("    reference fitted to the exact areas (fit_area; the verdict uses its own masks): rewards "
              + " / ".join(f"{v:.4f}" for v in fitted_reward))
    return rows


def batching(args: argparse.Namespace) -> tuple[float, float]:
    """Seconds of ours for ``args.batch`` images in one call and in single calls: the smaller of
    ``args.batch_repeats`` measurements each, the two alternated (the batched call first in even repeats)."""
    model = build(args.batch_model)
    images = synthetic_images(args.batch, args.size, seed=1)
    with torch.no_grad():
        targets = model(images).argmax(dim=1)

    def batched() -> None:
        extremal_perturbation(model, images, targets, areas=AREAS, seed=0, **args.ours)

    def single() -> None:
        for i in range(args.batch):
            extremal_perturbation(model, images[i: i + 1], targets[i: i + 1], areas=AREAS, seed=0, **args.ours)

    times: dict[str, list[float]] = {"batched": [], "single": []}
    for repeat in range(args.batch_repeats):
        order = (("batched", batched), ("single", single))
        for name, run in order if repeat % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    best_batched, best_single = min(times["batched"]), min(times["single"])
    print(f"\nbatching ({args.batch_model} {args.size}x{args.size}, {args.batch} images, 3 areas, "
          f"{args.batch_repeats} alternated repeats): one call {' / '.join(f'{t:.1f}' for t in times['batched'])} s"
          f", single calls {' / '.join(f'{t:.1f}' for t in times['single'])} s; best of each: batching "
          f"{best_single / best_batched:.2f}x as fast")
    return best_batched, best_single


def verdict(rows: list[dict], batch: tuple[float, float] | None, ours: dict) -> None:
    print(f"\nverdict, ours with {ours or 'the library defaults'}:")
    print("\n| model | image | reference (800 it) | ours (iterations) | speed-up | reward ours vs ref at "
          "0.05 / 0.10 / 0.20 | area error ref | area error ours | verdict |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        complete = r["ref_iters"] == 800
        speed = r["ref_seconds"] / r["our_seconds"]
        fast = speed >= 30
        good = min(r["rel"]) >= -0.02
        ref_time = f"{r['ref_seconds']:.0f} s" + ("" if complete else f" (extrapolated from {r['ref_iters']} it)")
        reward = " / ".join(f"{100 * v:+.1f} %" for v in r["rel"]) + ("" if complete else " (vs prefix)")
        if complete:
            failed = [x for x, ok in (("speed", fast), ("reward", good)) if not ok]
            word = "met" if not failed else "not met: " + ", ".join(failed)
        else:
            word = f"speed {'met' if fast else 'not met'}, reward not verified (reference prefix)"
        print(f"| {r['model']} | {r['image']} | {ref_time} | {r['our_seconds']:.0f} s ({r['our_iters']}) | "
              f"**{speed:.1f}x** | {reward} | {' / '.join(f'{e:.4f}' for e in r['ref_err'])} | "
              f"{' / '.join(f'{e:.4f}' for e in r['our_err'])} | {word} |")
    if batch is not None:
        batched, single = batch
        print(f"\nbatching: {single / batched:.2f}x as fast as single calls "
              f"({'met' if batched <= single else 'not met'}: at least as fast)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=["resnet50", "vgg16"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--ref-iters", type=int, default=800)
    parser.add_argument("--ref-cache", type=Path, default=None,
                        help="directory keeping the reference's runs, reused when the same run is asked again")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--batch-model", default="resnet50")
    parser.add_argument("--batch-repeats", type=int, default=2)
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument("--max-iter", type=int, default=None, help="our budget (default: the library's)")
    parser.add_argument("--learning-rate", type=float, default=None, help="our learning rate (default: the library's)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="our warm-up fraction of the budget (default: the library's)")
    args = parser.parse_args()
    args.ours = {k: v for k, v in (("max_iter", args.max_iter), ("learning_rate", args.learning_rate),
                                   ("warmup", args.warmup)) if v is not None}
    torch.set_num_threads(args.threads)
    print(f"bench_extremal: torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, load "
          f"average {os.getloadavg()[0]:.1f}, {args.size}x{args.size}, areas {AREAS}, ours {args.ours or 'defaults'}")
    rows = [row for name in args.models for row in compare(name, args)]
    batch = None if args.skip_batch else batching(args)
    verdict(rows, batch, args.ours)


if __name__ == "__main__":
    main()
