"""The optimisation shared by the spatial and the channel variants: the area constraint by ranking, the
growing regulariser weight, the optimiser of the mask parameters and per-sample early stopping.

Area constraint (paper, Sec. 3.2): with ``r_a`` the sorted vector whose last ``round(a n)`` entries are 1 and
the others 0, the penalty is ``mean((sort(m) - r_a)**2)`` over the mask values ``m``; it is zero exactly for a
binary mask of area ``a``. Its weight grows geometrically during the run, so the constraint is soft early
(exploration) and hard at the end. The reference grows 300 by 1.0035 per iteration over 800 iterations (to
about 4,900); here the weight goes from ``regul_weight`` to ``final_regul_weight`` over ``max_iter`` iterations
(100 to 3e4 for a reward spanning 20 logits; the input variant divides its reward by its span and uses 5 to 1500).
Starting at the reference's 300 with a 10x smaller budget fixed masks in poorer optima on some images (up to 27%
below the reference's reward); 100 keeps the exploration phase the reference gets from its slow growth.

The reference takes momentum SGD steps of size ``0.01 * gradient``, which is why it needs 800 iterations. Here
each mask takes Adam-like steps whose second moment is the mean squared gradient over the whole mask (one
scalar per mask, not per parameter): the step size no longer depends on the scale of the model's scores, while
the relative magnitudes inside a mask, which decide where the mask grows, are kept (per-parameter Adam
equalises them and lets the area penalty fix the mask before the reward has ordered the pixels). The learning
rate warms up linearly and then decays on a cosine. A sample stops early once all its masks have changed by
less than ``tol`` for ``patience`` iterations and are within ``area_tol`` of their areas; its rows then leave
the batch, so the model runs on fewer images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

DEFAULT_START_WEIGHT = 100.0


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
    """Iteration budget, step sizes and stopping rule of the mask optimisation."""

    max_iter: int = 80
    learning_rate: float = 0.08
    final_learning_rate: float = 0.005
    regul_weight: float = DEFAULT_START_WEIGHT
    final_regul_weight: float = 3e4
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
        """Learning rate at iteration ``t``: cosine from ``learning_rate`` to ``final_learning_rate``."""
        frac = t / max(self.max_iter - 1, 1)
        if frac < self.warmup:
            return self.learning_rate * (t + 1) / (self.warmup * self.max_iter + 1)
        return self.final_learning_rate + 0.5 * (self.learning_rate - self.final_learning_rate) * (
            1 + math.cos(math.pi * frac))


class MaskAdam:
    """Adam-like ascent with one second moment per mask row, parameters clamped to [0, 1], early stopping
    per sample (rows are grouped by sample)."""

    def __init__(self, params: torch.Tensor, samples: int, schedule: Schedule) -> None:
        self.params = params
        self.rows_per_sample = params.shape[0] // samples
        self.schedule = schedule
        self.m = torch.zeros_like(params)
        self.v = torch.zeros(params.shape[0], *([1] * (params.dim() - 1)), device=params.device,
                             dtype=params.dtype)
        self.active = torch.ones(samples, dtype=torch.bool, device=params.device)
        self.iterations = torch.zeros(samples, dtype=torch.long, device=params.device)
        self.calm = torch.zeros(samples, dtype=torch.long, device=params.device)
        self.t = 0

    def active_rows(self) -> torch.Tensor:
        """Indices of the parameter rows of the samples still being optimised."""
        return self.active.repeat_interleave(self.rows_per_sample).nonzero().flatten()

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
        samples = self.active.nonzero().flatten()
        self.iterations[samples] += 1
        if settled is not None:
            per_sample = settled.reshape(-1, self.rows_per_sample).all(dim=1)
            calm = torch.where(per_sample, self.calm[samples] + 1, torch.zeros_like(self.calm[samples]))
            self.calm[samples] = calm
            if t >= s.min_iter:
                self.active[samples[calm >= s.patience]] = False
        self.t = t

    @property
    def done(self) -> bool:
        """True when every sample has converged or the budget is spent."""
        return self.t >= self.schedule.max_iter or not bool(self.active.any())
