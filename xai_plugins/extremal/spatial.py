"""Extremal perturbations over the pixels of an image (Fong, Patrick and Vedaldi, ICCV 2019), batched: every
image and every area is one row of one optimisation (:mod:`xai_plugins.extremal.optimiser`).

A row's mask comes from :class:`xai_plugins.extremal.masks.SmoothMaskGenerator` and blends the image's
perturbation pyramid (:mod:`xai_plugins.extremal.perturbation`): 1 keeps the pixel, 0 perturbs it fully.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from xai_plugins.extremal.calls import RowForward, forward_with_rows, seeded
from xai_plugins.extremal.checks import check_areas, check_images, check_outputs, check_targets, check_variant
from xai_plugins.extremal.masks import SmoothMaskGenerator, fit_area
from xai_plugins.extremal.optimiser import (
    VALUES_PER_PASS,
    Masks,
    Objective,
    Schedule,
    area_reference,
    check_values_per_pass,
    final_rewards,
    optimise,
    reward_scale_of_rows,
)
from xai_plugins.extremal.perturbation import apply_pyramid, build_pyramid, gaussian_blur
from xai_plugins.extremal.rewards import Reward, resolve_reward
from xai_plugins.extremal.scales import mask_scales
from xai_plugins.model_state import explaining

SCHEDULE_OPTIONS = frozenset({"beta1", "beta2", "warmup", "normalise"})
JITTER_SEED = 0x5EED


@dataclass
class ExtremalResult:
    """Masks and diagnostics of :func:`extremal_perturbation`.

    Attributes:
        masks: (N, A, 1, H, W) masks in [0, 1], one per image and area (1 = kept by ``preserve``).
        rewards: (N, A) reward of each final mask, evaluated without jitter.
        areas_achieved: (N, A) mean of each final mask (before optional smoothing or resizing).
        iterations: (N,) iterations of each image: the most any of its masks ran before converging.
        areas: the requested areas.
        converged: (N,) whether every mask of the sample stopped early because it no longer changed.
    """

    masks: torch.Tensor
    rewards: torch.Tensor
    areas_achieved: torch.Tensor
    iterations: torch.Tensor
    areas: tuple[float, ...]
    converged: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))

    def saliency(self) -> torch.Tensor:
        """(N, 1, H, W) sum of the masks over the areas: regions kept at smaller areas count more."""
        return self.masks.sum(dim=1)


class ImageMasks:
    """The pixel parameterisation: smooth masks over an image (and a margin around it), blending the pyramid.

    ``margin`` pixels around the image are generated and ranked by the area penalty, so mask mass spilling over
    the border counts against the area; ``count_margin`` also counts them in the achieved area (the reference's
    convention). ``jitter`` > 0 translates the perturbed image by up to that many pixels (replicate padding),
    by the same pseudo-random shift for every row at a given iteration.
    """

    def __init__(self, generator: SmoothMaskGenerator, pyramid: torch.Tensor, forward: RowForward, margin: int,
                 count_margin: bool, jitter: int = 0, max_iter: int = 0,
                 values_per_pass: int | None = VALUES_PER_PASS) -> None:
        self.generator = generator
        self.pyramid = pyramid
        self.forward = forward
        self.margin = margin
        self.count_margin = count_margin
        self.jitter = jitter
        height, width = generator.shape
        self.crop = (slice(margin, margin + height), slice(margin, margin + width))
        self.row_size = pyramid[0, 0].numel()
        self.values_per_pass = values_per_pass
        self.shifts = torch.randint(-jitter, jitter + 1, (max(max_iter, 1), 2),
                                    generator=torch.Generator().manual_seed(JITTER_SEED)).tolist()

    def masks(self, params: torch.Tensor) -> Masks:
        extended = self.generator.generate(params, self.margin)
        image = extended[:, self.crop[0], self.crop[1]]
        measured = extended if self.count_margin else image
        return Masks(model=image, penalised=extended, area=measured.flatten(1).mean(dim=1))

    def outputs(self, samples: torch.Tensor, masks: torch.Tensor, t: int | None) -> torch.Tensor:
        x = apply_pyramid(self.pyramid, masks, samples)
        if self.jitter and t is not None:
            x = self._translated(x, *self.shifts[t % len(self.shifts)])
        return self.forward(x, samples)

    def everything(self, rows: int, value: float) -> torch.Tensor:
        height, width = self.generator.shape
        return torch.full((rows, height, width), value, device=self.pyramid.device, dtype=self.pyramid.dtype)

    def _translated(self, x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
        j = self.jitter
        padded = F.pad(x, (j, j, j, j), mode="replicate")
        height, width = x.shape[-2:]
        return padded[..., j - dy: j - dy + height, j - dx: j - dx + width]


def extremal_perturbation(
    model: Callable[..., torch.Tensor],
    inputs: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor,
    *,
    areas: float | Sequence[float] = (0.1,),
    variant: str = "preserve",
    perturbation: str = "blur",
    reward: str | Reward = "simple",
    num_levels: int = 8,
    max_blur: float | None = None,
    step: int | None = None,
    sigma: float | None = None,
    temperature: float = 20.0,
    jitter: int = 0,
    spill: bool = True,
    area_domain: str = "image",
    init: float = 1.0,
    max_iter: int = 30,
    learning_rate: float = 0.15,
    final_learning_rate: float = 0.005,
    regul_weight: float = 5.0,
    final_regul_weight: float = 1500.0,
    reward_scale: float | None = None,
    tol: float = 2e-3,
    patience: int = 10,
    min_iter: int = 0,
    area_tol: float = 0.01,
    exact_area: bool = True,
    area_candidates: bool = True,
    smooth: float = 0.0,
    resize: tuple[int, int] | None = None,
    resize_mode: str = "bilinear",
    additional_forward_args: Sequence[Any] | Any = None,
    values_per_pass: int | None = VALUES_PER_PASS,
    seed: int | None = None,
    progress: bool = False,
    **schedule_options: Any,
) -> ExtremalResult:
    """Extremal perturbation masks for a batch of images, one optimisation for all images and areas.

    Args:
        model: the classifier (any callable ``model(x, *additional_forward_args) -> (N, C[, ...])``).
        inputs: (N, C, H, W) images, any size and number of channels.
        target: output channel to explain: an int for all, a list of N ints or a tensor of shape (N,).
        areas: fractions of the image the masks keep, each in (0, 1); all are optimised jointly.
        variant: ``"preserve"``, ``"delete"`` or ``"dual"``.
        perturbation: ``"blur"`` (Gaussian blur pyramid up to ``max_blur``) or ``"fade"`` (to zero).
        reward: ``"simple"`` (target score), ``"contrastive"`` (minus the best other score) or a callable.
        num_levels, max_blur: levels and strongest blur (px) of the perturbation pyramid.
        step, sigma, temperature: grid step (px), bump radius (px) and smooth-max temperature of the masks.
            ``None`` (step, sigma, max_blur): the paper's 7, 21 and 20 at 224 px, scaled with ``min(H, W)``
            elsewhere, see :mod:`xai_plugins.extremal.scales`.
        jitter: translate the perturbed image by up to this many pixels per iteration (0: off). The reference's
            horizontal flip is not offered: it makes the mask serve the mirror image too, which gives a second
            blob at the mirror position for models that are not flip-invariant.
        spill: evaluate the mask on a margin of ``sigma`` pixels around the image and count mask mass there
            against the area, so masks do not hide their edges outside the image.
        area_domain: ``"image"``: the areas are fractions of the image; ``"extended"``: fractions of the image
            plus margin (the reference's convention, which lets masks cover more than the area of the image).
        init: initial value of the mask parameters.
        max_iter, learning_rate, final_learning_rate, regul_weight, final_regul_weight, tol, patience,
            min_iter, area_tol: the schedule and stopping rule of :mod:`xai_plugins.extremal.optimiser`; the
            area weights are in units of the reward span.
        reward_scale: divide the reward by this fixed number instead of each sample's reward span.
        exact_area: after the optimisation, trim (or grow) each mask's edge so that its mean is the requested
            area within 1e-5 while its peak stays 1 (:func:`xai_plugins.extremal.masks.fit_area`); the rewards
            are those of the fitted masks. ``False`` returns the optimised masks.
        area_candidates: with ``exact_area``, each mask competes with its image's larger-area masks fitted to
            its area, and the one with the highest reward is returned (one model pass per candidate; the
            optimisation of a small area can end in a worse optimum than the core of a larger area's mask).
            A mask then depends on which other areas are requested, never on the rest of the batch.
        smooth: blur the final masks with std ``smooth * min(H, W)`` (0: off).
        resize: resize the final masks to ``(H', W')``.
        additional_forward_args: extra positional arguments of ``model``; tensors with N rows follow the batch.
        values_per_pass: the most input values one model pass holds: the (image, area) rows go through the model
            in passes of this size, which keeps a large batch as fast per image as single calls on a CPU
            (:data:`xai_plugins.extremal.optimiser.VALUES_PER_PASS`, three 224² RGB images); ``None``: one pass
            over all active rows, e.g. on a GPU. The masks do not depend on it, up to the model's own
            batch-dependent rounding.
        seed: seeds torch's global generator inside the call (restored afterwards), for stochastic models.
        progress: show a tqdm progress bar.
        **schedule_options: further fields of :class:`xai_plugins.extremal.optimiser.Schedule` (``beta1``,
            ``beta2``, ``warmup``, ``normalise``).
    """
    unknown = sorted(set(schedule_options) - SCHEDULE_OPTIONS)
    if unknown:
        raise TypeError(f"extremal_perturbation got unexpected keyword argument(s) {unknown}; see "
                        "help(extremal_perturbation)")
    areas = check_areas(areas)
    variant = check_variant(variant)
    reward_fn = resolve_reward(reward)
    jitter = _check_jitter(jitter)
    values_per_pass = check_values_per_pass(values_per_pass)
    if area_domain not in ("image", "extended"):
        raise ValueError(f"area_domain must be 'image' or 'extended'; got {area_domain!r}")
    inputs = check_images(inputs).detach()
    batch, _, height, width = inputs.shape
    targets = check_targets(target, batch, inputs.device)
    scales = mask_scales(height, width, step, sigma, max_blur)
    schedule = Schedule(max_iter=max_iter, learning_rate=learning_rate, final_learning_rate=final_learning_rate,
                        regul_weight=regul_weight, final_regul_weight=final_regul_weight, tol=tol, patience=patience,
                        min_iter=min_iter, area_tol=area_tol, **schedule_options)
    generator = SmoothMaskGenerator((height, width), scales.step, scales.sigma, temperature, device=inputs.device,
                                    dtype=inputs.dtype)
    forward = forward_with_rows(model, additional_forward_args, batch)

    with explaining(model), seeded(seed, inputs.device):
        with torch.no_grad():
            check_outputs(forward(inputs, torch.arange(batch, device=inputs.device)), targets)
        pyramid = build_pyramid(inputs, num_levels, perturbation, scales.max_blur)
        problem = ImageMasks(generator, pyramid, forward, round(scales.sigma) if spill else 0,
                             area_domain == "extended", jitter, max_iter, values_per_pass)
        objective = _objective(problem, reward_fn, variant, targets, areas, reward_scale, height * width)
        params = torch.full((len(objective.sample_of_row), *generator.param_shape), float(init),
                            device=inputs.device, dtype=inputs.dtype)
        optimiser = optimise(problem, objective, schedule, params, progress)
        final, rewards = _final_masks(problem, objective, params, exact_area, area_candidates)
    return _result(final, rewards, optimiser.iterations, optimiser.converged, areas, batch, smooth, resize,
                   resize_mode)


def _check_jitter(jitter: Any) -> int:
    if isinstance(jitter, bool) or not isinstance(jitter, int) or jitter < 0:
        raise ValueError(f"jitter is the largest translation in pixels, an int >= 0 (0: off); got {jitter!r}. "
                         "The reference's horizontal flip (jitter=True there) is not offered: it makes masks serve "
                         "the mirror image as well, a second blob for models that are not flip-invariant")
    return jitter


def _objective(problem: ImageMasks, reward_fn: Reward, variant: str, targets: torch.Tensor,
               areas: tuple[float, ...], reward_scale: float | None, image_size: int) -> Objective:
    """Rows are (sample, area) pairs, sample-major; the area references count ``areas`` of the image pixels,
    or of the image and margin when the margin is counted."""
    device, dtype = targets.device, problem.pyramid.dtype
    batch = targets.shape[0]
    sample_of_row = torch.arange(batch, device=device).repeat_interleave(len(areas))
    height, width = problem.generator.shape
    size = (height + 2 * problem.margin) * (width + 2 * problem.margin)
    reference = area_reference(areas, size, size if problem.count_margin else image_size, device, dtype)
    return Objective(reward_fn=reward_fn, variant=variant, targets=targets, sample_of_row=sample_of_row,
                     area_of_row=torch.tensor(areas, device=device, dtype=dtype).repeat(batch),
                     reference=reference.repeat(batch, 1),
                     scale=reward_scale_of_rows(problem, reward_fn, targets, sample_of_row, reward_scale))


def _final_masks(problem: ImageMasks, objective: Objective, params: torch.Tensor, exact_area: bool,
                 area_candidates: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, W) image masks of the final parameters and their rewards.

    With ``exact_area`` each mask is fitted to its area (:func:`fit_area`), and with ``area_candidates`` a row
    also considers the masks of its sample's larger areas, each fitted to the row's area: a feasible mask of
    the same objective, one model pass each. The row keeps the candidate with the highest reward (its own on a
    tie). The optimisation of a small area can end in a worse optimum than the core of a larger area's mask;
    the candidates come from the same sample only, so a mask still does not depend on the rest of its batch."""
    crop = problem.crop
    with torch.no_grad():
        extended = problem.generator.generate(params, problem.margin)
        if not exact_area:
            final = extended[:, crop[0], crop[1]]
            return final, final_rewards(problem, objective, final)
        counted = None if problem.count_margin else crop
        area_of_row, sample_of_row = objective.area_of_row, objective.sample_of_row
        final = fit_area(extended, area_of_row, counted)[:, crop[0], crop[1]]
        rewards = final_rewards(problem, objective, final)
        if not area_candidates:
            return final, rewards
        larger = (sample_of_row[:, None] == sample_of_row[None, :]) & (area_of_row[None, :] > area_of_row[:, None])
        rows, sources = larger.nonzero(as_tuple=True)
        if rows.numel() == 0:
            return final, rewards
        candidates = fit_area(extended[sources], area_of_row[rows], counted)[:, crop[0], crop[1]]
        candidate_rewards = final_rewards(problem, objective, candidates, rows)
        for index in range(rows.numel()):
            row = rows[index]
            if candidate_rewards[index] > rewards[row]:
                final[row], rewards[row] = candidates[index], candidate_rewards[index]
    return final, rewards


def _result(final: torch.Tensor, rewards: torch.Tensor, iterations: torch.Tensor, converged: torch.Tensor,
            areas: tuple[float, ...], batch: int, smooth: float, resize: tuple[int, int] | None,
            resize_mode: str) -> ExtremalResult:
    """Package the final (B, H, W) masks, with optional smoothing and resizing."""
    height, width = final.shape[-2:]
    achieved = final.flatten(1).mean(dim=1)
    masks = final[:, None]
    if smooth > 0:
        masks = gaussian_blur(masks, smooth * min(height, width))
    if resize is not None:
        masks = F.interpolate(masks, size=tuple(resize), mode=resize_mode,
                              **({"align_corners": False} if resize_mode in ("bilinear", "bicubic") else {}))
    num_areas = len(areas)
    return ExtremalResult(masks=masks.reshape(batch, num_areas, 1, *masks.shape[-2:]),
                          rewards=rewards.reshape(batch, num_areas),
                          areas_achieved=achieved.reshape(batch, num_areas), iterations=iterations, areas=areas,
                          converged=converged)
