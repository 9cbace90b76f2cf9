"""The one optimisation loop of extremal perturbations, shared by input masks and channel masks.

A :class:`MaskProblem` says how parameters become masks and how the model sees a mask; everything else is here
and therefore identical for both variants:

- **Reward convention.** The reward of a row is divided by its sample's *reward span* ``|R(x) - R(x')|``, the
  reward with nothing perturbed minus the reward with everything perturbed (1 where they are equal), unless a
  fixed ``reward_scale`` is given. The area weights are therefore in units of the span: the masks do not change
  when the model's scores are multiplied by a constant, and ``regul_weight`` means the same in both variants.
- **Area constraint** (paper, Sec. 3.2): with ``r_a`` the sorted vector whose last ``round(a n)`` entries are 1
  and the others 0, the penalty is ``mean((sort(m) - r_a)**2)`` over the mask values ``m``; it is zero exactly
  for a binary mask of area ``a``. Its weight grows geometrically from ``regul_weight`` to
  ``final_regul_weight`` over ``max_iter`` iterations: soft early (exploration), hard at the end.
- **Steps.** Each mask row takes Adam-like steps whose second moment is the mean squared gradient over the whole
  row (one scalar per mask, not per parameter): the step size does not depend on the scale of the gradient,
  while the relative magnitudes inside a mask, which decide where it grows, are kept (per-parameter Adam
  equalises them and lets the area penalty fix the mask before the reward has ordered the pixels). The
  learning rate warms up linearly, then decays on a cosine. Parameters stay in [0, 1].
- **Stopping.** A mask row stops once it changed by less than ``tol`` for ``patience`` iterations and is
  within ``area_tol`` of its area; it leaves the batch, so the model runs on fewer rows. Every quantity is per
  row or per sample and the iteration index is global, so a sample's result does not depend on the other
  samples of its batch.
- **Model passes.** The active rows go through the model in passes of at most ``values_per_pass`` input
  values (:func:`row_passes`; default :data:`VALUES_PER_PASS`). Each row's energy is its own, so splitting a
  batch into passes changes no gradient; it keeps a large batch as fast per image as single calls on a CPU,
  where one pass over many large images costs more per image than several smaller passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch

from xai_plugins.extremal.progress import progress_bar
from xai_plugins.extremal.rewards import Reward

VALUES_PER_PASS: int | None = 3 * 3 * 224 * 224
"""The default ``values_per_pass``, input values per model pass: three RGB images at 224², the paper's three
areas of one image. On a CPU one
ResNet-50 forward and backward pass costs about 240 ms per 224² image with one to three images per pass, 300 ms
with six and 370 ms with twelve (one thread), while at 64² a pass over 48 images costs half as much per image as
one over three; ``python benchmarks/bench_extremal.py`` measures batching against single calls."""


def check_values_per_pass(values_per_pass: object) -> int | None:
    """``values_per_pass`` if it is a positive int or None, else a ValueError that says what it means."""
    if values_per_pass is None or (isinstance(values_per_pass, int) and not isinstance(values_per_pass, bool)
                                   and values_per_pass > 0):
        return values_per_pass
    raise ValueError(f"values_per_pass is the most input values one model pass may hold, a positive int, or None "
                     f"for one pass over all active rows (e.g. on a GPU); got {values_per_pass!r}")


def row_passes(rows: torch.Tensor, row_size: int, variant: str,
               values_per_pass: int | None = VALUES_PER_PASS) -> tuple[torch.Tensor, ...]:
    """``rows`` split into consecutive chunks whose model pass holds at most ``values_per_pass`` input values
    (``row_size`` per row, twice that for ``dual``, which runs each row preserved and deleted), at least one row
    per pass; ``None`` makes one pass (e.g. on a GPU, where larger passes are cheaper)."""
    if values_per_pass is None:
        return (rows,)
    per_row = row_size * (2 if variant == "dual" else 1)
    return rows.split(max(1, values_per_pass // max(per_row, 1)))


def area_reference(areas: tuple[float, ...], size: int, image_size: int, device: torch.device,
                   dtype: torch.dtype) -> torch.Tensor:
    """(len(areas), size) sorted target vectors: zeros, then ``round(area * image_size)`` ones.

    ``size`` counts the mask values the constraint sees (the image and its margin), ``image_size`` the image
    pixels the areas are fractions of."""
    ref = torch.zeros(len(areas), size, device=device, dtype=dtype)
    for i, area in enumerate(areas):
        ones = min(int(round(area * image_size)), size)
        if ones:
            ref[i, size - ones:] = 1
    return ref


def area_penalty(masks: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-row ``mean((sort(mask) - reference)**2)`` for masks (B, ...) and reference rows (B, n)."""
    flat = masks.reshape(masks.shape[0], -1)
    return ((flat.sort(dim=1).values - reference) ** 2).mean(dim=1)


