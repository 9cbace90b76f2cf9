"""Explanation-quality metrics in plain torch, batched: localization against ground-truth masks, faithfulness,
robustness, complexity and conservation.

Attributions may be ``(N, C, H, W)``, ``(N, 1, H, W)`` or ``(N, H, W)``; localization and complexity metrics
first sum over channels to one relevance value per pixel. Each function returns one score per sample (a tensor
of shape ``(N,)``) unless it says otherwise. The definitions follow Quantus (Hedström et al., JMLR 2023), which
the tests cross-check on hand-made cases, and the papers cited in each docstring.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Explainer = Callable[[Tensor, Tensor], Tensor]


def pixel_relevance(attributions: Tensor) -> Tensor:
    """One relevance value per pixel: ``(N, C, H, W)`` summed over channels to ``(N, H, W)``."""
    if attributions.dim() == 4:
        return attributions.sum(1)
    if attributions.dim() == 3:
        return attributions
    raise ValueError(f"attributions must be (N, C, H, W) or (N, H, W), got shape {tuple(attributions.shape)}")


def _masks(masks: Tensor, like: Tensor) -> Tensor:
    m = masks.squeeze(1) if masks.dim() == 4 else masks
    if m.shape != like.shape:
        raise ValueError(f"masks of shape {tuple(masks.shape)} do not match attributions' pixel map "
                         f"{tuple(like.shape)}; pass (N, 1, H, W) or (N, H, W) masks")
    return m.bool()


def _targets(target: int | Tensor | list[int], n: int) -> Tensor:
    t = torch.as_tensor(target, dtype=torch.long)
    return t.expand(n) if t.dim() == 0 else t.reshape(n)


def relevance_mass_accuracy(attributions: Tensor, masks: Tensor, *, positive: bool = True) -> Tensor:
    """Share of relevance that falls inside the mask (Arras et al., CLEVR-XAI, Information Fusion 2022).

    With ``positive=True`` (the paper's definition) only positive relevance counts; ``False`` uses the signed
    sums as Quantus does. NaN for an empty mask or no relevance.
    """
    r = pixel_relevance(attributions)
    m = _masks(masks, r)
    if positive:
        r = r.clamp(min=0)
    within = (r * m).flatten(1).sum(1)
    total = r.flatten(1).sum(1)
    score = within / total
    score[(m.flatten(1).sum(1) == 0) | (total == 0)] = float("nan")
    return score


def relevance_rank_accuracy(attributions: Tensor, masks: Tensor) -> Tensor:
    """Share of the K most relevant pixels that lie in the mask, K = mask size (Arras et al. 2022)."""
    r = pixel_relevance(attributions).flatten(1)
    m = _masks(masks, pixel_relevance(attributions)).flatten(1)
    k = m.sum(1)
    order = torch.argsort(r, dim=1, descending=True, stable=True)
    hits = torch.gather(m, 1, order).float()
    ranks = torch.arange(r.shape[1], device=r.device).expand_as(hits)
    score = (hits * (ranks < k[:, None])).sum(1) / k.clamp(min=1)
    score[k == 0] = float("nan")
    return score


def pointing_game(attributions: Tensor, masks: Tensor, *, tolerance: int = 0) -> Tensor:
    """1.0 where a maximum of the relevance lies in the mask grown by ``tolerance`` pixels, else 0.0
    (Zhang et al., Top-down neural attention by excitation backprop, IJCV 2018)."""
    r = pixel_relevance(attributions)
    m = _masks(masks, r)
    if tolerance > 0:
        k = 2 * tolerance + 1
        m = F.max_pool2d(m[:, None].float(), k, stride=1, padding=tolerance)[:, 0].bool()
    flat = r.flatten(1)
    at_max = flat == flat.max(1, keepdim=True).values
    score = (at_max & m.flatten(1)).any(1).float()
    score[m.flatten(1).sum(1) == 0] = float("nan")
    return score


@torch.no_grad()
def _scores(model: Callable[[Tensor], Tensor], x: Tensor, target: Tensor) -> Tensor:
    return model(x).gather(1, target[:, None])[:, 0]


def _baseline_like(inputs: Tensor, baseline: float | str, generator: torch.Generator | None) -> Tensor:
    if isinstance(baseline, str):
        if baseline != "uniform":
            raise ValueError(f"baseline must be a number or 'uniform', got {baseline!r}")
        return torch.rand(inputs.shape, generator=generator, dtype=inputs.dtype).to(inputs.device)
    return torch.full_like(inputs, float(baseline))


def pixel_flipping(model: Callable[[Tensor], Tensor], inputs: Tensor, target: int | Tensor | list[int],
                   attributions: Tensor, *, pixels_per_step: int = 1, baseline: float | str = 0.0,
                   generator: torch.Generator | None = None) -> Tensor:
    """Target score after each step of replacing the most relevant remaining pixels by ``baseline``
    (Bach et al., PLoS ONE 2015); returns the curve ``(N, steps)`` (see :func:`area_under_curve`).

    Pixels (all channels together) are ranked by channel-summed relevance. A faithful explanation makes the
    score drop fast, so a lower area is better.
    """
    n = inputs.shape[0]
    t = _targets(target, n)
    r = pixel_relevance(attributions.expand(n, *attributions.shape[1:])).flatten(1)
    order = torch.argsort(r, dim=1, descending=True, stable=True)
    base = _baseline_like(inputs, baseline, generator).flatten(2)
    x = inputs.detach().clone().flatten(2)
    curve = []
    rows = torch.arange(n)[:, None]
    for start in range(0, r.shape[1], pixels_per_step):
        idx = order[:, start:start + pixels_per_step]
        x[rows, :, idx] = base[rows, :, idx]
        curve.append(_scores(model, x.view_as(inputs), t))
    return torch.stack(curve, 1)


def region_perturbation(model: Callable[[Tensor], Tensor], inputs: Tensor, target: int | Tensor | list[int],
                        attributions: Tensor, *, patch_size: int = 8, regions: int | None = None,
                        order: str = "morf", baseline: float | str = 0.0,
                        generator: torch.Generator | None = None) -> Tensor:
    """Score drop ``f(x) - f(x_k)`` after perturbing the k most relevant non-overlapping patches
    (Samek et al., Evaluating the visualization of what a DNN has learned, IEEE TNNLS 2017); returns the curve
    ``(N, regions)``. Its mean is AOPC (higher is better for ``order="morf"``). ``order="lerf"`` perturbs the
    least relevant first. ``baseline="uniform"`` draws uniform noise as in the paper.
    """
    if order not in ("morf", "lerf"):
        raise ValueError(f"order must be 'morf' or 'lerf', got {order!r}")
    n, _, h, w = inputs.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"patch_size={patch_size} must divide the input size {h}x{w}")
    t = _targets(target, n)
    r = pixel_relevance(attributions.expand(n, *attributions.shape[1:]))
    sums = F.avg_pool2d(r[:, None], patch_size).flatten(1) * patch_size ** 2
    ranking = torch.argsort(sums, dim=1, descending=(order == "morf"), stable=True)
    regions = sums.shape[1] if regions is None else min(regions, sums.shape[1])
    base = _baseline_like(inputs, baseline, generator)
    original = _scores(model, inputs, t)
    x = inputs.detach().clone()
    cols = w // patch_size
    curve = []
    for k in range(regions):
        for i in range(n):
            p = int(ranking[i, k])
            rs, cs = (p // cols) * patch_size, (p % cols) * patch_size
            x[i, :, rs:rs + patch_size, cs:cs + patch_size] = base[i, :, rs:rs + patch_size, cs:cs + patch_size]
        curve.append(original - _scores(model, x, t))
    return torch.stack(curve, 1)


def area_under_curve(curve: Tensor) -> Tensor:
    """Trapezoidal area under each row of a ``(N, steps)`` curve, unit spacing (as Quantus computes it)."""
    return torch.trapezoid(curve, dim=1)


def max_sensitivity(explain: Explainer, inputs: Tensor, target: int | Tensor | list[int], *,
                    radius: float = 0.2, samples: int = 10, attributions: Tensor | None = None,
                    perturb: Callable[[Tensor], Tensor] | None = None,
                    generator: torch.Generator | None = None) -> Tensor:
    """Largest relative change ``||a(x + d) - a(x)|| / ||a(x)||`` over ``samples`` draws of uniform noise
    ``d`` in ``[-radius, radius]`` (Yeh et al., On the (in)fidelity and sensitivity of explanations, NeurIPS
    2019). ``explain(x, target)`` returns attributions; ``perturb`` replaces the noise draw. Lower is better.
    """
    n = inputs.shape[0]
    t = _targets(target, n)
    a = (explain(inputs, t) if attributions is None else attributions).detach().flatten(1)
    denom = a.norm(dim=1)
    worst = torch.full((n,), float("-inf"))
    for _ in range(samples):
        if perturb is None:
            noise = torch.rand(inputs.shape, generator=generator, dtype=inputs.dtype) * 2 - 1
            x = inputs + radius * noise.to(inputs.device)
        else:
            x = perturb(inputs)
        b = explain(x, t).detach().flatten(1)
        worst = torch.maximum(worst, (a - b).norm(dim=1) / denom)
    return worst


def sparseness(attributions: Tensor) -> Tensor:
    """Gini index of the absolute pixel relevance, in [0, 1]; higher is sparser (Chalasani et al., Concise
    explanations of neural networks using adversarial training, ICML 2020)."""
    r = pixel_relevance(attributions).abs().flatten(1).double() + 1e-7
    r, _ = torch.sort(r, dim=1)
    d = r.shape[1]
    i = torch.arange(1, d + 1, dtype=r.dtype)
    return (((2 * i - d - 1) * r).sum(1) / (d * r.sum(1))).float()


def complexity(attributions: Tensor) -> Tensor:
    """Entropy of the fractional absolute relevance per pixel; lower is simpler (Bhatt et al., Evaluating and
    aggregating feature-based model explanations, IJCAI 2020)."""
    r = pixel_relevance(attributions).abs().flatten(1).double()
    p = r / r.sum(1, keepdim=True)
    return (-(p * torch.log(p + 1e-12)).sum(1)).float()


@torch.no_grad()
def completeness_gap(model: Callable[[Tensor], Tensor], inputs: Tensor, target: int | Tensor | list[int],
                     attributions: Tensor, *, baseline: Tensor | float | None = None) -> Tensor:
    """``sum(attributions) - (f(x) - f(baseline))`` for the target score (Sundararajan et al., ICML 2017);
    with ``baseline=None`` the reference is ``f(x)`` itself, which is LRP's conservation (Bach et al. 2015).
    Zero means complete; see :func:`relative_completeness_gap` for a scale-free version."""
    n = inputs.shape[0]
    t = _targets(target, n)
    out = _scores(model, inputs, t)
    if baseline is not None:
        base = baseline if isinstance(baseline, Tensor) else torch.full_like(inputs, float(baseline))
        out = out - _scores(model, base.expand_as(inputs), t)
    return attributions.flatten(1).sum(1) - out


def relative_completeness_gap(model: Callable[[Tensor], Tensor], inputs: Tensor,
                              target: int | Tensor | list[int], attributions: Tensor, *,
                              baseline: Tensor | float | None = None) -> Tensor:
    """``|completeness_gap| / |f(x) - f(baseline)|``: 0 for a perfectly conserving explanation."""
    n = inputs.shape[0]
    t = _targets(target, n)
    with torch.no_grad():
        out = _scores(model, inputs, t)
        if baseline is not None:
            base = baseline if isinstance(baseline, Tensor) else torch.full_like(inputs, float(baseline))
            out = out - _scores(model, base.expand_as(inputs), t)
    gap = completeness_gap(model, inputs, t, attributions, baseline=baseline)
    return gap.abs() / out.abs().clamp(min=1e-12)


def _ranks(values: Tensor) -> Tensor:
    """Ranks along dim 1 (0 .. n-1), ties broken by position; used for Spearman correlation."""
    order = torch.argsort(values, dim=1, stable=True)
    ranks = torch.empty_like(order, dtype=torch.float64)
    ranks.scatter_(1, order, torch.arange(values.shape[1], dtype=torch.float64, device=values.device)
                   .expand_as(order).contiguous())
    return ranks


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation per sample between two batches of maps (flattened from dim 1)."""
    ra, rb = _ranks(a.flatten(1)), _ranks(b.flatten(1))
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    return ((ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp(min=1e-12)).float()


def randomised_model(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A copy of ``model`` with every module that has ``reset_parameters`` re-initialised from ``seed`` (the
    full cascade of Adebayo et al.'s model parameter randomisation test); ``model`` itself is untouched."""
    import copy

    clone = copy.deepcopy(model)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for module in clone.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
            reset_stats = getattr(module, "reset_running_stats", None)
            if callable(reset_stats):
                reset_stats()
    finally:
        torch.random.set_rng_state(state)
    return clone.eval()


def parameter_randomisation(explain: Callable[[torch.nn.Module, Tensor, Tensor], Tensor], model: torch.nn.Module,
                            inputs: Tensor, target: int | Tensor | list[int], attributions: Tensor, *,
                            seed: int = 0) -> Tensor:
    """Model parameter randomisation test (Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018).

    Spearman correlation between the absolute pixel relevance of ``attributions`` and that of the same method
    on the fully re-initialised model (:func:`randomised_model`); lower is better. An explanation that does not
    depend on the model (a control such as the input itself) scores 1. ``explain(model, inputs, target)``.
    """
    t = _targets(target, inputs.shape[0])
    random_attributions = explain(randomised_model(model, seed), inputs, t)
    return spearman(pixel_relevance(attributions).abs(), pixel_relevance(random_attributions).abs())


def grid_images(images: Tensor, labels: Tensor, grid: int = 2) -> tuple[Tensor, Tensor]:
    """Tile ``grid x grid`` images of pairwise distinct classes into one image each, for
    :func:`grid_pointing_game`: ``(N, C, H, W)`` images and ``(N,)`` labels give ``(M, C, grid*H, grid*W)`` grids
    and ``(M, grid*grid)`` cell labels in row-major order. Images are taken in order; one whose class is already
    in the grid being filled waits for the next grid. Leftovers that do not fill a grid are dropped."""
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    cells = grid * grid
    pending: list[int] = []
    grids: list[list[int]] = []
    for index in range(images.shape[0]):
        pending.append(index)
        chosen: list[int] = []
        for candidate in pending:
            if all(int(labels[candidate]) != int(labels[c]) for c in chosen):
                chosen.append(candidate)
            if len(chosen) == cells:
                break
        if len(chosen) == cells:
            grids.append(chosen)
            pending = [p for p in pending if p not in chosen]
    n, c, h, w = images.shape
    if not grids:
        return images.new_zeros(0, c, grid * h, grid * w), labels.new_zeros(0, cells)
    picked = torch.tensor(grids)
    tiles = images[picked.flatten()].reshape(len(grids), grid, grid, c, h, w)
    tiled = tiles.permute(0, 3, 1, 4, 2, 5).reshape(len(grids), c, grid * h, grid * w)
    return tiled, labels[picked]


def grid_pointing_game(attributions: Tensor, cell: int | Tensor | list[int], grid: int = 2) -> Tensor:
    """Share of the positive relevance that falls in cell ``cell`` (row-major) of a ``grid x grid`` image
    (Böhle et al., B-cos networks, CVPR 2022; B-cos v2, TPAMI 2024): 1 when the explanation of that cell's class
    stays in its cell, ``1 / grid**2`` for a uniform map. NaN where there is no positive relevance."""
    r = pixel_relevance(attributions).clamp(min=0)
    n, height, width = r.shape
    if height % grid or width % grid:
        raise ValueError(f"a {grid}x{grid} grid needs a size divisible by {grid}, got {height}x{width}")
    cells = r.reshape(n, grid, height // grid, grid, width // grid).sum((2, 4)).flatten(1)
    index = _targets(cell, n)
    total = cells.sum(1)
    score = cells.gather(1, index[:, None])[:, 0] / total
    score[total == 0] = float("nan")
    return score
