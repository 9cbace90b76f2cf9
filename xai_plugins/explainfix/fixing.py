"""Fixing spatial filters: initialise every spatial convolution with an ExplainFix method and freeze it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from xai_plugins.errors import ComponentContractError
from xai_plugins.explainfix.spatial import spatial_convs

__all__ = ["FixReport", "UnknownMethodError", "fix_spatial_filters", "resolve_initializer"]

Initializer = Callable[..., torch.Tensor]


class UnknownMethodError(ValueError):
    """No initializer of that name is registered."""


@dataclass
class FixReport:
    """What :func:`fix_spatial_filters` did: the fixed layers and how many parameters remain trainable."""

    method: str
    seed: int
    layers: list[str]
    fixed_parameters: int
    total_parameters: int
    trainable_before: int
    trainable_after: int
    kernel_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def trainable_fraction(self) -> float:
        """Share of all parameters still trainable."""
        return self.trainable_after / max(self.total_parameters, 1)

    def __str__(self) -> str:
        pct = 100.0 * self.trainable_fraction
        return (f"fixed {len(self.layers)} spatial convolution(s) with {self.method!r} (seed {self.seed}): "
                f"{self.fixed_parameters:,} parameters frozen; trainable parameters "
                f"{self.trainable_before:,} -> {self.trainable_after:,} of {self.total_parameters:,} "
                f"({pct:.1f}% trainable)")


def _source(method: str | Initializer, name: str) -> str:
    if callable(method):
        return f"initializer {name!r}"
    import xai_plugins

    return f"initializer {name!r} of plugin {xai_plugins.describe('initializer', method).plugin!r}"


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def resolve_initializer(method: str | Initializer, **kwargs: Any) -> tuple[str, Initializer, dict[str, Any]]:
    """The initializer callable for a registered name (or a callable), and the keywords left for its calls.

    A registered factory (``factory=True`` in its registration, like ``guided_steered``) is called with the
    keywords and its result is the initializer.
    """
    if callable(method):
        return getattr(method, "__name__", repr(method)), method, kwargs
    import xai_plugins
    from xai_plugins.errors import ComponentNotFoundError

    try:
        record = xai_plugins.describe("initializer", method)
    except ComponentNotFoundError:
        known = ", ".join(c.name for c in xai_plugins.list_components("initializer")) or "none"
        raise UnknownMethodError(f"unknown ExplainFix method {method!r}; known initializers: {known} "
                                 "(or pass a callable init(shape, generator=None))") from None
    component = record.load()
    if record.extra.get("factory"):
        if not kwargs:
            raise ValueError(f"initializer {method!r} is a factory fitted to other filters; pass its arguments, "
                             f"e.g. fix_spatial_filters(model, {method!r}, source=trained_model)")
        return method, component(**kwargs), {}
    return method, component, kwargs


def _chosen_layers(count: int, layers: Any, seed: int) -> list[int]:
    """Indices of the spatial layers to fix: all, the n-th, several, or a random share of them."""
    if layers is None:
        return list(range(count))
    if isinstance(layers, bool):
        raise TypeError("layers must be None, a layer index, a list of indices or a share in (0, 1], not a bool")
    if isinstance(layers, float):
        if not 0 < layers <= 1:
            raise ValueError(f"a share of layers must be in (0, 1], got {layers}")
        chosen = torch.randperm(count, generator=torch.Generator().manual_seed(int(seed)))
        return sorted(chosen[:max(1, round(layers * count))].tolist())
    indices = [layers] if isinstance(layers, int) else list(layers)
    bad = [i for i in indices if not isinstance(i, int) or isinstance(i, bool) or not -count <= i < count]
    if bad or not indices:
        raise ValueError(f"layer indices {bad or indices} are not spatial layers of the model; it has {count} "
                         f"(0 .. {count - 1}, negative from the end)")
    return sorted({i % count for i in indices})


def fix_spatial_filters(model: nn.Module, method: str | Initializer = "dct_steered", seed: int = 0, *,
                        layers: int | float | Sequence[int] | None = None, **kwargs: Any) -> FixReport:
    """Initialise every spatial convolution of ``model`` with ``method`` and freeze it, in place.

    Spatial convolutions are Conv1d/2d/3d with a kernel larger than one element (depthwise included); their
    weights (and biases) get ``requires_grad=False``, so optimisers never change them, and they get no weight
    gradients. ``method`` is the name of a registered initializer (``xai-plugins list --kind initializer``)
    or a callable ``init(shape, generator=None)``; ``kwargs`` go to the initializer (to the factory for
    ``guided_steered``, e.g. ``source=trained_model``). The same ``seed`` gives the same filters. New weights
    are all computed before any is written, so on error the model is unchanged.

    ``layers`` fixes only some spatial layers (the paper's partial fixing): an index (the n-th spatial
    convolution in module order, negative from the end), a list of indices, or a share in ``(0, 1]`` (that
    many layers, rounded, at least one, drawn at random with ``seed``); the others are left as they are.
    An initializer with ``per_layer = True`` (the fitted ones of :mod:`~.guided`) is called with
    ``layer=`` the index of the convolution among the model's spatial convolutions.
    """
    every = spatial_convs(model)
    convs = [every[i] for i in _chosen_layers(len(every), layers, seed)]
    index = {id(conv): i for i, (_, conv) in enumerate(every)}
    name, init, init_kwargs = resolve_initializer(method, **kwargs)
    generator = torch.Generator().manual_seed(int(seed))
    trainable_before = _trainable(model)
    new_weights: dict[int, torch.Tensor] = {}
    per_layer = bool(getattr(init, "per_layer", False))
    for _, conv in convs:
        if id(conv.weight) in new_weights:
            continue
        layer_kwargs = {"layer": index[id(conv)]} if per_layer else {}
        weight = init(tuple(conv.weight.shape), generator=generator, **layer_kwargs, **init_kwargs)
        if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != tuple(conv.weight.shape):
            got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
            raise ValueError(f"initializer {name!r} returned {got} for weight shape {tuple(conv.weight.shape)}; "
                             "an initializer must return a tensor of the shape it is given")
        if not bool(torch.isfinite(weight).all()):
            raise ComponentContractError(
                f"{_source(method, name)} returned non-finite values (NaN or inf) for weight shape "
                f"{tuple(conv.weight.shape)}; the model is left unchanged")
        new_weights[id(conv.weight)] = weight
    fixed = 0
    with torch.no_grad():
        for _, conv in convs:
            if id(conv.weight) in new_weights:
                weight = new_weights.pop(id(conv.weight))
                conv.weight.copy_(weight.to(dtype=conv.weight.dtype, device=conv.weight.device))
                fixed += conv.weight.numel() + (conv.bias.numel() if conv.bias is not None else 0)
            conv.weight.requires_grad_(False)
            if conv.bias is not None:
                conv.bias.requires_grad_(False)
    return FixReport(
        method=name, seed=int(seed), layers=[n for n, _ in convs], fixed_parameters=fixed,
        total_parameters=sum(p.numel() for p in model.parameters()), trainable_before=trainable_before,
        trainable_after=_trainable(model), kernel_shapes={n: tuple(c.kernel_size) for n, c in convs})
