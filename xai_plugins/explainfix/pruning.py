"""ChannelPrune: zero the least salient spatial filters, then physically remove the channels that emptied.

The user's model is never changed: the zeroed model and the smaller model are new objects. The smaller
model is a :class:`torch.fx.GraphModule` traced from the zeroed model whose convolutions, batch norms and
linear layers lost the removed channels (see :mod:`~.channel_graph` for the exactness rules); on the
example input its outputs are checked against the zeroed model's.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from xai_plugins.explainfix.channel_graph import analyse_channels, apply_plan, stream_cuts
from xai_plugins.explainfix.refill import refill_zeroed_filters
from xai_plugins.explainfix.saliency import FilterSaliency, Objective, spatial_filter_saliency
from xai_plugins.explainfix.spatial import spatial_convs
from xai_plugins.model_state import explaining

__all__ = ["PruneError", "PruneResult", "prune_spatial_filters", "trace_model"]


class PruneError(ValueError):
    """The model cannot be pruned as asked (untraceable architecture, bad saliency, bad example input)."""


@dataclass
class PruneResult:
    """The zeroed model, the physically smaller model computing the zeroed model's function, what changed."""

    zeroed: nn.Module
    pruned: fx.GraphModule
    fraction: float
    zeroed_filters: int
    total_filters: int
    parameters_before: int
    parameters_after: int
    channels: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per changed module: channels (features) before and after."""
    silenced: dict[str, list[int]] = field(default_factory=dict)
    """Batch norms whose emptied channels were silenced (scale and shift set to zero)."""
    max_relative_error: float = 0.0
    """``max |pruned(x) - zeroed(x)| / max |zeroed(x)|`` on the example input (before any refill)."""
    refilled: int = 0
    """Weight entries of ``pruned`` re-initialised by ``refill``."""
    stream_cuts: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    """With ``streams=True``: per 1x1 convolution or linear layer, the output rows and input columns zeroed
    so that channels whose spatial filters were all zeroed go from every block."""

    def __str__(self) -> str:
        saved = 1 - self.parameters_after / max(self.parameters_before, 1)
        return (f"zeroed {self.zeroed_filters:,} of {self.total_filters:,} spatial filters "
                f"({100 * self.fraction:.0f}% asked); removed channels in {len(self.channels)} modules; "
                f"parameters {self.parameters_before:,} -> {self.parameters_after:,} ({100 * saved:.1f}% fewer); "
                f"max relative output difference {self.max_relative_error:.2e}")


class _PathTracer(fx.Tracer):
    """A tracer that remembers which module it was tracing through when tracing fails."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        self.stack.append(self.path_of_module(m))
        result = super().call_module(m, forward, args, kwargs)
        self.stack.pop()  # left in place when tracing fails, so the failing module stays on top
        return result


def trace_model(model: nn.Module) -> fx.GraphModule:
    """Trace ``model`` with torch.fx; a failure names the module whose forward stopped the tracer."""
    tracer = _PathTracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # noqa: BLE001 - any tracing failure becomes one clear error
        where = tracer.stack[-1] if tracer.stack else ""
        module = model.get_submodule(where) if where else model
        place = f"module {where!r} ({type(module).__name__})" if where else \
            f"the forward of {type(model).__name__} itself"
        raise PruneError(
            f"cannot prune {type(model).__name__}: torch.fx could not trace {place}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. Remove data-dependent "
            "control flow from that forward, or pass a model whose forward torch.fx can trace") from exc
    return fx.GraphModule(model, graph, type(model).__name__)


def _check_fraction(fraction: Any) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1 \
            or math.isnan(fraction):
        raise ValueError(f"pruning fraction must be a number in [0, 1), got {fraction!r}; 0.9 zeroes the 90% "
                         "least salient spatial filters (1 would remove every filter)")
    return float(fraction)


