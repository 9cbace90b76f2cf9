"""Smooth masks of Fong, Patrick and Vedaldi (ICCV 2019): a low-resolution parameter grid turned into a smooth
full-resolution mask by a smooth max over radial bumps.

Parameter ``p[i, j]`` sits at pixel ``(step * i, step * j)``. Pixel ``v`` sees the parameters of the
``(2r + 1)**2`` grid nodes around its cell ``v // step`` (``r = 1 + ceil(sigma / step)``, nodes outside the grid
count as 0), each scaled by the bump ``k(d) = exp(-2 * max(d / sigma - 1/2, 0)**2)`` of its distance ``d``, and
takes their smooth maximum ``sum_k z_k softmax(T z)_k`` with temperature ``T`` (20 in the paper).

Because the step divides the grid, the bump weights depend only on the offset of a pixel inside its cell, so
they are a ``(step, step, K)`` table shared by every cell (the reference stores one weight per output pixel and
neighbour). The smooth max is a custom autograd function that keeps only the cell-resolution neighbourhoods and
the result for the backward pass, instead of the ``K`` full-resolution intermediates autograd would store.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _bump(distance: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.exp(-2 * (distance / sigma - 0.5).clamp(min=0) ** 2)


CHUNK_ELEMENTS = 1 << 16  # neighbour terms per block of the smooth max: 256 kB, so a block stays in cache


def _row_blocks(neighbours: torch.Tensor, weights: torch.Tensor) -> list[slice]:
    """Slices of cell rows such that each block of ``z`` holds about :data:`CHUNK_ELEMENTS` terms."""
    batch, height, width, terms = neighbours.shape
    per_row = max(batch * width * weights.shape[0] * weights.shape[1] * terms, 1)
    rows = max(1, CHUNK_ELEMENTS // per_row)
    return [slice(start, min(start + rows, height)) for start in range(0, height, rows)]


class _SmoothMax(torch.autograd.Function):
    """``f = sum_k z_k softmax(T z)_k`` with ``z = neighbours * weights``, computed cell by cell.

    Shapes: ``neighbours`` (B, h, w, K) at cell resolution, ``weights`` (s, s, K); output (B, h, s, w, s).
    The neighbour axis is last so reductions run over contiguous memory. The mask optimisation keeps the
    parameters in [0, 1] and the weights are in [0, 1], so ``T z`` stays small enough for ``exp`` without the
    usual max subtraction (the caller falls back to a stable softmax otherwise). The backward pass recomputes
    ``z`` and uses ``df/dz_k = e_k / S (1 + T (z_k - f))`` with ``e = exp(T z)`` and ``S = sum_k e_k``, so only
    cell-resolution tensors and the (B, H, W) results are kept between the passes. Both passes run over blocks
    of cell rows (:func:`_row_blocks`): the full ``(B, H, W, K)`` intermediates would be tens of megabytes each,
    and allocating and streaming them through memory costs more than the arithmetic; the blocks stay in cache
    and reuse their memory. Every value is computed by the same operations either way.
    """

    @staticmethod
    def forward(ctx, neighbours: torch.Tensor, weights: torch.Tensor, temperature: float) -> torch.Tensor:
        batch, height, width, _ = neighbours.shape
        step = weights.shape[0]
        out = neighbours.new_empty(batch, height, step, width, step)
        total = neighbours.new_empty(batch, height, step, width, step)
        w = weights[None, None, :, None, :, :]
        for rows in _row_blocks(neighbours, weights):
            z = neighbours[:, rows, None, :, None, :] * w
            e = (z * temperature).exp_()
            torch.sum(e, dim=-1, out=total[:, rows])
            out[:, rows] = z.mul_(e).sum(dim=-1).div_(total[:, rows])
        ctx.save_for_backward(neighbours, weights, out, total)
        ctx.temperature = temperature
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        neighbours, weights, out, total = ctx.saved_tensors
        temperature = ctx.temperature
        w = weights[None, None, :, None, :, :]
        grad = torch.empty_like(neighbours)
        scaled = grad_out / total
        for rows in _row_blocks(neighbours, weights):
            tz = (neighbours[:, rows, None, :, None, :] * w).mul_(temperature)
            e = tz.exp()
            grad_z = tz.add_((1 - temperature * out[:, rows])[..., None]).mul_(e).mul_(w)
            grad_z.mul_(scaled[:, rows, ..., None])
            torch.sum(grad_z, dim=(2, 4), out=grad[:, rows])
        return grad, None, None


def _smooth_max_stable(neighbours: torch.Tensor, weights: torch.Tensor, temperature: float) -> torch.Tensor:
    """The same smooth max for any parameter range (or the hard max for ``T = inf``), through autograd."""
    z = neighbours[:, :, None, :, None, :] * weights[None, None, :, None, :, :]
    if math.isinf(temperature):
        return z.amax(dim=-1)
    return (z * torch.softmax(temperature * z, dim=-1)).sum(dim=-1)


class SmoothMaskGenerator:
    """Turns parameters of shape (B, ceil(H / step), ceil(W / step)) into smooth masks of shape (B, H, W).

    Args:
        shape: output size ``(H, W)``.
        step: distance in pixels between parameter nodes (7 in the paper).
        sigma: bump radius in pixels (21 in the paper).
        temperature: softmax temperature of the smooth max (20 in the paper; ``inf`` is the hard max).
        clamp: clamp the mask to [0, 1].
    """

    def __init__(self, shape: tuple[int, int], step: int = 7, sigma: float = 21.0, temperature: float = 20.0,
                 clamp: bool = True, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        if int(step) != step or step < 1:
            raise ValueError(f"step must be a positive integer number of pixels; got {step!r}")
        if not sigma > 0:
            raise ValueError(f"sigma must be a positive number of pixels; got {sigma!r}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.step = int(step)
        self.sigma = float(sigma)
        self.temperature = float(temperature)
        self.clamp = clamp
        self.radius = 1 + math.ceil(self.sigma / self.step)
        self.param_shape = (math.ceil(self.shape[0] / self.step), math.ceil(self.shape[1] / self.step))
        offsets = torch.arange(-self.radius, self.radius + 1, device=device, dtype=dtype) * self.step
        inside = torch.arange(self.step, device=device, dtype=dtype)
        dy = inside[None, :] - offsets[:, None]  # (2r+1, s): pixel offset minus node offset
        distance = torch.sqrt(dy[:, None, :, None] ** 2 + dy[None, :, None, :] ** 2)  # (2r+1, 2r+1, s, s)
        self.weights = _bump(distance, self.sigma).permute(2, 3, 0, 1).reshape(self.step, self.step, -1)

    def generate(self, params: torch.Tensor, margin: int = 0) -> torch.Tensor:
        """Masks (B, H + 2 margin, W + 2 margin) from parameters (B, h, w); differentiable in ``params``.

        With a margin the mask is also evaluated outside the image (grid nodes beyond the parameters are 0),
        so mask mass that spills over the border can be counted by the area constraint.
        """
        pad = math.ceil(margin / self.step)
        if pad:
            params = F.pad(params, (pad, pad, pad, pad))
        batch, h, w = params.shape
        size = 2 * self.radius + 1
        neighbours = F.unfold(params[:, None], size, padding=self.radius).reshape(batch, size * size, h, w)
        neighbours = neighbours.permute(0, 2, 3, 1).contiguous()
        weights = self.weights.to(params)
        if math.isfinite(self.temperature) and self.temperature * float(params.detach().abs().max()) <= 60:
            mask = _SmoothMax.apply(neighbours, weights, self.temperature)
        else:
            mask = _smooth_max_stable(neighbours, weights, self.temperature)
        start = pad * self.step - margin
        mask = mask.reshape(batch, h * self.step, w * self.step)
        mask = mask[:, start: start + self.shape[0] + 2 * margin, start: start + self.shape[1] + 2 * margin]
        return mask.clamp(0, 1) if self.clamp else mask


LEVEL_MARGIN = 1e-6  # levels stay this far inside (-1, 1), so the peak maps to exactly 1 in float32


def trim(masks: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """The masks (B, ...) with peak 1 mapped through the monotone family of ``level`` (B,) in [-1, 1]:
    ``clamp((m - u) / (1 - u), 0, 1)`` for ``u = level >= 0`` (the edge is trimmed, values 1 stay 1) and
    ``clamp(m / (1 + u), 0, 1)`` for ``u < 0`` (the edge grows, values 0 stay 0); ``level = 0`` is the identity.
    Every value is non-increasing in ``level``."""
    u = level.reshape(-1, *([1] * (masks.dim() - 1)))
    shrink = (masks - u.clamp(min=0)) / (1 - u.clamp(min=0)).clamp(min=1e-12)
    grow = masks / (1 + u.clamp(max=0)).clamp(min=1e-12)
    return torch.where(u >= 0, shrink, grow).clamp(0, 1)


def fit_area(masks: torch.Tensor, areas: torch.Tensor, counted: tuple[slice, slice] | None = None,
             tol: float = 1e-5, max_steps: int = 60) -> torch.Tensor:
    """Masks of exactly the requested areas that keep their peak at 1: the edge is trimmed (or grown), the
    kept region is not dimmed.

    The paper defines the extremal mask of area ``a`` under the hard constraint ``area(m) = a``; the ranking
    penalty only approaches it. Each mask (B, H', W') is divided by its peak and mapped through :func:`trim`,
    with the level found by bisection on (-1, 1) so that its mean over ``counted`` (rows and columns of the
    region the areas are fractions of; default the whole mask) is ``areas`` within ``tol``. Values at the peak
    stay 1 and values 0 stay 0, so the region the optimisation kept stays fully kept. Each row stops once within
    ``tol`` and is not touched afterwards, so a row's result does not depend on the other rows of the batch. An
    area that no level reaches (a plateau at the peak larger than the area, or a support smaller than it) ends
    at the nearest level the bisection finds.

    Args:
        masks: (B, H', W') masks in [0, 1].
        areas: (B,) requested mean of each mask over ``counted``.
        counted: the (rows, columns) slices of the masks the mean is taken over.
        tol: accepted absolute difference between the mean and the area.
        max_steps: bisection steps at most (each halves the interval of the level, starting at width 2).
    """
    rows_slice, cols_slice = counted if counted is not None else (slice(None), slice(None))
    peak = masks.flatten(1).amax(dim=1).clamp(min=1e-12)
    masks = (masks / peak[:, None, None]).clamp(0, 1)
    low = torch.full_like(areas, -1.0 + LEVEL_MARGIN)
    high = torch.full_like(areas, 1.0 - LEVEL_MARGIN)
    level = torch.zeros_like(areas)
    pending = torch.ones_like(areas, dtype=torch.bool)
    for _ in range(max_steps):
        rows = pending.nonzero().flatten()
        if rows.numel() == 0:
            break
        fitted = trim(masks[rows], level[rows])[:, rows_slice, cols_slice]
        error = fitted.flatten(1).mean(dim=1) - areas[rows]
        met = error.abs() <= tol
        pending[rows[met]] = False
        move = rows[~met]
        above = error[~met] > 0
        low[move[above]] = level[move[above]]
        high[move[~above]] = level[move[~above]]
        level[move] = (low[move] + high[move]) / 2
    return trim(masks, level)
