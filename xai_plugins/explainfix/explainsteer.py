"""ExplainSteer: the spectra of a model's spatial filters in the DCT-II basis, layer by layer.

For a layer with flattened spatial filters ``F`` (one row per filter) and per-filter weights ``w``, the
energy on basis filter ``j`` is ``e_d[j] = sum_f w_f |(F B^T)[f, j]|`` (``B`` the orthonormal DCT-II basis).
Without saliency every filter weighs ``1 / #filters``; with saliency ``w_f`` is the summed absolute gradient
of the objective with respect to filter ``f`` over the batches of a loader, normalised to sum to one per
layer (normalising makes layers comparable and changes no ordering within a layer); the paper's
unnormalised spectra are :meth:`SpectraResult.unnormalized`. From ``e_d`` come the energy per 1-D
frequency of each axis (``e_1``: basis energies raised to ``1/d`` and summed over the other axes, as in the
paper), by frequency (``e_0``, the sum of the axes'
``e_1``; axes of different sizes are zero-padded, so non-square kernels work) and, for 2-D kernels, by
orientation of the frequency vector ``(k_row / n_row, k_col / n_col)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from xai_plugins.explainfix.basis import basis_frequencies, dct_basis, frequency_order
from xai_plugins.explainfix.saliency import Objective, spatial_filter_saliency
from xai_plugins.explainfix.spatial import spatial_convs

__all__ = ["LayerSpectrum", "SpectraResult", "explain_steer", "layer_spectrum"]


@dataclass
class LayerSpectrum:
    """The spectra of one spatial convolution."""

    name: str
    kernel_shape: tuple[int, ...]
    basis: torch.Tensor
    """``e_d``: energy per DCT-II basis filter, raster order (see :func:`~.basis.dct_basis`)."""
    axes: list[torch.Tensor]
    """``e_1``: per kernel axis, energy per 1-D frequency ``0 .. n_axis - 1``."""
    frequency: torch.Tensor
    """``e_0``: energy per frequency index, the axes' ``e_1`` summed (zero-padded to the longest axis)."""
    orientation: torch.Tensor | None
    """2-D kernels: energy of non-constant basis filters per orientation bin; ``None`` otherwise."""
    saliency_total: float = 1.0
    """Sum of the layer's saliency weights before they were normalised (1 without saliency)."""

    @property
    def basis_by_frequency(self) -> torch.Tensor:
        """``e_d`` reordered from low to high frequency (the paper's diagonal traversal, edges first)."""
        return self.basis[frequency_order(self.kernel_shape)]

    def unnormalized(self) -> LayerSpectrum:
        """The spectra with the raw saliency weights (summed absolute gradients), as the paper computes them.

        ``e_d`` and the orientation energies are linear in the weights, ``e_1`` and ``e_0`` homogeneous of
        degree ``1/d``, so they are rescaled exactly by ``saliency_total`` and its ``d``-th root.
        """
        t = self.saliency_total
        root = t ** (1.0 / len(self.kernel_shape))
        return LayerSpectrum(self.name, self.kernel_shape, self.basis * t, [a * root for a in self.axes],
                             self.frequency * root, None if self.orientation is None else self.orientation * t,
                             1.0)


@dataclass
class SpectraResult:
    """ExplainSteer of a model: one :class:`LayerSpectrum` per spatial convolution, in module order."""

    layers: list[LayerSpectrum]
    saliency: bool
    num_samples: int
    orientation_edges: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    """Bin edges in degrees of the orientation angle ``atan2(k_row / n_row, k_col / n_col)``: 0 means
    frequency along columns only (vertical stripes), 90 along rows only (horizontal stripes)."""

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def unnormalized(self) -> SpectraResult:
        """Every layer's spectra with the raw saliency weights (see :meth:`LayerSpectrum.unnormalized`)."""
        return SpectraResult([layer.unnormalized() for layer in self.layers], self.saliency, self.num_samples,
                             self.orientation_edges)

    @property
    def names(self) -> list[str]:
        """Qualified names of the layers."""
        return [layer.name for layer in self.layers]


