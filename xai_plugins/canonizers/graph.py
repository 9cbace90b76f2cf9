"""The graph canonizer: canonization of any traceable CNN from its ``torch.fx`` graph.

:class:`GraphCanonizer` traces the model (leaf modules kept, see :mod:`~xai_plugins.canonizers.graph_trace`),
plans the rewrite from the graph's real data flow (:mod:`~xai_plugins.canonizers.graph_plan`: BatchNorm
merged into a neighbouring linear layer, residual sums, concatenations, gates and functional calls as
explicit modules), folds the rewritten graph back into the module hierarchy
(:mod:`~xai_plugins.canonizers.graph_hierarchy`) and applies it with the recording editors of
:class:`~xai_plugins.canonizers.base.Canonizer`: new modules become children (so hosts see them in
``model.modules()``), merged layers get new parameters, merged BatchNorms an identity forward, every module whose
inside the rewrite changed and the model itself the ``forward`` ``torch.fx`` generated from their part of the
rewritten graph. Blocks, stages and containers stay called modules, with the original arguments and results, so
hooks on them (a user's, a host's, Captum's layer attributions) fire as without the canonizer; the modules for
which that cannot hold are rows of :func:`explain_canonization`'s table (``flat``, ``shifted``). ``apply`` is
atomic and ``remove`` restores the model bitwise.

At apply the canonical model is checked on a probe input: an output more than ``tolerance`` (1e-5) away from
the original, relative to its largest magnitude, is refused with an error and the model left untouched; so is
a model with an operation that has no canonical form (LayerNorm, attention), named with node and module path.
Plans are cached by the model's structure (:func:`~xai_plugins.canonizers.graph_trace.fingerprint`): a second
apply to the same kind of model does not trace again.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from xai_plugins.canonizers.base import Canonizer
from xai_plugins.canonizers.batchnorm import batchnorm_affine, merge_following
from xai_plugins.canonizers.graph_plan import Plan, Row, build_plan, probe_input  # noqa: F401 - Row: the rows of a table
from xai_plugins.canonizers.graph_trace import UntraceableModelError, fingerprint, trace
from xai_plugins.canonizers.modules import PositionalBiasConv2d

__all__ = ["CanonizationMismatchError", "CanonizationTable", "GraphCanonizer", "Row", "UnsupportedModelError",
           "UntraceableModelError", "canonize", "explain_canonization", "graph_canonizer_for"]

SIZES = (64, 128, 224, 299)
"""Spatial probe sizes tried, in order, when the input shape is inferred (the first the model accepts)."""
ROUNDING_FACTOR = 4
"""The verification accepts ``ROUNDING_FACTOR`` times the original model's rounding noise on the probe where that
exceeds the tolerance. The noise is the larger of two output changes: under a one-ulp relative change of every
input value, and under a one-ulp relative change of every parameter (what merging does: each merged weight and
bias is the exact product rounded once). The original and the canonical model each carry rounding errors of about
that size (deep networks with large activations, or logits that nearly cancel, amplify float32 rounding far
beyond 1e-5), so their difference is bounded by about twice it."""
_CACHE_LIMIT = 64
_PLANS: dict[tuple, Plan] = {}
_LOCK = threading.Lock()


class UnsupportedModelError(ValueError):
    """The model has operations without an exact canonical form; the message names the first ones."""


class CanonizationMismatchError(ValueError):
    """The canonical model's output differs from the original's on the probe input by more than allowed."""


class CanonizationTable(tuple):
    """What a graph canonization does, one :class:`~xai_plugins.canonizers.graph_plan.Row` per node or
    module (``merged``, ``explicit``, ``copied``, ``split``, ``removed``, ``left``, ``unsupported``, ``flat``,
    ``shifted``); ``str()`` renders it as a fixed-width table."""

    def counts(self) -> dict[str, int]:
        """Number of rows per action."""
        found: dict[str, int] = {}
        for row in self:
            found[row.action] = found.get(row.action, 0) + 1
        return found

    def __str__(self) -> str:
        header = ("action", "node", "module", "detail")
        lines = [header, *((row.action, row.node, row.module, row.detail) for row in self)]
        widths = [max(len(line[i]) for line in lines) for i in range(3)]
        rendered = ["  ".join(cell.ljust(width) for cell, width in zip(line[:3], widths)) + "  " + line[3]
                    for line in lines]
        summary = ", ".join(f"{count} {action}" for action, count in self.counts().items())
        return "\n".join([*rendered, f"({summary or 'nothing to do'})"])


def _first_layer_inputs(model: nn.Module) -> int | None:
    for module in model.modules():
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            return module.in_channels
        if isinstance(module, nn.Linear):
            return -module.in_features
    return None


def _infer_shape(model: nn.Module) -> tuple[int, ...]:
    """A probe shape the model accepts: ``(1, C, S, S)`` from its first convolution (the first of
    :data:`SIZES` that runs), ``(1, F)`` for a model that starts with a Linear layer."""
    inputs = _first_layer_inputs(model)
    if inputs is None:
        raise ValueError(f"cannot infer an input shape for {type(model).__name__} (no convolution or Linear "
                         "layer); pass GraphCanonizer(input_shape=(1, C, H, W))")
    if inputs < 0:
        return (1, -inputs)
    errors = []
    for size in SIZES:
        shape = (1, inputs, size, size)
        try:
            with torch.no_grad():
                model(torch.zeros_like(probe_input(model, shape)))
        except Exception as exc:  # noqa: BLE001 - any failure means: try the next size
            errors.append(f"{size}: {exc}")
            continue
        return shape
    raise ValueError(f"cannot infer an input shape for {type(model).__name__}: none of the probe sizes "
                     f"{SIZES} runs ({'; '.join(errors)}); pass GraphCanonizer(input_shape=(1, C, H, W))")


def _check_eval(model: nn.Module) -> None:
    training = [name or "<model>" for name, module in model.named_modules()
                if module.training and isinstance(module, (_BatchNorm, nn.Dropout))]
    if training:
        raise ValueError(f"{type(model).__name__} has modules in training mode ({', '.join(training[:3])}"
                         f"{', …' if len(training) > 3 else ''}): canonization is for explaining a fixed "
                         "model; call model.eval() first")


def plan_for(model: nn.Module, input_shape: Sequence[int] | None = None) -> Plan:
    """The (cached) canonization plan of ``model``; traces and plans only for a new model structure."""
    key = (fingerprint(model), None if input_shape is None else tuple(input_shape))
    with _LOCK:
        plan = _PLANS.get(key)
    if plan is not None:
        return plan
    shape = _infer_shape(model) if input_shape is None else tuple(input_shape)
    plan = build_plan(model, trace(model), shape)
    with _LOCK:
        if len(_PLANS) >= _CACHE_LIMIT:
            _PLANS.pop(next(iter(_PLANS)))
        _PLANS[key] = plan
    return plan


def explain_canonization(model: nn.Module, input_shape: Sequence[int] | None = None) -> CanonizationTable:
    """The table of what :class:`GraphCanonizer` would merge, make explicit, split, copy or leave in ``model``,
    which modules it cannot keep called (``flat``) or calls with changed values (``shifted``), and what it cannot
    canonize, without changing the model: what LRP and hooks will see."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"explain_canonization expects a torch.nn.Module, got {type(model).__name__}")
    _check_eval(model)
    return CanonizationTable(plan_for(model, input_shape).rows)


