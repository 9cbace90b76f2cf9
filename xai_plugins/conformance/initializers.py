"""Checks of initializers ``init(shape, generator=None, **kwargs) -> Tensor`` of spatial filters: the shape
asked for (2-D, depthwise, non-square, 1-D and 3-D kernels), same seed same filters, fixed filters stay fixed
under optimiser steps while the rest learn, and clear errors on a shape that is not a filter bank."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from xai_plugins.conformance.checks import check
from xai_plugins.conformance.common import expect_clear_error
from xai_plugins.conformance.examples import reference_net
from xai_plugins.conformance.fixtures import call_kwargs, examples_for, load_object, seeded
from xai_plugins.conformance.results import CheckFailure
from xai_plugins.registry import Component

DEFAULT_SHAPES: tuple[tuple[int, ...], ...] = ((8, 4, 3, 3), (6, 1, 3, 3), (4, 3, 3, 5), (4, 2, 5), (2, 2, 3, 3, 3))
"""Filter banks checked by default: 2-D, depthwise, non-square, 1-D and 3-D (override: ``example_shapes``)."""


def initializer(component: Component) -> Callable[..., torch.Tensor]:
    """The initializer; a factory (``factory=True``) is called with the example model to fit it from."""
    obj = component.load()
    if component.extra.get("factory"):
        source = examples_for(component)[0].model() if "example_model" in component.extra else reference_net()
        obj = obj(source)
    return obj


def _shapes(component: Component) -> list[tuple[int, ...]]:
    return [tuple(s) for s in component.extra.get("example_shapes", DEFAULT_SHAPES)]


def _call(init: Callable[..., torch.Tensor], component: Component, shape: tuple[int, ...],
          seed: int | None = 0) -> torch.Tensor:
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return init(shape, generator=generator, **call_kwargs(component))


@check("shapes", "initializer")
def check_shapes(component: Component) -> str:
    """Returns a finite, non-zero floating tensor of exactly the shape asked for, for every kernel kind."""
    init = initializer(component)
    for shape in _shapes(component):
        out = _call(init, component, shape)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise CheckFailure(f"init({shape}) returned {got}; it must return a tensor of the shape it is given")
        if not out.is_floating_point() or not torch.isfinite(out).all() or not out.abs().sum() > 0:
            raise CheckFailure(f"init({shape}) returned a {out.dtype} tensor that is not finite, non-zero and "
                               "floating point")
    return f"shapes {', '.join(str(s) for s in _shapes(component))}"


@check("seeded", "initializer")
def check_seeded(component: Component) -> str:
    """The same generator seed gives bitwise the same filters."""
    init = initializer(component)
    for shape in _shapes(component):
        first, second = _call(init, component, shape, 7), _call(init, component, shape, 7)
        if not torch.equal(first, second):
            diff = (first - second).abs().max().item()
            raise CheckFailure(f"two calls with generator seed 7 for {shape} differ by up to {diff:.3g}")
    return "same seed, same filters"


class _FixNet(nn.Module):
    """A 2-D, a depthwise and a 1x1 convolution, then a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.spatial = nn.Conv2d(3, 6, 3, padding=1)
        self.depthwise = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.pointwise = nn.Conv2d(6, 4, 1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.depthwise(torch.relu(self.spatial(x))))
        return self.fc(self.pointwise(h).mean((2, 3)))


def _fix(component: Component, model: _FixNet, init: Callable[..., torch.Tensor]) -> None:
    fixer: Any = component.extra.get("fixer")
    if fixer is not None:
        load_object(fixer)(model, init)
        return
    with torch.no_grad():
        for conv in (model.spatial, model.depthwise):
            conv.weight.copy_(_call(init, component, tuple(conv.weight.shape)))
            conv.weight.requires_grad_(False)


@check("fixed_under_optimiser", "initializer")
def check_fixed_under_optimiser(component: Component) -> str:
    """Filters fixed with this initializer (by ``extra['fixer']``, else by copy and ``requires_grad=False``)
    are bitwise unchanged by SGD-with-momentum-and-weight-decay and AdamW steps over all parameters, while
    the other parameters learn."""
    init = initializer(component)
    with seeded(0):
        model = _FixNet()
    _fix(component, model, init)
    fixed = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("weight")
             and n.split(".")[0] in ("spatial", "depthwise")}
    free = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(("pointwise", "fc"))}
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0])
    for opt in (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01),
                torch.optim.AdamW(model.parameters(), lr=0.01)):
        for _ in range(2):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    params = dict(model.named_parameters())
    moved = [n for n, v in fixed.items() if not torch.equal(v, params[n])]
    if moved:
        diff = max((fixed[n] - params[n]).abs().max().item() for n in moved)
        raise CheckFailure(f"fixed filters {', '.join(moved)} changed under optimiser steps (max abs change "
                           f"{diff:.3g}); freeze them with requires_grad_(False)", diff, 0.0)
    stuck = [n for n, v in free.items() if torch.equal(v, params[n])]
    if stuck:
        raise CheckFailure(f"parameters that are not fixed did not learn: {', '.join(stuck)}")
    return "fixed filters bitwise unchanged after SGD and AdamW steps; the rest learned"


@check("clear_errors", "initializer")
def check_clear_errors(component: Component) -> str:
    """A shape that is not a filter bank (one dimension) is rejected with an error naming the shape."""
    init = initializer(component)
    return expect_clear_error(lambda: _call(init, component, (8,)), "init((8,))", ("shape", "kernel", "dimension"))