def _orientation_bins(kernel: tuple[int, ...], edges: torch.Tensor) -> torch.Tensor | None:
    if len(kernel) != 2:
        return None
    freqs = basis_frequencies(kernel).to(torch.float64) / torch.tensor(kernel, dtype=torch.float64)
    angle = torch.rad2deg(torch.atan2(freqs[:, 0], freqs[:, 1]))
    bins = torch.bucketize(angle, edges[1:-1].to(torch.float64), right=False)
    bins[(freqs == 0).all(1)] = -1
    return bins


def layer_spectrum(name: str, filters: torch.Tensor, weights: torch.Tensor | None,
                   orientation_edges: torch.Tensor) -> LayerSpectrum:
    """The spectra of one layer's weight ``(out, in, *kernel)`` with per-filter weights ``(out, in)``."""
    kernel = tuple(filters.shape[2:])
    nb, d = math.prod(kernel), len(kernel)
    flat = filters.detach().reshape(-1, nb).to(torch.float32)
    basis = dct_basis(kernel, device=flat.device).reshape(nb, nb)
    coeffs = (flat @ basis.T).abs_()
    total = 1.0
    if weights is None:
        e_d = (torch.full((coeffs.shape[0],), 1.0 / coeffs.shape[0], device=coeffs.device) @ coeffs).cpu()
    else:
        w = weights.detach().reshape(-1).to(device=flat.device, dtype=torch.float32)
        total = float(w.sum())
        w = w / total if total > 0 else torch.zeros_like(w)
        e_d = (w @ coeffs).cpu()
    root = e_d.reshape(kernel) ** (1.0 / d)
    axes = [root.sum(dim=tuple(a for a in range(d) if a != axis)) if d > 1 else root for axis in range(d)]
    longest = max(kernel)
    e_0 = torch.stack([torch.nn.functional.pad(a, (0, longest - len(a))) for a in axes]).sum(0)
    orientation = None
    bins = _orientation_bins(kernel, orientation_edges)
    if bins is not None:
        keep = bins >= 0
        orientation = torch.zeros(len(orientation_edges) - 1).index_add_(0, bins[keep], e_d[keep])
    return LayerSpectrum(name, kernel, e_d, axes, e_0, orientation, total)


def explain_steer(model: nn.Module, loader: Iterable[Any] | None = None, *, max_batches: int | None = None,
                  objective: Objective | None = None, orientation_bins: int = 3) -> SpectraResult:
    """ExplainSteer of every spatial convolution of ``model`` (Conv1d/2d/3d, kernels larger than 1).

    Without ``loader`` all spatial filters weigh the same; with a loader (yielding inputs or
    ``(inputs, targets)``) each filter is weighted by its gradient saliency for ``objective(output,
    targets)`` (default: the outputs of the target classes; see :func:`~.saliency.default_objective`),
    accumulated over at most ``max_batches`` batches. The model is not changed: parameters,
    ``requires_grad``, buffers, training flags and hooks stay as they were.
    """
    if orientation_bins < 1:
        raise ValueError(f"orientation_bins must be at least 1, got {orientation_bins}")
    convs = spatial_convs(model)
    edges = torch.linspace(0.0, 90.0, orientation_bins + 1)
    weights: list[torch.Tensor | None] = [None] * len(convs)
    samples = 0
    if loader is not None:
        saliency = spatial_filter_saliency(model, loader, max_batches=max_batches, objective=objective,
                                           taylor=False)
        weights, samples = list(saliency.gradient), saliency.num_samples
    with torch.no_grad():
        layers = [layer_spectrum(name, conv.weight, w, edges) for (name, conv), w in zip(convs, weights)]
    return SpectraResult(layers, loader is not None, samples, edges)