@dataclass
class Schedule:
    """Iteration budget, step sizes, area weights and stopping rule of the mask optimisation."""

    max_iter: int = 80
    learning_rate: float = 0.08
    final_learning_rate: float = 0.005
    regul_weight: float = 5.0
    final_regul_weight: float = 1500.0
    beta1: float = 0.9
    beta2: float = 0.99
    tol: float = 2e-3
    patience: int = 10
    min_iter: int = 0
    normalise: bool = True
    warmup: float = 0.1
    area_tol: float = 0.01

    def __post_init__(self) -> None:
        if int(self.max_iter) != self.max_iter or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer; got {self.max_iter!r}")
        if not (self.learning_rate > 0 and self.final_learning_rate > 0):
            raise ValueError("learning_rate and final_learning_rate must be positive")
        if not (self.regul_weight > 0 and self.final_regul_weight > 0):
            raise ValueError("regul_weight and final_regul_weight must be positive")
        if self.tol < 0 or self.patience < 1:
            raise ValueError("tol must be >= 0 and patience >= 1")

    def regul_at(self, t: int) -> float:
        """Regulariser weight at iteration ``t``: geometric from ``regul_weight`` to ``final_regul_weight``."""
        frac = t / max(self.max_iter - 1, 1)
        return self.regul_weight * (self.final_regul_weight / self.regul_weight) ** frac

    def lr_at(self, t: int) -> float:
        """Learning rate at iteration ``t``: linear warm-up, then cosine to ``final_learning_rate``."""
        frac = t / max(self.max_iter - 1, 1)
        if frac < self.warmup:
            return self.learning_rate * (t + 1) / (self.warmup * self.max_iter + 1)
        return self.final_learning_rate + 0.5 * (self.learning_rate - self.final_learning_rate) * (
            1 + math.cos(math.pi * frac))


class MaskAdam:
    """Adam-like ascent with one second moment per mask row, parameters clamped to [0, 1], and early stopping
    per row: a row whose mask has settled leaves the batch, so converged masks cost no further model passes.
    Rows are grouped by sample (``rows_per_sample`` consecutive rows each)."""

    def __init__(self, params: torch.Tensor, samples: int, schedule: Schedule) -> None:
        self.params = params
        self.rows_per_sample = params.shape[0] // samples
        self.schedule = schedule
        self.m = torch.zeros_like(params)
        self.v = torch.zeros(params.shape[0], *([1] * (params.dim() - 1)), device=params.device,
                             dtype=params.dtype)
        rows = params.shape[0]
        self.active = torch.ones(rows, dtype=torch.bool, device=params.device)
        self.row_iterations = torch.zeros(rows, dtype=torch.long, device=params.device)
        self.calm = torch.zeros(rows, dtype=torch.long, device=params.device)
        self.t = 0

    def active_rows(self) -> torch.Tensor:
        """Indices of the parameter rows still being optimised."""
        return self.active.nonzero().flatten()

    def step(self, rows: torch.Tensor, grad: torch.Tensor, settled: torch.Tensor | None) -> None:
        """One ascent step on ``rows`` with ``grad`` (the gradient of the energy); ``settled`` says per row
        whether its mask has stopped changing and meets its area (None on the first iteration)."""
        s = self.schedule
        t = self.t + 1
        m = self.m[rows].mul_(s.beta1).add_(grad, alpha=1 - s.beta1)
        power = grad.pow(2).flatten(1).mean(dim=1).reshape(-1, *([1] * (grad.dim() - 1)))
        v = self.v[rows].mul_(s.beta2).add_(power, alpha=1 - s.beta2)
        self.m[rows] = m
        self.v[rows] = v
        m_hat = m / (1 - s.beta1 ** t)
        v_hat = v / (1 - s.beta2 ** t)
        if s.normalise:
            update = s.lr_at(self.t) * m_hat / (v_hat.sqrt() + 1e-12)
        else:
            update = s.lr_at(self.t) * m_hat
        self.params[rows] = (self.params[rows] + update).clamp_(0, 1)
        self.row_iterations[rows] += 1
        if settled is not None:
            calm = torch.where(settled, self.calm[rows] + 1, torch.zeros_like(self.calm[rows]))
            self.calm[rows] = calm
            if t >= s.min_iter:
                self.active[rows[calm >= s.patience]] = False
        self.t = t

    @property
    def iterations(self) -> torch.Tensor:
        """(N,) iterations of each sample: the most any of its rows ran."""
        return self.row_iterations.reshape(-1, self.rows_per_sample).amax(dim=1)

    @property
    def converged(self) -> torch.Tensor:
        """(N,) whether every row of the sample stopped early."""
        return (~self.active).reshape(-1, self.rows_per_sample).all(dim=1)

    @property
    def done(self) -> bool:
        """True when every row has converged or the budget is spent."""
        return self.t >= self.schedule.max_iter or not bool(self.active.any())


