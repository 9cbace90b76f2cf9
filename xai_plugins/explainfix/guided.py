"""Initializers fitted to the spatial filters of another model (a "source", e.g. one the user trained).

Each is a factory: ``guided_steered(source)``, ``svd_steered(source)`` or ``dct2_steered(source)`` collects the
source's spatial filters layer by layer and returns an initializer ``init(shape, generator=None, layer=None)``.
:func:`~.fixing.fix_spatial_filters` passes ``layer``, the index of the convolution among the model's spatial
convolutions, so layer ``l`` is drawn from the statistics of the source's layer ``l`` (the paper's per-layer
guidance). When the source has no layer ``l`` of that kernel shape, or ``layer`` is not given, the statistics
of all source filters of that kernel shape are used.

- ``guided_steered`` ([GuidedSteer]): a Gaussian kernel density estimate of the filters, Scott's bandwidth.
  The authors estimate it on the coefficients in the layer's own SVD basis; with the full basis that is an
  orthogonal change of coordinates, under which the estimate (sample covariance times Scott's factor) is the
  same distribution, so it is estimated on the filters directly. A sample is a source filter plus
  ``N(0, h^2 C)`` noise, ``C`` the sample covariance and ``h = n ** (-1 / (k + 4))`` for ``n`` filters of
  ``k`` elements. The noise is drawn through the eigen decomposition of ``C`` with negative rounding
  eigenvalues set to zero, so a rank-deficient source (fewer filters than elements, filters in a subspace,
  a single filter) samples inside its span instead of failing.
- ``svd_steered`` ([SVDsteering], non-centred): the right singular vectors ``V`` of all source filters of a
  kernel shape; per layer the mean and standard deviation of the steering weights ``F V``; a sample is
  ``(mean + std * N(0, 1)) V^T``.
- ``dct2_steered`` ([DCT2steering]): per layer the mean and standard deviation of the DCT-II coefficients; a
  sample is ``(mean + std * N(0, 1)) B``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from xai_plugins.explainfix.basis import dct_basis
from xai_plugins.explainfix.spatial import spatial_convs

__all__ = ["DCT2Steering", "FittedInitializer", "GuidedSteering", "SVDSteering", "dct2_steered",
           "guided_steered", "svd_steered"]

Source = nn.Module | torch.Tensor | Iterable[torch.Tensor]


def _layers(source: Source) -> list[torch.Tensor]:
    if isinstance(source, nn.Module):
        tensors = [conv.weight.detach() for _, conv in spatial_convs(source)]
    elif isinstance(source, torch.Tensor):
        tensors = [source.detach()]
    else:
        tensors = [t.detach() for t in source]
    for weight in tensors:
        if weight.dim() < 3 or math.prod(weight.shape[2:]) < 2:
            raise ValueError(f"a fitted initializer fits spatial filters (out, in, *kernel); got a tensor of "
                             f"shape {tuple(weight.shape)}")
    if not tensors:
        raise ValueError("a fitted initializer needs at least one spatial filter to fit to")
    return tensors


def _flat(weight: torch.Tensor) -> torch.Tensor:
    return weight.reshape(-1, math.prod(weight.shape[2:])).to(torch.float64).cpu()


@dataclass
class _Fit:
    kernel: tuple[int, ...]
    filters: torch.Tensor


class FittedInitializer:
    """Statistics of a source's spatial filters per layer and per kernel shape; samples new filters.

    Subclasses define :meth:`_stats` (from a kernel shape and an ``(n, k)`` float64 filter matrix; for a
    layer also the pooled statistics of its kernel shape, ``None`` for the pooled ones) and :meth:`_sample`.
    """

    per_layer = True
    """:func:`~.fixing.fix_spatial_filters` passes ``layer=`` to initializers with this flag."""

    def __init__(self, source: Source) -> None:
        layers = [_Fit(tuple(w.shape[2:]), _flat(w)) for w in _layers(source)]
        by_kernel: dict[tuple[int, ...], list[torch.Tensor]] = {}
        for fit in layers:
            by_kernel.setdefault(fit.kernel, []).append(fit.filters)
        self.pooled = {k: self._stats(k, torch.cat(parts), None) for k, parts in by_kernel.items()}
        self.layers = [(fit.kernel, self._stats(fit.kernel, fit.filters, self.pooled[fit.kernel]))
                       for fit in layers]

    def _stats(self, kernel: tuple[int, ...], filters: torch.Tensor, pooled: dict | None) -> dict:
        raise NotImplementedError

    def _sample(self, stats: dict, n: int, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def stats_for(self, kernel: tuple[int, ...], layer: int | None = None) -> dict:
        """The statistics used for ``kernel`` at spatial layer ``layer`` (see the module docstring)."""
        if layer is not None and -len(self.layers) <= layer < len(self.layers) and self.layers[layer][0] == kernel:
            return self.layers[layer][1]
        if kernel not in self.pooled:
            known = ", ".join("x".join(map(str, k)) for k in self.pooled)
            raise ValueError(f"{type(self).__name__} was fitted to kernels {known}, not "
                             f"{'x'.join(map(str, kernel))}; fit it to a model with spatial filters of that size")
        return self.pooled[kernel]

    def __call__(self, shape: Iterable[int], generator: torch.Generator | None = None,
                 layer: int | None = None) -> torch.Tensor:
        """Sample filters for the weight shape ``(out, in/groups, *kernel)``."""
        dims = tuple(int(s) for s in shape)
        if len(dims) < 3 or any(s < 1 for s in dims) or math.prod(dims[2:]) < 2:
            raise ValueError(f"expected a convolution weight shape (out, in/groups, *kernel) with a spatial "
                             f"kernel, got {dims!r}")
        stats = self.stats_for(dims[2:], layer)
        return self._sample(stats, dims[0] * dims[1], generator).float().reshape(dims)

    def __repr__(self) -> str:
        shapes = ", ".join("x".join(map(str, k)) for k in self.pooled)
        return f"{type(self).__name__}({len(self.layers)} layers; kernels: {shapes})"


def _psd_root(cov: torch.Tensor) -> torch.Tensor:
    """``R`` with ``R R^T = cov`` for a symmetric positive semi-definite ``cov``, rank-deficient allowed."""
    values, vectors = torch.linalg.eigh(cov)
    return vectors * values.clamp_min(0).sqrt()


class GuidedSteering(FittedInitializer):
    """[GuidedSteer]: a Gaussian kernel density estimate per source layer (see the module docstring)."""

    def _stats(self, kernel: tuple[int, ...], filters: torch.Tensor, pooled: dict | None) -> dict:
        n, k = filters.shape
        cov = torch.cov(filters.T).reshape(k, k) if n > 1 else torch.zeros(k, k, dtype=filters.dtype)
        bandwidth = n ** (-1.0 / (k + 4))
        return {"filters": filters, "root": _psd_root(cov) * bandwidth, "bandwidth": bandwidth}

    def _sample(self, stats: dict, n: int, generator: torch.Generator | None) -> torch.Tensor:
        filters, root = stats["filters"], stats["root"]
        pick = torch.randint(len(filters), (n,), generator=generator)
        noise = torch.randn(n, root.shape[1], generator=generator, dtype=torch.float64)
        return filters[pick] + noise @ root.T


class _DiagonalSteering(FittedInitializer):
    """Steering weights ``mean + std * N(0, 1)`` on an orthonormal ``basis`` (rows), per layer."""

    def _sample(self, stats: dict, n: int, generator: torch.Generator | None) -> torch.Tensor:
        noise = torch.randn(n, len(stats["mean"]), generator=generator, dtype=torch.float64)
        return (stats["mean"] + stats["std"] * noise) @ stats["basis"]


def _moments(basis: torch.Tensor, filters: torch.Tensor) -> dict:
    weights = filters @ basis.T
    std = weights.std(0) if len(weights) > 1 else torch.zeros(weights.shape[1], dtype=weights.dtype)
    return {"basis": basis, "mean": weights.mean(0), "std": std}


class SVDSteering(_DiagonalSteering):
    """[SVDsteering]: the source's principal directions per kernel shape, steering statistics per layer."""

    def _stats(self, kernel: tuple[int, ...], filters: torch.Tensor, pooled: dict | None) -> dict:
        if pooled is None:  # right singular vectors of F = eigenvectors of F^T F, largest first
            basis = torch.linalg.eigh(filters.T @ filters).eigenvectors.flip(1).T.contiguous()
        else:
            basis = pooled["basis"]
        return _moments(basis, filters)


class DCT2Steering(_DiagonalSteering):
    """[DCT2steering]: per-layer mean and standard deviation of the DCT-II coefficients."""

    def _stats(self, kernel: tuple[int, ...], filters: torch.Tensor, pooled: dict | None) -> dict:
        return _moments(dct_basis(kernel, torch.float64).reshape(filters.shape[1], -1), filters)


def guided_steered(source: Source) -> GuidedSteering:
    """Factory of [GuidedSteer] fitted to ``source`` (a model, a weight tensor, or several)."""
    return GuidedSteering(source)


def svd_steered(source: Source) -> SVDSteering:
    """Factory of [SVDsteering] fitted to ``source`` (a model, a weight tensor, or several)."""
    return SVDSteering(source)


def dct2_steered(source: Source) -> DCT2Steering:
    """Factory of [DCT2steering] fitted to ``source`` (a model, a weight tensor, or several)."""
    return DCT2Steering(source)
