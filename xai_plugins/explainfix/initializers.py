"""The paper's initialisations of spatial filters, as ``init(shape, generator=None, **kwargs) -> Tensor``.

``shape`` is a convolution weight shape ``(out_channels, in_channels / groups, *kernel)``; each of the
``out * in`` spatial filters is drawn independently from ``generator``, so the same seed gives the same
filters. ``guided_steered`` is a factory: ``guided_steered(source)`` fits steering statistics to the spatial
filters of ``source`` (for example a model the user trained) and returns the initializer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from xai_plugins.explainfix.basis import basis_frequencies, dct_basis
from xai_plugins.explainfix.spatial import spatial_convs

__all__ = ["GuidedSteering", "dct_basis_init", "dct_steered", "ghaar", "guided_steered", "psine"]

_CHUNK = 1 << 15


def _split(shape: Iterable[int]) -> tuple[tuple[int, ...], int, tuple[int, ...]]:
    dims = tuple(int(s) for s in shape)
    if len(dims) < 3 or any(s < 1 for s in dims):
        raise ValueError(f"expected a convolution weight shape (out, in/groups, *kernel), got {dims!r}")
    kernel = dims[2:]
    if math.prod(kernel) < 2:
        raise ValueError(f"kernel {kernel!r} of shape {dims!r} is not spatial (1 element); ExplainFix "
                         "initialises kernels larger than 1x1 only")
    return dims, dims[0] * dims[1], kernel


def dct_basis_init(shape: Iterable[int], generator: torch.Generator | None = None) -> torch.Tensor:
    """Every spatial filter is one DCT-II basis filter (paper: "DCT2").

    Each output channel receives a random permutation of the basis over its input channels (cycling when
    there are more inputs than basis filters); with one input per group (depthwise) the permutation runs
    over output channels instead, so a layer covers the whole basis whenever it has enough filters.
    """
    dims, _, kernel = _split(shape)
    out, inp = dims[0], dims[1]
    nb = math.prod(kernel)
    if inp > 1:
        idx = torch.stack([torch.randperm(inp, generator=generator) % nb for _ in range(out)])
    else:
        idx = (torch.randperm(out, generator=generator) % nb).unsqueeze(1)
    return dct_basis(kernel)[idx].reshape(dims)


def _low_frequency_bases(kernel: tuple[int, ...], max_frequency: int) -> torch.Tensor:
    freqs = basis_frequencies(kernel)
    return torch.nonzero((freqs <= max_frequency).all(1)).squeeze(1)


def dct_steered(shape: Iterable[int], generator: torch.Generator | None = None, *,
                max_frequency: int = 1) -> torch.Tensor:
    """Random steering of the low-frequency DCT-II basis filters (paper: "DCT-steered", GHaar4.s1).

    Each filter is ``sum_j w_j B_j`` over the basis filters whose frequency on every axis is at most
    ``max_frequency`` (the 4 lowest of a 2-D kernel by default: constant, horizontal, vertical, diagonal),
    with independent standard-normal steering weights ``w_j``.
    """
    dims, n, kernel = _split(shape)
    if max_frequency < 1:
        raise ValueError(f"max_frequency must be at least 1, got {max_frequency}")
    chosen = _low_frequency_bases(kernel, max_frequency)
    basis = dct_basis(kernel).reshape(math.prod(kernel), -1)[chosen]
    weights = torch.randn(n, len(chosen), generator=generator)
    return (weights @ basis).reshape(dims)


def ghaar(shape: Iterable[int], generator: torch.Generator | None = None, *,
          max_frequency: float | None = None) -> torch.Tensor:
    """Generalised Haar filters (paper: "GHaar"): steered separable cosines of one random frequency.

    On each axis ``x_i = linspace(0, pi, n_i)``; every non-empty set ``S`` of axes contributes the separable
    term ``prod_{i in S} cos(f x_i)`` (horizontal, vertical and diagonal terms of a 2-D kernel) with weight
    ``U(-1, 1)``. The frequency ``f ~ U(0, max_frequency)`` (default ``2 (max(kernel) - 1)``, all scales) is
    shared by the terms of a filter. Filters are scaled to unit L2 norm.
    """
    dims, n, kernel = _split(shape)
    fmax = float(max_frequency) if max_frequency is not None else 2.0 * (max(kernel) - 1)
    d = len(kernel)
    subsets = [s for s in range(1, 2 ** d)]
    freq = torch.rand(n, generator=generator) * fmax
    weights = torch.rand(n, len(subsets), generator=generator) * 2 - 1
    out = torch.empty(n, *kernel)
    for start in range(0, n, _CHUNK):
        f = freq[start:start + _CHUNK]
        total = torch.zeros(len(f), *kernel)
        for j, subset in enumerate(subsets):
            term = torch.ones(len(f), *([1] * d))
            for axis, size in enumerate(kernel):
                if subset >> axis & 1:
                    x = torch.linspace(0, math.pi, size)
                    view = [len(f)] + [1] * d
                    view[axis + 1] = size
                    term = term * torch.cos(f[:, None] * x[None, :]).reshape(view)
            total = total + weights[start:start + _CHUNK, j].reshape(-1, *([1] * d)) * term
        out[start:start + _CHUNK] = total
    flat = out.reshape(n, -1)
    norm = flat.norm(dim=1, keepdim=True)
    flat = torch.where(norm > 0, flat / norm.clamp_min(1e-12), flat)
    return flat.reshape(dims)


def psine(shape: Iterable[int], generator: torch.Generator | None = None, *,
          max_terms: int = 16) -> torch.Tensor:
    """Polynomial sines (paper: "Psine"): ``sum_l w_l (prod_i sin(f_li x_i + t_li)) ** p_l``.

    Per filter: ``L`` terms, ``L = 3 + floor(2 ** U(0, log2(max_terms - 2)))`` at most ``max_terms``;
    ``x_i = linspace(0, pi, n_i)``; a maximum frequency ``U(1, 5)`` and frequencies ``f ~ U(0, max)``;
    phases ``t ~ U(0, 2 pi)``; integer powers ``p`` in ``[1, (L - 1) / 2]``; weights summing to one mapped to
    ``[-1, 1]``. Each filter is rescaled to ``[-1, 1]`` and then to unit L2 norm, as in the paper.
    """
    dims, n, kernel = _split(shape)
    if max_terms < 3:
        raise ValueError(f"max_terms must be at least 3, got {max_terms}")
    d = len(kernel)
    out = torch.empty(n, math.prod(kernel))
    for start in range(0, n, _CHUNK):
        m = min(_CHUNK, n - start)
        span = math.log2(max(max_terms - 2, 1))
        terms = (3 + torch.floor(2 ** (torch.rand(m, generator=generator) * span))).clamp(max=max_terms)
        active = torch.arange(max_terms)[None, :] < terms[:, None]
        fmax = 1 + 4 * torch.rand(m, 1, 1, generator=generator)
        freq = torch.rand(m, max_terms, d, generator=generator) * fmax
        phase = torch.rand(m, max_terms, d, generator=generator) * 2 * math.pi
        power = torch.round(torch.rand(m, max_terms, generator=generator)
                            * ((terms[:, None] - 1) / 2 - 1).clamp_min(0) + 1)
        weight = torch.rand(m, max_terms, generator=generator) * active
        weight = weight / weight.sum(1, keepdim=True) * 2 - 1
        weight = weight * active
        total = torch.ones(m, max_terms, *([1] * d))
        for axis, size in enumerate(kernel):
            x = torch.linspace(0, math.pi, size)
            wave = torch.sin(freq[..., axis, None] * x + phase[..., axis, None])
            view = [m, max_terms] + [1] * d
            view[axis + 2] = size
            total = total * wave.reshape(view)
        total = total ** power.reshape(m, max_terms, *([1] * d))
        filt = (weight.reshape(m, max_terms, *([1] * d)) * total).sum(1).reshape(m, -1)
        lo, hi = filt.min(1, keepdim=True).values, filt.max(1, keepdim=True).values
        filt = (filt - lo) / (hi - lo).clamp_min(1e-12) * 2 - 1
        out[start:start + m] = filt / filt.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return out.reshape(dims)


class GuidedSteering:
    """Guided steering (paper: "GuidedSteer"): DCT-II steering weights drawn like those of given filters.

    :meth:`fit` collects the spatial filters of a model (or takes filter tensors), expresses them in the
    DCT-II basis and keeps, per kernel shape, the mean and covariance of the coefficients (a Gaussian over
    steering weights: equivalent to the paper's SVD steering with the principal directions kept). Calling the
    fitted object with a weight shape samples new filters with those statistics.
    """

    def __init__(self, stats: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.stats = stats

    @classmethod
    def fit(cls, source: nn.Module | torch.Tensor | Iterable[torch.Tensor]) -> GuidedSteering:
        """Fit to the spatial filters of a model, one weight tensor, or several weight tensors."""
        if isinstance(source, nn.Module):
            tensors = [conv.weight.detach() for _, conv in spatial_convs(source)]
        elif isinstance(source, torch.Tensor):
            tensors = [source.detach()]
        else:
            tensors = [t.detach() for t in source]
        groups: dict[tuple[int, ...], list[torch.Tensor]] = {}
        for weight in tensors:
            if weight.dim() < 3 or math.prod(weight.shape[2:]) < 2:
                raise ValueError(f"guided steering fits spatial filters (out, in, *kernel); got a tensor of "
                                 f"shape {tuple(weight.shape)}")
            kernel = tuple(weight.shape[2:])
            groups.setdefault(kernel, []).append(weight.reshape(-1, math.prod(kernel)).double().cpu())
        if not groups:
            raise ValueError("guided steering needs at least one spatial filter to fit to")
        stats = {}
        for kernel, parts in groups.items():
            coeffs = torch.cat(parts) @ dct_basis(kernel, torch.float64).reshape(math.prod(kernel), -1).T
            mean = coeffs.mean(0)
            centred = coeffs - mean
            cov = centred.T @ centred / max(len(coeffs) - 1, 1)
            jitter = 1e-8 * max(cov.diagonal().mean().item(), 1e-12)
            chol = torch.linalg.cholesky(cov + jitter * torch.eye(len(cov), dtype=cov.dtype))
            stats[kernel] = (mean, chol)
        return cls(stats)

    def __call__(self, shape: Iterable[int], generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample filters of the weight shape ``shape`` whose DCT-II coefficients follow the fitted Gaussian."""
        dims, n, kernel = _split(shape)
        if kernel not in self.stats:
            known = ", ".join("x".join(map(str, k)) for k in self.stats)
            raise ValueError(f"guided steering was fitted to kernels {known}, not {'x'.join(map(str, kernel))}; "
                             "fit it to a model with spatial filters of that size")
        mean, chol = self.stats[kernel]
        noise = torch.randn(n, len(mean), generator=generator, dtype=torch.float64)
        coeffs = mean + noise @ chol.T
        basis = dct_basis(kernel, torch.float64).reshape(math.prod(kernel), -1)
        return (coeffs @ basis).float().reshape(dims)

    def __repr__(self) -> str:
        shapes = ", ".join("x".join(map(str, k)) for k in self.stats)
        return f"GuidedSteering(kernels: {shapes})"


def guided_steered(source: nn.Module | torch.Tensor | Iterable[torch.Tensor]) -> GuidedSteering:
    """Factory of the guided-steering initializer: fit to ``source``'s spatial filters, return ``init``.

    ``init = guided_steered(trained_model)`` then ``init(shape, generator)`` like every other initializer;
    ``fix_spatial_filters(model, "guided_steered", source=trained_model)`` does both steps.
    """
    return GuidedSteering.fit(source)