class Masks(NamedTuple):
    """What one parameterisation makes of its parameters.

    ``model``: the masks the model sees (1 = kept by ``preserve``), one row per parameter row; ``penalised``:
    the values the area penalty ranks, (B, n); ``area``: (B,) the area each row achieves, in the convention of
    the requested areas."""

    model: torch.Tensor
    penalised: torch.Tensor
    area: torch.Tensor


class MaskProblem(Protocol):
    """A mask parameterisation: pixels of an image, or channels of a layer."""

    row_size: int
    """Input values one row feeds through the model (the size of one input sample)."""

    values_per_pass: int | None
    """Input values one model pass may hold at most (:func:`row_passes`)."""

    def masks(self, params: torch.Tensor) -> Masks:
        """Masks of parameter rows (B, ...), differentiable in ``params``."""

    def outputs(self, samples: torch.Tensor, masks: torch.Tensor, t: int | None) -> torch.Tensor:
        """Model outputs for the rows ``samples`` with ``masks`` (model masks, 1 = kept); ``t`` is the
        iteration (``None`` outside the optimisation, e.g. for the final rewards)."""

    def everything(self, rows: int, value: float) -> torch.Tensor:
        """``rows`` model masks that keep everything (``value=1``) or nothing (``value=0``)."""


def variant_outputs(problem: MaskProblem, samples: torch.Tensor, masks: torch.Tensor, variant: str,
                    t: int | None) -> torch.Tensor:
    """Outputs of one model pass for a variant; for ``dual`` the preserved rows come first, then the deleted."""
    if variant == "preserve":
        return problem.outputs(samples, masks, t)
    if variant == "delete":
        return problem.outputs(samples, 1 - masks, t)
    return problem.outputs(torch.cat((samples, samples)), torch.cat((masks, 1 - masks)), t)


def variant_reward(reward_fn: Reward, outputs: torch.Tensor, targets: torch.Tensor, variant: str) -> torch.Tensor:
    """Per-row reward of the variant from the outputs of :func:`variant_outputs`."""
    if variant == "preserve":
        return reward_fn(outputs, targets)
    if variant == "delete":
        return -reward_fn(outputs, targets)
    rows = targets.shape[0]
    return reward_fn(outputs[:rows], targets) - reward_fn(outputs[rows:], targets)


def reward_span(problem: MaskProblem, reward_fn: Reward, targets: torch.Tensor) -> torch.Tensor:
    """Per sample ``|R(x) - R(x')|``: the reward with everything kept minus with everything perturbed, 1 where
    they are equal (the unit the area weights are expressed in)."""
    spans = []
    with torch.no_grad():
        everyone = torch.arange(targets.shape[0], device=targets.device)
        for samples in row_passes(everyone, problem.row_size, "preserve", problem.values_per_pass):
            kept, gone = (reward_fn(problem.outputs(samples, problem.everything(len(samples), value), None),
                                    targets[samples]) for value in (1.0, 0.0))
            spans.append(kept - gone)
    spread = torch.cat(spans).abs()
    return torch.where(spread > 0, spread, torch.ones_like(spread))


def reward_scale_of_rows(problem: MaskProblem, reward_fn: Reward, targets: torch.Tensor,
                         sample_of_row: torch.Tensor, reward_scale: float | None) -> torch.Tensor:
    """The divisor of each row's reward: the sample's reward span, or the fixed ``reward_scale``."""
    if reward_scale is None:
        return reward_span(problem, reward_fn, targets)[sample_of_row]
    if not reward_scale > 0:
        raise ValueError(f"reward_scale must be a positive number or None; got {reward_scale!r}")
    return torch.full(sample_of_row.shape, float(reward_scale), device=targets.device)


@dataclass
class Objective:
    """Everything the loop needs besides the parameterisation: per-row targets, areas, reward divisors."""

    reward_fn: Reward
    variant: str
    targets: torch.Tensor  # (N,)
    sample_of_row: torch.Tensor  # (B,)
    area_of_row: torch.Tensor  # (B,)
    reference: torch.Tensor  # (B, n) sorted area targets
    scale: torch.Tensor  # (B,) reward divisors
    name: str = "extremal perturbation"


