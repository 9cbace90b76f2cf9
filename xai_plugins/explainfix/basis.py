"""The orthonormal DCT-II basis of spatial kernels of any shape, and the frequency of each basis filter.

ExplainFix describes every spatial filter by its coefficients in this basis: steered initialisations are
weighted sums of a few basis filters, and ExplainSteer measures the energy a layer puts on each of them.
Basis filters are ordered as ``itertools.product`` over the per-axis frequencies (raster order), so basis
``j`` of a ``(h, w)`` kernel has row frequency ``j // w`` and column frequency ``j % w``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

__all__ = ["basis_frequencies", "dct_basis", "dct_basis_1d", "frequency_order"]


def _as_shape(shape: int | tuple[int, ...] | torch.Size) -> tuple[int, ...]:
    dims = (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
    if not dims or any(s < 1 for s in dims):
        raise ValueError(f"a kernel shape needs one or more positive sizes, got {dims!r}")
    return dims


def dct_basis_1d(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The orthonormal DCT-II matrix of size ``n``: row ``k`` is ``s_k cos(pi k (x + 1/2) / n)``."""
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    x = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    scale = torch.full((n, 1), math.sqrt(2.0 / n), dtype=torch.float64)
    scale[0] = math.sqrt(1.0 / n)
    return (scale * torch.cos(math.pi * k * (x + 0.5) / n)).to(dtype)


@lru_cache(maxsize=64)
def _basis64(shape: tuple[int, ...]) -> torch.Tensor:
    basis = torch.ones((1,) * 0, dtype=torch.float64)
    for n in shape:
        basis = torch.einsum("...,kx->...kx", basis, dct_basis_1d(n, torch.float64))
    # basis has axes (k1, x1, k2, x2, ...); bring the frequency axes first
    d = len(shape)
    basis = basis.permute(*range(0, 2 * d, 2), *range(1, 2 * d, 2))
    return basis.reshape(math.prod(shape), *shape).contiguous()


def dct_basis(shape: int | tuple[int, ...] | torch.Size, dtype: torch.dtype = torch.float32,
              device: torch.device | str | None = None) -> torch.Tensor:
    """The complete orthonormal DCT-II basis of kernels of ``shape`` (``k``, ``h×w`` or ``k×h×w``).

    Returns a tensor of shape ``(prod(shape), *shape)``: one basis filter per row, in raster order of the
    per-axis frequencies. Flattened, the rows form an orthonormal matrix ``B`` (``B @ B.T == I``), so the
    DCT coefficients of flattened filters ``F`` are ``F @ B.T`` and ``F == (F @ B.T) @ B``.
    """
    return _basis64(_as_shape(shape)).to(dtype=dtype, device=device, copy=True)


def basis_frequencies(shape: int | tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Integer per-axis frequencies of each basis filter: a ``(prod(shape), len(shape))`` tensor."""
    dims = _as_shape(shape)
    grids = torch.meshgrid(*(torch.arange(n) for n in dims), indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)


def frequency_order(shape: int | tuple[int, ...] | torch.Size, *, edges_first: bool = True) -> torch.Tensor:
    """Basis indices ordered from lowest to highest frequency, as the paper's diagonal traversal.

    Basis filters are grouped by the sum over axes of the normalised frequency ``k_i / n_i`` (one diagonal
    of a square 2-D kernel per group, generalised to non-square and 1-D/3-D kernels). Inside a diagonal the
    paper visits the edges first: the basis filters whose axes' frequencies differ most (largest
    ``max_i k_i / n_i - min_i k_i / n_i``, for a square kernel ``|k_row - k_col|``) come before those
    near the main diagonal; ties, and every diagonal with ``edges_first=False``, keep raster order.
    """
    dims = _as_shape(shape)
    common = math.lcm(*dims)  # integer multiples of 1 / lcm: the diagonals are found exactly
    freqs = basis_frequencies(dims) * torch.tensor([common // n for n in dims])
    diagonal = freqs.sum(1)
    spread = freqs.max(1).values - freqs.min(1).values if edges_first else torch.zeros(len(freqs), dtype=torch.long)
    order = torch.argsort(-spread, stable=True)
    return order[torch.argsort(diagonal[order], stable=True)]
