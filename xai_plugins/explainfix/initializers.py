"""The paper's initialisations of spatial filters, as ``init(shape, generator=None, **kwargs) -> Tensor``.

``shape`` is a convolution weight shape ``(out_channels, in_channels / groups, *kernel)``; each of the
``out * in`` spatial filters is drawn independently from ``generator``, so the same seed gives the same
filters. Names in brackets are the paper's. The initializers fitted to another model's filters
(``guided_steered``, ``svd_steered``, ``dct2_steered``) live in :mod:`~.guided`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from xai_plugins.explainfix.basis import basis_frequencies, dct_basis
from xai_plugins.explainfix.guided import GuidedSteering, guided_steered

__all__ = ["GuidedSteering", "dct2_fill0", "dct_basis_init", "dct_steered", "ghaar", "ghaar2_ms", "ghaar4_ms",
           "ghaar4_s2", "ghaar_filters", "ghaar_r_ms", "guided_steered", "haar", "psine", "psine_r_ms"]

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
    """Every spatial filter is one DCT-II basis filter ([DCT2]).

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


def _bases_with_frequencies(kernel: tuple[int, ...], frequencies: Sequence[int]) -> torch.Tensor:
    freqs = basis_frequencies(kernel)
    allowed = torch.tensor(sorted(set(int(f) for f in frequencies)))
    chosen = torch.nonzero(torch.isin(freqs, allowed).all(1)).squeeze(1)
    if len(chosen) == 0:
        raise ValueError(f"no DCT-II basis filter of kernel {kernel} has per-axis frequencies in "
                         f"{tuple(frequencies)}; use smaller frequencies or a larger kernel")
    return chosen


def dct_steered(shape: Iterable[int], generator: torch.Generator | None = None, *,
                max_frequency: int = 1, frequencies: Sequence[int] | None = None) -> torch.Tensor:
    """Random steering of low-frequency DCT-II basis filters ([GHaar4.s1]).

    Each filter is ``sum_j w_j B_j`` with independent standard-normal steering weights ``w_j``, over the
    basis filters whose frequency on every axis is in ``frequencies`` (default ``0 .. max_frequency``: the 4
    lowest of a 2-D kernel, constant, horizontal, vertical and diagonal).
    """
    dims, n, kernel = _split(shape)
    if frequencies is None:
        if max_frequency < 1:
            raise ValueError(f"max_frequency must be at least 1, got {max_frequency}")
        frequencies = range(max_frequency + 1)
    chosen = _bases_with_frequencies(kernel, frequencies)
    basis = dct_basis(kernel).reshape(math.prod(kernel), -1)[chosen]
    weights = torch.randn(n, len(chosen), generator=generator)
    return (weights @ basis).reshape(dims)


def ghaar4_s2(shape: Iterable[int], generator: torch.Generator | None = None) -> torch.Tensor:
    """Random steering of the DCT-II basis filters of per-axis frequencies 0 and 2 ([GHaar4.s2]).

    The second scale of :func:`dct_steered`: for a 2-D kernel the basis filters of frequencies
    ``(0, 0), (0, 2), (2, 0), (2, 2)``, weights ``N(0, 1)``. Axes of size 2 or less have only frequency 0.
    """
    return dct_steered(shape, generator, frequencies=(0, 2))


def _random_subsets(n: int, nb: int, r: int, generator: torch.Generator | None) -> torch.Tensor:
    """``(n, r)`` basis indices: for each filter ``r`` distinct indices of ``0 .. nb - 1``, uniformly."""
    return torch.argsort(torch.rand(n, nb, generator=generator), dim=1)[:, :r]


def _layer_terms(nb: int, terms: int | None, generator: torch.Generator | None) -> int:
    if terms is None:  # one R per layer: 2 ** U(0, log2(nb)), rounded
        u = torch.rand(1, generator=generator).item()
        terms = int(round(2 ** (u * math.log2(nb))))
    if terms < 1:
        raise ValueError(f"terms must be at least 1, got {terms}")
    return min(int(terms), nb)


