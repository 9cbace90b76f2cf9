"""Extremal perturbations of the input (Fong, Patrick and Vedaldi, ICCV 2019), batched with per-sample targets.

For every image ``x`` and area ``a`` the method looks for a smooth mask ``m`` of area ``a`` that maximises the
reward of the perturbed image: ``preserve`` keeps the region ``m`` and blurs the rest, ``delete`` blurs the region
and rewards a low score, ``dual`` rewards the difference of both. All images and areas of a call are optimised
together in one batch; each sample stops on its own once its masks have converged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from xai_plugins.extremal.checks import check_areas, check_images, check_outputs, check_targets, check_variant
from xai_plugins.extremal.masks import SmoothMaskGenerator, match_area
from xai_plugins.extremal.optimiser import MaskAdam, Schedule, area_penalty, area_reference
from xai_plugins.extremal.perturbation import apply_pyramid, build_pyramid, gaussian_blur
from xai_plugins.extremal.progress import progress_bar
from xai_plugins.extremal.rewards import Reward, resolve_reward
from xai_plugins.model_state import explaining

SCHEDULE_OPTIONS = frozenset({"beta1", "beta2", "warmup", "normalise"})


@dataclass
class ExtremalResult:
    """Masks and diagnostics of :func:`extremal_perturbation`.

    Attributes:
        masks: (N, A, 1, H, W) masks in [0, 1], one per image and area (1 = kept by ``preserve``).
        rewards: (N, A) reward of each final mask, evaluated without jitter.
        areas_achieved: (N, A) mean of each final mask (before optional smoothing or resizing).
        iterations: (N,) iterations each sample ran before converging or reaching ``max_iter``.
        areas: the requested areas.
        converged: (N,) whether the sample stopped early because its masks no longer changed.
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