def _scores(model: nn.Module, convs: list[tuple[str, nn.Module]], loader: Iterable[Any] | None,
            saliency: FilterSaliency | Sequence[torch.Tensor] | None, max_batches: int | None,
            objective: Objective | None) -> list[torch.Tensor]:
    if saliency is not None:
        scores = list(saliency.taylor) if isinstance(saliency, FilterSaliency) else list(saliency)
        expected = [tuple(c.weight.shape[:2]) for _, c in convs]
        got = [tuple(torch.as_tensor(s).shape) for s in scores]
        if got != expected:
            raise PruneError(f"saliency must hold one (out, in/groups) tensor per spatial convolution "
                             f"{expected}, got {got}; compute it with spatial_filter_saliency(model, loader)")
        return [torch.as_tensor(s).detach().float().cpu() for s in scores]
    if loader is not None:
        return [t.float().cpu() for t in spatial_filter_saliency(
            model, loader, max_batches=max_batches, objective=objective, gradient=False).taylor]
    return [c.weight.detach().abs().flatten(2).sum(2).float().cpu() for _, c in convs]


def _default_input(convs: list[tuple[str, nn.Module]]) -> torch.Tensor:
    first = convs[0][1]
    size = {1: 64, 2: 64, 3: 16}.get(len(first.kernel_size), 16)
    return torch.zeros(2, first.in_channels, *([size] * len(first.kernel_size)))


def _first_input(loader: Iterable[Any]) -> torch.Tensor | None:
    for batch in loader:
        x = batch if isinstance(batch, torch.Tensor) else batch[0]
        return x[:2]
    return None