def graph_canonizer_for(model: nn.Module) -> tuple[GraphCanonizer | None, str]:
    """``(GraphCanonizer(), "")`` if the graph canonizer can canonize ``model``, else ``(None, why not)``.

    A model in training mode is not probed (its BatchNorm statistics would change): it gets the canonizer,
    whose ``apply`` then asks for ``model.eval()``."""
    if any(module.training for module in model.modules() if isinstance(module, (_BatchNorm, nn.Dropout))):
        return GraphCanonizer(), ""
    try:
        plan = plan_for(model)
    except (UntraceableModelError, ValueError) as exc:
        return None, str(exc)
    if plan.unsupported:
        return None, "; ".join(f"node '{row.node}' in module '{row.module}': {row.detail}"
                               for row in plan.unsupported[:3])
    return GraphCanonizer(), ""


def _identity_forward(self: nn.Module, input: Tensor) -> Tensor:
    return input.clone()


def _norm_only_forward(self: nn.Module, input: Tensor) -> Tensor:
    if isinstance(self, _BatchNorm):
        return _BatchNorm.forward(self, input)
    a, b = _frozen_affine(self)
    shape = (1, -1) + (1,) * (input.dim() - 2)
    return input * a.view(shape).to(input.dtype) + b.view(shape).to(input.dtype)


def _frozen_affine(norm: nn.Module) -> tuple[Tensor, Tensor]:
    a = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    return a, norm.bias - norm.running_mean * a


def _affine(norm: nn.Module) -> tuple[Tensor, Tensor]:
    return batchnorm_affine(norm) if isinstance(norm, _BatchNorm) else _frozen_affine(norm)