def _forward_with_rows(model: Callable[..., Any], additional_forward_args: Any, batch: int
                       ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Call ``model(x, *additional)`` where per-sample tensors of ``additional`` follow the rows of ``x``;
    ``additional_forward_args`` is Captum's: ``None``, a tuple of arguments, or a single argument."""
    if additional_forward_args is None:
        additional: tuple[Any, ...] = ()
    elif isinstance(additional_forward_args, tuple):
        additional = additional_forward_args
    else:
        additional = (additional_forward_args,)

    def forward(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        args = [a[rows] if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == batch else a
                for a in additional]
        return model(x, *args)

    return forward


def _seeded(seed: int | None, device: torch.device) -> contextlib.AbstractContextManager:
    if seed is None:
        return contextlib.nullcontext()
    devices = [device.index or 0] if device.type == "cuda" else []
    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=devices))
    torch.manual_seed(seed)
    return stack


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
    max_blur: float = 20.0,
    step: int = 7,
    sigma: float = 21.0,
    temperature: float = 20.0,
    jitter: bool = True,
    spill: bool = True,
    area_domain: str = "image",
    init: float = 1.0,
    max_iter: int = 70,
    learning_rate: float = 0.08,
    final_learning_rate: float = 0.005,
    regul_weight: float = 5.0,
    final_regul_weight: float = 1500.0,
    reward_scale: float | None = None,
    tol: float = 2e-3,
    patience: int = 10,
    min_iter: int = 0,
    area_tol: float = 0.01,
    exact_area: bool = True,
    smooth: float = 0.0,
    resize: tuple[int, int] | None = None,
    resize_mode: str = "bilinear",
    additional_forward_args: Sequence[Any] | Any = None,
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
        num_levels, max_blur: levels and strongest blur of the perturbation pyramid (paper: 8 and 20).
        step, sigma, temperature: the smooth mask generator (paper: 7, 21 and 20).
        jitter: flip the perturbed batch horizontally every other iteration (as in the paper's code).
        spill: evaluate the mask on a margin of ``sigma`` pixels around the image (as the paper's code does)
            and count mask mass there against the area, so masks do not hide their edges outside the image.
        area_domain: ``"image"``: the areas are fractions of the image (the margin only adds cost for mask mass
            spilling over the border); ``"extended"``: fractions of the image plus margin, the reference
            implementation's convention, which lets the masks cover more than the area of the image.
        init: initial value of the mask parameters.
        max_iter, learning_rate, final_learning_rate: iteration budget and step size (warm-up, then cosine
            decay); see :mod:`xai_plugins.extremal.optimiser`.
        regul_weight, final_regul_weight: start and end weight of the area constraint (geometric growth), in
            units of the reward's scale. 5 to 1500 is 100 to 3e4 for a model whose reward spans 20 logits, as
            the ResNet-50 they were tuned on: a softer start than the reference's 300 gives the short run time
            to place the mask before the constraint fixes it.
        reward_scale: the reward is divided by it, so the balance between reward and area constraint does not
            depend on the scale of the model's scores. ``None``: per sample, ``|R(x) - R(x')|``, the reward of
            the image minus that of the fully perturbed image ``x'`` (1 where they are equal). ``20.0`` gives
            the fixed scale of the previous versions, which used the raw reward with weights 100 to 3e4.
        tol, patience, min_iter, area_tol: a sample stops when no mask value changed by ``tol`` or more for
            ``patience`` iterations in a row and every mask is within ``area_tol`` of its area, but not before
            ``min_iter``. ``tol=0`` disables early stopping.
        exact_area: after the last iteration, shift each mask's parameters by one offset (found by bisection,
            without running the model) so that its mean is the requested area within 1e-4, in the convention of
            ``area_domain``; the rewards are those of the shifted masks. The paper's masks satisfy the area
            exactly; the ranking penalty alone leaves about 1% of the image. ``False`` keeps the optimised masks.
        smooth: blur the final masks with std ``smooth * min(H, W)`` (0: off).
        resize: resize the final masks to ``(H', W')``.
        additional_forward_args: extra positional arguments of ``model``; tensors with N rows follow the batch.
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
    if reward_scale is not None and not reward_scale > 0:
        raise ValueError(f"reward_scale must be a positive number or None; got {reward_scale!r}")
    if area_domain not in ("image", "extended"):
        raise ValueError(f"area_domain must be 'image' or 'extended'; got {area_domain!r}")
    inputs = check_images(inputs)
    batch, _, height, width = inputs.shape
    targets = check_targets(target, batch, inputs.device)
    schedule = Schedule(max_iter=max_iter, learning_rate=learning_rate, final_learning_rate=final_learning_rate,
                        regul_weight=regul_weight, final_regul_weight=final_regul_weight, tol=tol, patience=patience,
                        min_iter=min_iter, area_tol=area_tol, **schedule_options)
    generator = SmoothMaskGenerator((height, width), step, sigma, temperature, device=inputs.device,
                                    dtype=inputs.dtype)
    forward = _forward_with_rows(model, additional_forward_args, batch)
    num_areas = len(areas)
    sample_of_row = torch.arange(batch, device=inputs.device).repeat_interleave(num_areas)
    area_of_row = torch.tensor(areas, device=inputs.device, dtype=inputs.dtype).repeat(batch)
    inputs = inputs.detach()

    with explaining(model), _seeded(seed, inputs.device), torch.enable_grad():
        every = torch.arange(batch, device=inputs.device)
        with torch.no_grad():
            clean = forward(inputs, every)
            check_outputs(clean, targets)
        pyramid = build_pyramid(inputs, num_levels, perturbation, max_blur)
        if reward_scale is None:
            with torch.no_grad():
                spread = (reward_fn(clean, targets) - reward_fn(forward(pyramid[:, 0], every), targets)).abs()
            scale = torch.where(spread > 0, spread, torch.ones_like(spread))[sample_of_row]
        else:
            scale = torch.full_like(area_of_row, float(reward_scale))
        margin = round(sigma) if spill else 0
        size = (height + 2 * margin) * (width + 2 * margin)
        counted = height * width if area_domain == "image" else size
        reference = area_reference(areas, size, counted, inputs.device, inputs.dtype).repeat(batch, 1)
        params = torch.full((batch * num_areas, *generator.param_shape), float(init), device=inputs.device,
                            dtype=inputs.dtype)
        optimiser = MaskAdam(params, batch, schedule)
        last = torch.zeros(batch * num_areas, height, width, device=inputs.device, dtype=inputs.dtype)
        with progress_bar(schedule.max_iter, progress, "extremal perturbation") as bar:
            while not optimiser.done:
                rows = optimiser.active_rows()
                theta = params[rows].requires_grad_(True)
                extended = generator.generate(theta, margin)
                masks = extended[:, margin: margin + height, margin: margin + width]
                samples = sample_of_row[rows]
                outputs = _perturbed_outputs(forward, pyramid, masks, samples, variant,
                                             flip=jitter and optimiser.t % 2 == 0)
                gains = _variant_reward(reward_fn, outputs, targets[samples], variant)
                if not torch.isfinite(gains).all():
                    raise FloatingPointError(
                        f"extremal perturbation: the reward became non-finite at iteration {optimiser.t}; the "
                        "model produces NaN or inf on perturbed inputs. Check the model, or use "
                        "perturbation='fade'")
                energy = gains / scale[rows] - schedule.regul_at(optimiser.t) * area_penalty(extended, reference[rows])
                (grad,) = torch.autograd.grad(energy.sum(), theta)
                masks = masks.detach()
                settled = None
                if optimiser.t:
                    change = (masks - last[rows]).abs().flatten(1).amax(dim=1)
                    measured = masks if area_domain == "image" else extended.detach()
                    area_error = (measured.flatten(1).mean(dim=1) - area_of_row[rows]).abs()
                    settled = (change < schedule.tol) & (area_error < schedule.area_tol)
                last[rows] = masks
                optimiser.step(rows, grad, settled)
                bar.update(1)
                bar.set_postfix(active=int(optimiser.active.sum()))
        converged = ~optimiser.active
        if exact_area:
            params = match_area(generator, params, area_of_row, margin, count_margin=area_domain == "extended")
        with torch.no_grad():
            final = generator.generate(params)
            outputs = _perturbed_outputs(forward, pyramid, final, sample_of_row, variant, flip=False)
            rewards = _variant_reward(reward_fn, outputs, targets[sample_of_row], variant)
            achieved = final.flatten(1).mean(dim=1)

    masks = final[:, None]
    if smooth > 0:
        masks = gaussian_blur(masks, smooth * min(height, width))
    if resize is not None:
        masks = F.interpolate(masks, size=tuple(resize), mode=resize_mode,
                              **({"align_corners": False} if resize_mode in ("bilinear", "bicubic") else {}))
    return ExtremalResult(
        masks=masks.reshape(batch, num_areas, 1, *masks.shape[-2:]),
        rewards=rewards.reshape(batch, num_areas),
        areas_achieved=achieved.reshape(batch, num_areas),
        iterations=optimiser.iterations.clone(),
        areas=areas,
        converged=converged,
    )


def _perturbed_outputs(forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], pyramid: torch.Tensor,
                       masks: torch.Tensor, samples: torch.Tensor, variant: str, flip: bool) -> torch.Tensor:
    """Model outputs on the perturbed images; for ``dual`` the preserved rows come first, then the deleted."""
    if variant == "preserve":
        x = apply_pyramid(pyramid, masks, samples)
    elif variant == "delete":
        x = apply_pyramid(pyramid, 1 - masks, samples)
    else:
        x = torch.cat((apply_pyramid(pyramid, masks, samples), apply_pyramid(pyramid, 1 - masks, samples)))
        samples = torch.cat((samples, samples))
    if flip:
        x = torch.flip(x, dims=(3,))
    return forward(x, samples)


def _variant_reward(reward_fn: Reward, outputs: torch.Tensor, targets: torch.Tensor, variant: str) -> torch.Tensor:
    """Per-row reward of the variant from the model outputs of :func:`_perturbed_outputs`."""
    if variant == "preserve":
        return reward_fn(outputs, targets)
    if variant == "delete":
        return -reward_fn(outputs, targets)
    rows = targets.shape[0]
    return reward_fn(outputs[:rows], targets) - reward_fn(outputs[rows:], targets)