def _outputs(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _outputs(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _outputs(v)]
    return []


def _relative_error(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        outs_a, outs_b = _outputs(a(x)), _outputs(b(x))
    worst = 0.0
    for oa, ob in zip(outs_a, outs_b):
        scale = oa.abs().max().item() or 1.0
        worst = max(worst, (oa - ob).abs().max().item() / scale)
    return worst


def _traced_with_shapes(model: nn.Module, zeroed: nn.Module, example_input: torch.Tensor) -> fx.GraphModule:
    gm = trace_model(copy.deepcopy(zeroed))
    try:
        with explaining(gm, freeze=False, warn=False), torch.no_grad():
            ShapeProp(gm).propagate(example_input)
    except Exception as exc:  # noqa: BLE001 - report the example input problem clearly
        raise PruneError(f"could not run {type(model).__name__} on the example input of shape "
                         f"{tuple(example_input.shape)}: {type(exc).__name__}: {exc}; pass example_input= "
                         "with a valid input batch") from exc
    return gm


def prune_spatial_filters(model: nn.Module, fraction: float, loader: Iterable[Any] | None = None, *,
                          saliency: FilterSaliency | Sequence[torch.Tensor] | None = None,
                          max_batches: int | None = None, objective: Objective | None = None,
                          example_input: torch.Tensor | None = None, partial: bool = True,
                          streams: bool = False, refill: str | Callable[..., torch.Tensor] | None = None,
                          seed: int = 0) -> PruneResult:
    """ChannelPrune of ExplainFix: zero the ``fraction`` least salient spatial filters, remove empty channels.

    Saliency of a spatial filter ``W[o, i]`` is ``sum |W * dL/dW|`` over its kernel, accumulated over the
    batches of ``loader`` (the paper's), or given as ``saliency`` (one ``(out, in/groups)`` tensor per spatial
    convolution, or a :class:`~.saliency.FilterSaliency`); with neither, the filters' L1 norms are used.
    Filters are ranked across all layers. An output channel whose filters are all zero is empty and is
    silenced: its convolution bias, and the scale and shift of a batch norm it passes through, are set to
    zero (in both returned models), so it carries exactly zero rather than a constant. Empty channels and
    channels no consumer reads any more are removed through batch norms, activations, residual sums,
    products and concatenations. With ``partial`` (default) a channel that has to stay, such as a
    residual-stream channel some block still uses, is also cut out of every block that does not read or
    write it (see :mod:`~.channel_graph`), so every all-zero row and column of every convolution goes.
    ``streams=True`` also cuts a channel whose spatial writers (or readers) are all zeroed but which a
    1x1 shortcut convolution still writes (or a 1x1 convolution or linear layer still reads), the way the
    authors' code cuts residual streams: those 1x1 rows (columns) are zeroed too, in ``result.zeroed``, so
    the channel goes from every block consistently and the pruned model still computes the zeroed model's
    function (``result.stream_cuts`` lists them; ``zeroed`` then differs from plain filter zeroing there).
    ``refill`` (``"fill_zero"``, the paper's FillZero, or an initializer name or callable for a reset)
    re-initialises the zero filters left in ``result.pruned`` with ``seed``, as the authors do before
    fine-tuning; ``max_relative_error`` is measured before that, and afterwards the pruned model no longer
    computes the zeroed model's function. ``example_input`` (default: two inputs from
    ``loader``, or zeros of 64 pixels per side) drives shape propagation and the equality check, and is
    run in eval mode. ``model`` itself is never changed; fine-tune ``result.pruned`` afterwards as the paper
    does. Raises ``ValueError`` for a fraction outside ``[0, 1)``, and :class:`PruneError` naming the module
    torch.fx could not trace.
    """
    fraction = _check_fraction(fraction)
    convs = spatial_convs(model)
    trace_model(model)
    scores = _scores(model, convs, loader, saliency, max_batches, objective)
    if example_input is None and loader is not None:
        example_input = _first_input(loader)
    if example_input is None:
        example_input = _default_input(convs)

    zeroed = copy.deepcopy(model)
    flat = torch.cat([s.reshape(-1) for s in scores])
    count = int(fraction * flat.numel())
    order = torch.argsort(flat, stable=True)[:count]
    offsets = torch.tensor([0] + [s.numel() for s in scores]).cumsum(0)
    with torch.no_grad():
        for layer, (name, _) in enumerate(convs):
            chosen = order[(order >= offsets[layer]) & (order < offsets[layer + 1])] - offsets[layer]
            conv = zeroed.get_submodule(name)
            if len(chosen):
                conv.weight.view(-1, *conv.weight.shape[2:])[chosen.to(conv.weight.device)] = 0
            if conv.bias is not None:
                conv.bias[(conv.weight.flatten(1) == 0).all(1)] = 0

    cuts: dict[str, dict[str, list[int]]] = {}
    if streams:
        cuts = stream_cuts(_traced_with_shapes(model, zeroed, example_input))
        with torch.no_grad():
            for target, sides in cuts.items():
                module = zeroed.get_submodule(target)
                module.weight[sides["out"]] = 0
                module.weight[:, sides["in"]] = 0
                if getattr(module, "bias", None) is not None:
                    module.bias[sides["out"]] = 0
    gm = _traced_with_shapes(model, zeroed, example_input)
    plan = analyse_channels(gm, partial=partial)
    with torch.no_grad():
        for target, channels in plan.silenced.items():
            bn = zeroed.get_submodule(target)
            bn.weight[channels] = 0
            bn.bias[channels] = 0
    changed = apply_plan(gm, plan)
    gm.recompile()
    with explaining(zeroed, freeze=False, warn=False), explaining(gm, freeze=False, warn=False):
        error = _relative_error(zeroed, gm, example_input)
    refilled = refill_zeroed_filters(gm, refill, seed) if refill is not None else 0
    return PruneResult(
        zeroed=zeroed, pruned=gm, fraction=fraction, zeroed_filters=count, total_filters=flat.numel(),
        parameters_before=sum(p.numel() for p in model.parameters()),
        parameters_after=sum(p.numel() for p in gm.parameters()), channels=changed, silenced=plan.silenced,
        max_relative_error=error, refilled=refilled, stream_cuts=cuts)