def _multiscale(shape: Iterable[int], generator: torch.Generator | None, terms: int | None,
                polynomial: bool) -> torch.Tensor:
    dims, n, kernel = _split(shape)
    nb = math.prod(kernel)
    r = _layer_terms(nb, terms, generator)
    basis = dct_basis(kernel).reshape(nb, nb)
    idx = _random_subsets(n, nb, r, generator)
    weights = torch.randn(n, r, generator=generator)
    if polynomial:  # integer powers in [1, high): the authors' numpy randint truncates a fractional bound
        high = max(2, math.floor(1 + (r - 1) / 2))
        weights = weights ** torch.randint(1, high, (n, r), generator=generator)
    return torch.einsum("nr,nrk->nk", weights, basis[idx]).reshape(dims)


def ghaar_r_ms(shape: Iterable[int], generator: torch.Generator | None = None, *,
               terms: int | None = None) -> torch.Tensor:
    """Multi-scale steering of a random subset of the DCT-II basis ([GHaarR.ms]).

    Per layer ``R = round(2 ** U(0, log2(#basis)))`` (or ``terms``); each filter is ``sum_l w_l B_{j_l}``
    over ``R`` distinct basis filters drawn uniformly for that filter, ``w ~ N(0, 1)``.
    """
    return _multiscale(shape, generator, terms, polynomial=False)