def _energy(problem: MaskProblem, objective: Objective, schedule: Schedule, rows: torch.Tensor,
            theta: torch.Tensor, t: int) -> tuple[torch.Tensor, Masks]:
    """Per-row energy ``reward / scale - weight(t) * area_penalty`` and the masks it was computed on."""
    masks = problem.masks(theta)
    samples = objective.sample_of_row[rows]
    outputs = variant_outputs(problem, samples, masks.model, objective.variant, t)
    gains = variant_reward(objective.reward_fn, outputs, objective.targets[samples], objective.variant)
    if not torch.isfinite(gains).all():
        raise FloatingPointError(f"{objective.name}: the reward became non-finite at iteration {t}; the model "
                                 "produces NaN or inf on perturbed inputs. Check the model, or use a milder "
                                 "perturbation (e.g. perturbation='fade')")
    penalty = area_penalty(masks.penalised, objective.reference[rows])
    return gains / objective.scale[rows] - schedule.regul_at(t) * penalty, masks


def _settled(model_masks: torch.Tensor, areas: torch.Tensor, last: torch.Tensor, objective: Objective,
             schedule: Schedule, rows: torch.Tensor) -> torch.Tensor:
    """Per row: the mask changed by less than ``tol`` since the last iteration and meets its area."""
    change = (model_masks - last[rows]).abs().flatten(1).amax(dim=1)
    area_error = (areas - objective.area_of_row[rows]).abs()
    return (change < schedule.tol) & (area_error < schedule.area_tol)


def _ascent_direction(problem: MaskProblem, objective: Objective, schedule: Schedule, params: torch.Tensor,
                      rows: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The energy's gradient at ``params[rows]``, the model masks and their areas, pass by pass
    (:func:`row_passes`)."""
    grads: list[torch.Tensor] = []
    model_masks: list[torch.Tensor] = []
    areas: list[torch.Tensor] = []
    for chunk in row_passes(rows, problem.row_size, objective.variant, problem.values_per_pass):
        theta = params[chunk].requires_grad_(True)
        energy, masks = _energy(problem, objective, schedule, chunk, theta, t)
        grads.extend(torch.autograd.grad(energy.sum(), theta))
        model_masks.append(masks.model.detach())
        areas.append(masks.area.detach())
    return torch.cat(grads), torch.cat(model_masks), torch.cat(areas)


def optimise(problem: MaskProblem, objective: Objective, schedule: Schedule, params: torch.Tensor,
             progress: bool = False,
             on_step: Callable[[int, torch.Tensor], None] | None = None) -> MaskAdam:
    """Ascend the energy of every row of ``params`` (updated in place) until each sample has converged or the
    budget is spent; returns the optimiser (iterations, convergence). ``on_step(t, rows)`` is called after each
    step (used by tests and benchmarks to observe the run)."""
    samples = objective.targets.shape[0]
    optimiser = MaskAdam(params, samples, schedule)
    last: torch.Tensor | None = None
    with progress_bar(schedule.max_iter, progress, objective.name) as bar, torch.enable_grad():
        while not optimiser.done:
            rows = optimiser.active_rows()
            grad, model_masks, areas = _ascent_direction(problem, objective, schedule, params, rows, optimiser.t)
            if last is None:
                last = torch.zeros(params.shape[0], *model_masks.shape[1:], device=params.device,
                                   dtype=model_masks.dtype)
                settled = None
            else:
                settled = _settled(model_masks, areas, last, objective, schedule, rows)
            last[rows] = model_masks
            optimiser.step(rows, grad, settled)
            if on_step is not None:
                on_step(optimiser.t, rows)
            bar.update(1)
            bar.set_postfix(active=int(optimiser.active.sum()))
    return optimiser


def final_rewards(problem: MaskProblem, objective: Objective, masks: torch.Tensor,
                  rows_of_masks: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) reward of final model masks, in the model's own units (not divided by the scale): mask ``i`` is
    scored for objective row ``rows_of_masks[i]`` (its sample and target; default: row ``i``)."""
    rewards = []
    of_row = torch.arange(masks.shape[0], device=masks.device) if rows_of_masks is None else rows_of_masks
    with torch.no_grad():
        for rows in row_passes(torch.arange(masks.shape[0], device=masks.device), problem.row_size,
                               objective.variant, problem.values_per_pass):
            samples = objective.sample_of_row[of_row[rows]]
            outputs = variant_outputs(problem, samples, masks[rows], objective.variant, None)
            rewards.append(variant_reward(objective.reward_fn, outputs, objective.targets[samples],
                                          objective.variant))
    return torch.cat(rewards)
