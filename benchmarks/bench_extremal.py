"""Extremal perturbations: xai-plugins against the reference (TorchRay), side by side in one run.

Not a test. Prints, for ResNet-50 and VGG-16 (random weights, seed 0, synthetic images, areas 0.05/0.1/0.2):

1. speed at 224x224: seconds per iteration of both, measured over a few iterations each, and the time of a
   whole run extrapolated from them (the reference's default 800 iterations against our ``max_iter``, i.e. our
   upper bound, without crediting early stopping);
2. quality from complete runs of both (800 reference iterations; ours to convergence) on a smaller setting
   that fits this machine (default ResNet-50 at 64x64 with step and sigma scaled to the image, 3 images; or
   ``--quality-model digits``, a small CNN trained here on scikit-learn's digits at 32x32): wall time,
   reward of each final mask (one evaluator for both), area error, IoU between our and the reference masks;
3. images per second of ours for a batch of 8 in the quality setting (complete run).

With ``--complete-models resnet50 vgg16`` it instead runs both methods to completion at 224x224 (one image per
model, then ours on a batch of 8); on this 2-core CPU that takes about an hour.

Usage: python benchmarks/bench_extremal.py [--threads 1] [--ref-iters 3] [--skip-speed] [--skip-quality]
       [--size 64] [--images 3] [--quality-model resnet18|digits] [--batch-model resnet50] [--skip-batch]
       [--only-batch] [--conventions image extended] [--complete-models resnet50 vgg16]
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import os
import time

import torch
import torchvision

from xai_plugins.extremal import extremal_perturbation
from xai_plugins.extremal.perturbation import apply_pyramid, build_pyramid

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


def digits_model_and_images() -> tuple[torch.nn.Module, torch.Tensor, dict]:
    """A small CNN trained here on scikit-learn's digits (8x8 upsampled to 32x32, 3 channels, 15 epochs): a model
    with meaningful outputs (about 94% held-out accuracy); returns it, three held-out images and the knobs."""
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    x, y = (x - 0.3) / 0.4, torch.tensor(digits.target)
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(15):
        for b in torch.randperm(len(x) - 100, generator=g).split(64):
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, x[-100:-97], dict(step=2, sigma=3.0)


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


def speed(args: argparse.Namespace) -> None:
    print("\n== speed at 224x224 (seconds per iteration measured; whole runs extrapolated) ==")
    image = synthetic_images(1, 224)
    for name in ("resnet50", "vgg16"):
        model = build(name)
        with torch.no_grad():
            target = int(model(image).argmax())
        start = time.perf_counter()
        reference_run(model, image, target, args.ref_iters)
        ref_iter = (time.perf_counter() - start) / args.ref_iters
        start = time.perf_counter()
        ours = extremal_perturbation(model, image, target, areas=AREAS, max_iter=args.our_iters, tol=0)
        our_iter = (time.perf_counter() - start) / args.our_iters
        ref_total = ref_iter * 800
        budget = inspect.signature(extremal_perturbation).parameters["max_iter"].default
        our_total = our_iter * budget
        print(f"{name}: reference {ref_iter:.2f} s/iter (measured over {args.ref_iters}) -> 800 iterations "
              f"~ {ref_total:.0f} s (extrapolated); ours {our_iter:.2f} s/iter (measured over {args.our_iters}) "
              f"-> at most {budget} iterations ~ {our_total:.0f} s (extrapolated, no early-stopping credit); "
              f"speed-up >= {ref_total / our_total:.1f}x")
        del ours


def side_by_side(model, image, target, domain, knobs) -> dict:
    """One complete run of each (reference: 800 iterations; ours: to convergence) on one image, evaluated alike."""
    start = time.perf_counter()
    ref_masks = reference_run(model, image, target, 800, convention=domain, **knobs)
    ref_time = time.perf_counter() - start
    start = time.perf_counter()
    ours = extremal_perturbation(model, image, target, areas=AREAS, seed=0, area_domain=domain, **knobs)
    our_time = time.perf_counter() - start
    our_masks = ours.masks[0, :, 0]
    ref_reward, ref_err = evaluate(model, image, target, ref_masks, 8, 20.0)
    our_reward, our_err = evaluate(model, image, target, our_masks, 8, 20.0)
    return dict(ref_masks=ref_masks, our_masks=our_masks, ref_time=ref_time, our_time=our_time,
                iterations=int(ours.iterations[0]), ref_err=ref_err, our_err=our_err,
                ious=[top_iou(a, b, area) for a, b, area in zip(our_masks, ref_masks, AREAS)],
                rels=[(o - r) / max(abs(r), 1e-12) for o, r in zip(our_reward, ref_reward)],
                ref_reward=ref_reward, our_reward=our_reward)


def print_areas(run: dict) -> None:
    for j, area in enumerate(AREAS):
        print(f"    area {area:.2f}: reward ref {run['ref_reward'][j]:.4f} ours {run['our_reward'][j]:.4f} "
              f"({100 * run['rels'][j]:+.2f}%), mask area on the image ref {run['ref_masks'][j].mean():.4f} "
              f"ours {run['our_masks'][j].mean():.4f} (error ref {run['ref_err'][j]:.4f} "
              f"ours {run['our_err'][j]:.4f}), IoU(ours, ref) {run['ious'][j]:.3f}")


def complete(args: argparse.Namespace) -> None:
    """Complete runs of both at 224x224 (ResNet-50 and VGG-16, one image each): wall time, reward per area, area
    error and IoU; then ours on a batch of 8 images, for images per second against the reference's one image at a
    time."""
    image = synthetic_images(1, 224)
    knobs = dict(step=7, sigma=21.0)
    for name in args.complete_models:
        model = build(name)
        with torch.no_grad():
            target = int(model(image).argmax())
        for domain in args.conventions:
            run = side_by_side(model, image, target, domain, knobs)
            ref_time = run["ref_time"]
            print(f"{name} 224x224, area convention {domain!r}, target {target}: reference 800 iterations "
                  f"{ref_time:.1f} s; ours {run['our_time']:.1f} s ({run['iterations']} iterations): "
                  f"{ref_time / run['our_time']:.1f}x faster; load average {os.getloadavg()[0]:.1f}")
            print_areas(run)
        if not args.skip_batch:
            throughput(name, 224, knobs, reference_seconds=ref_time)


def quality(args: argparse.Namespace) -> None:
    size = args.size
    scale = size / 224
    knobs = dict(step=max(2, round(7 * scale)), sigma=max(2.0, round(21 * scale)))
    if args.quality_model == "digits":
        model, images, knobs = digits_model_and_images()
        size = images.shape[-1]
    else:
        model = build(args.quality_model)
        images = synthetic_images(args.images, size)
    print(f"\n== quality from complete runs: {args.quality_model} at {size}x{size}, areas {AREAS}, "
          f"step={knobs['step']} sigma={knobs['sigma']} max_blur=20 (the reference's fixed value) ==")
    rows = []
    for i in range(args.first_image, min(args.images, images.shape[0])):
        image = images[i: i + 1]
        with torch.no_grad():
            target = int(model(image).argmax())
        for domain in args.conventions:
            run = side_by_side(model, image, target, domain, knobs)
            rows.append((domain, run["ref_time"], run["our_time"], run["ref_err"], run["our_err"], run["ious"],
                         run["rels"]))
            print(f"image {i} target {target}, area convention {domain!r}: reference 800 iterations "
                  f"{run['ref_time']:.1f} s, load average {os.getloadavg()[0]:.1f}; ours {run['our_time']:.1f} s "
                  f"({run['ref_time'] / run['our_time']:.1f}x faster), {run['iterations']} iterations")
            print_areas(run)
    for domain in args.conventions:
        sel = [r for r in rows if r[0] == domain]
        ref_t = sum(r[1] for r in sel)
        our_t = sum(r[2] for r in sel)
        n = 3 * len(sel)
        print(f"area_domain={domain!r} over {len(sel)} image(s): ref {ref_t:.1f} s, ours {our_t:.1f} s, speed-up "
              f"{ref_t / our_t:.1f}x; mean area error ref {sum(sum(r[3]) for r in sel) / n:.4f} "
              f"ours {sum(sum(r[4]) for r in sel) / n:.4f}; mean IoU {sum(sum(r[5]) for r in sel) / n:.3f}; "
              f"worst reward vs ref {100 * min(min(r[6]) for r in sel):+.2f}%")
    if not args.skip_batch and args.quality_model != "digits":
        throughput(args.batch_model, args.size, knobs)


def throughput(name: str, size: int, knobs: dict, reference_seconds: float | None = None) -> None:
    """Images per second of ours for a batch of 8, complete run (early stopping active); the reference explains
    one image per call, so its rate is one over the time of one image (``reference_seconds``)."""
    model = build(name)
    batch = synthetic_images(8, size, seed=1)
    with torch.no_grad():
        targets = model(batch).argmax(dim=1)
    start = time.perf_counter()
    result = extremal_perturbation(model, batch, targets, areas=AREAS, seed=0, **knobs)
    elapsed = time.perf_counter() - start
    reference = "" if reference_seconds is None else \
        f"; the reference, one image per call: {1 / reference_seconds:.4f} images/s (its run above)"
    print(f"\nbatch of 8 ({name} {size}x{size}, 3 areas, complete run, iterations "
          f"{result.iterations.tolist()}): {elapsed:.1f} s -> {8 / elapsed:.4f} images/s{reference}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ref-iters", type=int, default=3)
    parser.add_argument("--our-iters", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--first-image", type=int, default=0)
    parser.add_argument("--quality-model", default="resnet50", help="a torchvision builder name or 'digits'")
    parser.add_argument("--batch-model", default="resnet50")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument("--only-batch", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--complete-models", nargs="*", default=[],
                        help="complete runs of both at 224x224 for these models (e.g. resnet50 vgg16), then stop")
    parser.add_argument("--conventions", nargs="+", default=["image", "extended"], choices=["image", "extended"],
                        help="area conventions compared: 'image' gives the reference the areas that equal ours "
                             "(a fraction of the image); 'extended' is the reference's own (margin included)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"bench_extremal {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, torch "
          f"{torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    if args.complete_models:
        complete(args)
        return
    if args.only_batch:
        scale = args.size / 224
        throughput(args.batch_model, args.size, dict(step=max(2, round(7 * scale)), sigma=max(2.0, round(21 * scale))))
        return
    if not args.skip_speed:
        speed(args)
    if not args.skip_quality:
        quality(args)


if __name__ == "__main__":
    main()