def ghaar2_ms(shape: Iterable[int], generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`ghaar_r_ms` with two basis filters per filter ([GHaar2.ms])."""
    return _multiscale(shape, generator, 2, polynomial=False)


def ghaar4_ms(shape: Iterable[int], generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`ghaar_r_ms` with four basis filters per filter ([GHaar4.ms])."""
    return _multiscale(shape, generator, 4, polynomial=False)


def psine_r_ms(shape: Iterable[int], generator: torch.Generator | None = None, *,
               terms: int | None = None) -> torch.Tensor:
    """Polynomial multi-scale steering of a random subset of the DCT-II basis ([PsineR.ms]).

    As :func:`ghaar_r_ms`, but each steering weight is raised to an integer power ``p_l`` drawn uniformly
    from ``[1, max(2, floor(1 + (R - 1) / 2)))``: ``sum_l w_l ** p_l B_{j_l}``.
    """
    return _multiscale(shape, generator, terms, polynomial=True)


def dct2_fill0(shape: Iterable[int], generator: torch.Generator | None = None) -> torch.Tensor:
    """The smallest complete DCT-II bank per input, zeros elsewhere ([DCT2fill0]).

    For every input channel, ``min(out, #basis)`` output channels drawn at random get the basis filters
    ``0, 1, ...`` in order; every other filter is zero, so each input is seen through each basis filter once.
    """
    dims, _, kernel = _split(shape)
    out, inp = dims[0], dims[1]
    nb = math.prod(kernel)
    basis = dct_basis(kernel)
    weight = torch.zeros(dims)
    m = min(out, nb)
    for i in range(inp):
        chosen = torch.randperm(out, generator=generator)[:m]
        weight[chosen, i] = basis[:m]
    return weight


def ghaar_filters(kernel: tuple[int, ...], frequency: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The generalised Haar formula: ``sum_S weights[:, S] prod_{i in S} cos(frequency x_i)``.

    ``x_i = linspace(0, pi, n_i)`` on each axis; ``S`` runs over the non-empty sets of axes in the order of
    their bit masks (axis 0 alone, axis 1 alone, both, ...: vertical variation, horizontal, diagonal for
    2-D). ``frequency`` has one entry per filter, ``weights`` one row of ``2 ** d - 1`` per filter.
    """
    d = len(kernel)
    n = len(frequency)
    out = torch.zeros(n, *kernel)
    for start in range(0, n, _CHUNK):
        f = frequency[start:start + _CHUNK]
        total = torch.zeros(len(f), *kernel)
        for j, subset in enumerate(range(1, 2 ** d)):
            term = torch.ones(len(f), *([1] * d))
            for axis, size in enumerate(kernel):
                if subset >> axis & 1:
                    view = [len(f)] + [1] * d
                    view[axis + 1] = size
                    x = torch.linspace(0, math.pi, size)
                    term = term * torch.cos(f[:, None] * x[None, :]).reshape(view)
            total = total + weights[start:start + _CHUNK, j].reshape(-1, *([1] * d)) * term
        out[start:start + _CHUNK] = total
    return out


def _unit_norm(filters: torch.Tensor) -> torch.Tensor:
    flat = filters.reshape(len(filters), -1)
    norm = flat.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, flat / norm.clamp_min(1e-12), flat).reshape(filters.shape)


def ghaar(shape: Iterable[int], generator: torch.Generator | None = None, *,
          max_frequency: float | None = None, normalize: bool = False) -> torch.Tensor:
    """Generalised Haar filters ([GHaar]): steered separable cosines of one random frequency per filter.

    :func:`ghaar_filters` with weights ``U(-1, 1)`` and ``f ~ U(0, max_frequency)`` (default
    ``2 (max(kernel) - 1)``, all scales), not rescaled, as the paper uses them; ``normalize=True`` scales
    every filter to unit L2 norm.
    """
    dims, n, kernel = _split(shape)
    fmax = float(max_frequency) if max_frequency is not None else 2.0 * (max(kernel) - 1)
    freq = torch.rand(n, generator=generator) * fmax
    weights = torch.rand(n, 2 ** len(kernel) - 1, generator=generator) * 2 - 1
    filters = ghaar_filters(kernel, freq, weights)
    return (_unit_norm(filters) if normalize else filters).reshape(dims)


def haar(shape: Iterable[int], generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly steered Haar-like filters ([haar]): :func:`ghaar_filters` with unit L2 norm, weights
    ``U(-1, 1)`` and a frequency range growing with the filter: filter ``j`` (flat index over
    ``(out, in)``) has ``f ~ U(0, j + 1)``."""
    dims, n, kernel = _split(shape)
    weights = torch.rand(n, 2 ** len(kernel) - 1, generator=generator) * 2 - 1
    freq = torch.rand(n, generator=generator) * torch.arange(1, n + 1, dtype=torch.float32)
    return _unit_norm(ghaar_filters(kernel, freq, weights)).reshape(dims)


def psine(shape: Iterable[int], generator: torch.Generator | None = None, *,
          log2_terms: float = 6.0, max_terms: int | None = None) -> torch.Tensor:
    """Polynomial sines ([Psine]): ``sum_l w_l (prod_i sin(f_li x_i + t_li)) ** p_l``.

    Per filter: ``L = 3 + floor(2 ** U(0, log2_terms))`` terms (the paper's 3 to 66), at most ``max_terms``;
    ``x_i = linspace(0, pi, n_i)``; a maximum frequency ``U(1, 5)`` and frequencies ``f ~ U(0, max)``;
    phases ``t ~ U(0, 2 pi)``; integer powers ``p`` in ``[1, (L - 1) / 2]``; weights summing to one mapped to
    ``[-1, 1]``. Each filter is rescaled to ``[-1, 1]`` and then to unit L2 norm, as in the paper.
    """
    dims, n, kernel = _split(shape)
    longest = 3 + math.floor(2 ** log2_terms)
    if max_terms is not None:
        if max_terms < 3:
            raise ValueError(f"max_terms must be at least 3, got {max_terms}")
        longest = min(longest, max_terms)
    if log2_terms < 0:
        raise ValueError(f"log2_terms must be at least 0, got {log2_terms}")
    max_terms = longest
    d = len(kernel)
    out = torch.empty(n, math.prod(kernel))
    for start in range(0, n, _CHUNK):
        m = min(_CHUNK, n - start)
        terms = (3 + torch.floor(2 ** (torch.rand(m, generator=generator) * log2_terms))).clamp(max=max_terms)
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