def _stand_in(bn: _BatchNorm, through_relu: bool) -> nn.Module:
    """A throwaway parent holding a BatchNorm ``norm`` that computes exactly ``x -> a*x + d``, with ``(a, b)``
    those of ``bn`` and ``d`` the constant a following layer sees (``b``, or ``relu(b)`` where ``a == 0``
    behind a ReLU): unit variance, ``eps = 0`` and zero mean make ``batchnorm_affine`` return ``(a, d)``
    bitwise, so ``merge_following`` folds the same terms into a second layer behind the same ReLU."""
    a, b = batchnorm_affine(bn)
    d = torch.where(a == 0, b.clamp(min=0), b) if through_relu else b
    parent = nn.Module()
    parent.norm = nn.BatchNorm2d(a.numel(), eps=0.0, device=a.device, dtype=a.dtype)
    parent.norm.weight.data.copy_(a)
    parent.norm.bias.data.copy_(d)
    parent.norm.eval()
    return parent


def _outputs(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [tensor for item in value for tensor in _outputs(item)]
    return []


_SAME_WIDTH_INTEGER = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16,
                       torch.bfloat16: torch.int16}


def _one_ulp_away(value: Tensor) -> Tensor:
    """``value`` with every entry moved by exactly one unit in the last place: its lowest mantissa bit flipped,
    which moves it up or down depending on that bit (pseudo-random over real data, and one elementwise pass: it
    runs on every parameter at every verified apply, so it must cost no more than a forward)."""
    integer = _SAME_WIDTH_INTEGER[value.dtype]
    return (value.detach().view(integer) ^ 1).view(value.dtype)


def relative_difference(reference: Any, output: Any) -> float:
    """``max|output - reference| / max|reference|`` over every tensor of the two outputs."""
    pairs = list(zip(_outputs(reference), _outputs(output)))
    if not pairs or len(_outputs(reference)) != len(_outputs(output)):
        return float("inf")
    error = max(float((b.double() - a.double()).abs().max()) for a, b in pairs)
    scale = max(float(a.double().abs().max()) for a, _ in pairs)
    return error / scale if scale > 0 else error


def _default_of(cls: type, option: str) -> Any:
    """The default of ``option`` in the first ``__init__`` along ``cls``'s MRO that takes it."""
    for klass in cls.__mro__:
        parameter = inspect.signature(klass.__init__).parameters.get(option)
        if parameter is not None:
            return parameter.default
    raise AttributeError(f"no constructor along {cls.__name__}'s MRO takes {option!r}")


class GraphCanonizer(Canonizer):
    """Canonize any traceable CNN from its ``torch.fx`` graph (see the module docstring).

    ``input_shape`` is the probe input's shape (inferred from the first convolution if ``None``);
    ``verify=False`` skips the probe check at apply (the plan is the same; only the check costs four forward
    passes: the original on the probe, on the probe rounded by one unit, with its parameters rounded by one unit,
    and the canonical model); ``tolerance`` is the largest relative output change accepted (or
    ``ROUNDING_FACTOR`` times the model's own rounding noise on the probe, if larger).
    """

    def __init__(self, input_shape: Sequence[int] | None = None, verify: bool = True,
                 tolerance: float = 1e-5) -> None:
        super().__init__()
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.verify = verify
        self.tolerance = tolerance

    def __repr__(self) -> str:
        """The constructor call, with the options that differ from the class's defaults (a preset's ``verify``
        default differs from this class's). A default is read from the first class in the MRO whose
        ``__init__`` takes the option, so a subclass with its own constructor is described too."""
        options = [f"{name}={getattr(self, name)!r}" for name in ("input_shape", "verify", "tolerance")
                   if getattr(self, name) != _default_of(type(self), name)]
        return f"{type(self).__name__}({', '.join(options)})"

    def copy(self) -> GraphCanonizer:
        return type(self)(self.input_shape, self.verify, self.tolerance)

    def canonize(self, model: nn.Module) -> None:
        _check_eval(model)
        self.canonize_planned(model, plan_for(model, self.input_shape))

    def canonize_planned(self, model: nn.Module, plan: Plan) -> None:
        """Refuse a plan with unsupported operations, else :meth:`execute` it, verified on the probe input
        unless ``verify=False``."""
        if plan.unsupported:
            listed = "; ".join(f"node '{row.node}' in module '{row.module}': {row.detail}"
                               for row in plan.unsupported[:3])
            more = len(plan.unsupported) - 3
            raise UnsupportedModelError(
                f"{type(model).__name__} cannot be canonized: {listed}"
                f"{f' (and {more} more)' if more > 0 else ''}. The model was not changed. LRP rules for these "
                "operations are not exact; explain_canonization(model) lists everything")
        probe = reference = None
        allowed = self.tolerance
        if self.verify:
            probe = probe_input(model, plan.input_shape)
            with torch.no_grad():
                reference = model(probe)
                # the original's own float rounding noise (see ROUNDING_FACTOR): its output change when every
                # input value, or every parameter, moves by one unit of rounding
                rounded_input = model(_one_ulp_away(probe)) if probe.dtype in _SAME_WIDTH_INTEGER else reference
                rounded_parameters = functional_call(model, {
                    name: _one_ulp_away(value) for name, value in model.named_parameters()
                    if value.dtype in _SAME_WIDTH_INTEGER}, (probe,))
            noise = max(relative_difference(reference, rounded_input),
                        relative_difference(reference, rounded_parameters))
            allowed = max(self.tolerance, ROUNDING_FACTOR * noise)
        self.execute(model, plan)
        if self.verify:
            with torch.no_grad():
                error = relative_difference(reference, model(probe))
            if not error <= allowed:
                raise CanonizationMismatchError(
                    f"the canonical {type(model).__name__} differs from the original by {error:.2e} (relative, "
                    f"on a probe input of shape {plan.input_shape}), more than allowed ({allowed:.2e}: the "
                    f"tolerance {self.tolerance:g} or {ROUNDING_FACTOR} times the model's own rounding noise); "
                    "the model was not changed. explain_canonization(model) lists what the rewrite does")

    def execute(self, model: nn.Module, plan: Plan) -> None:
        """Make the plan's edits on ``model`` through the recording editors.

        Paths are resolved through their parent, looked up in one table of the model's modules made before the
        edits: the edits replace leaves only (a ReLU by a ``ThresholdReLU``, a padded convolution by a
        ``PositionalBiasConv2d``) and add children under fresh names, so a parent in the table is still the
        model's, and its child is read at use. A parent added by the edits is resolved from the model."""
        parents = dict(model.named_modules())

        def slot(path: str) -> tuple[nn.Module, str]:
            parent, _, name = path.rpartition(".")
            owner = parents.get(parent)
            return (model.get_submodule(parent) if owner is None else owner), name

        def module(path: str) -> nn.Module:
            owner, name = slot(path)
            return owner.get_submodule(name)

        for parent, name, factory in plan.children:
            self.set_child(slot(f"{parent}.{name}" if parent else name)[0], name, factory(model))
        for bn, relu, layer, between, further in plan.following:
            if further:  # the same terms for every further layer, from a stand-in BatchNorm (see _stand_in)
                stand_in = _stand_in(module(bn), relu is not None)
            merge_following(self, slot(bn), None if relu is None else slot(relu), slot(layer),
                            between=[module(path) for path in between])
            for path in further:
                merge_following(self, (stand_in, "norm"), None, slot(path))
        for bn, layers in plan.preceding:
            norm = module(bn)
            a, b = _affine(norm)
            for layer, start, stop in layers:
                self.merge_preceding(module(layer), a[start:stop], b[start:stop])
            self.override_forward(norm, _identity_forward)
        for path in plan.norm_only:
            self.override_forward(module(path), _norm_only_forward)
        for path, forward in plan.forwards:
            self.override_forward(module(path), forward)
        self.override_forward(model, plan.forward)

    def merge_preceding(self, layer: nn.Module, a: Tensor, b: Tensor) -> None:
        """Fold ``x -> a*x + b`` (per output channel) into the convolution or Linear ``layer``."""
        weight = layer.weight
        a, b = a.to(weight.dtype), b.to(weight.dtype)
        shape = (-1,) + (1,) * (weight.dim() - 1)
        bias = b if layer.bias is None else torch.addcmul(b, layer.bias, a)
        self.swap_parameter(layer, "weight", weight * a.view(shape))
        self.swap_parameter(layer, "bias", bias)
        if isinstance(layer, PositionalBiasConv2d):
            self.swap_buffer(layer, "bias_kernel", layer.bias_kernel * a.view(-1, 1, 1, 1))


def canonize(model: nn.Module, input_shape: Sequence[int] | None = None) -> GraphCanonizer:
    """Apply a :class:`GraphCanonizer` to ``model`` and return it (``.remove()`` restores the model)."""
    canonizer = GraphCanonizer(input_shape)
    canonizer.apply(model)
    return canonizer
