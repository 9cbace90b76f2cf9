"""Tracing a model for the graph canonizer: which modules stay leaves, which calls are which, and the cache key.

The graph canonizer reads a model's real data flow from a ``torch.fx`` trace. Modules torch itself defines
(convolutions, BatchNorm, activations, pooling), the explicit canonizer modules, torchvision's
``FrozenBatchNorm2d``/``StochasticDepth`` and the modules timm registers as not traceable (its fused
norm-and-activation modules, ``Conv2dSame``, …) stay single ``call_module`` nodes; everything else is traced
through, so additions, concatenations, products and functional calls written in any ``forward`` appear as
nodes. Norm layers of every kind are kept as leaves so that an unsupported one (LayerNorm, GroupNorm) can be
named with its module path. The tracer also records every call of a module it traces through
(:class:`ModuleCall`: its path, arguments and result as graph values) and marks each node with the calls it was
traced in (``node.meta[CALLS]``), so the planner can fold the rewritten graph back into the module hierarchy
(:mod:`~xai_plugins.canonizers.graph_hierarchy`). torchvision and timm are never imported here: their classes
are looked up only if the user's process already imported them (a model of theirs cannot exist otherwise).
"""

from __future__ import annotations

import operator
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from xai_plugins.canonizers.modules import Concat, Gate, PositionalBiasConv2d, Sum, ThresholdReLU

__all__ = [
    "ADD",
    "CALLS",
    "CAT",
    "MUL",
    "GraphTracer",
    "ModuleCall",
    "Trace",
    "UntraceableModelError",
    "fingerprint",
    "frozen_batchnorm_types",
    "is_conv_or_linear",
    "map_nodes",
    "norm_act_parts",
    "trace",
]

EXPLICIT_MODULES = (Concat, Gate, PositionalBiasConv2d, Sum, ThresholdReLU)
NORM_LEAVES = (_BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)

ADD = frozenset({operator.add, operator.iadd, torch.add, "add", "add_", "__add__", "__iadd__"})
"""``call_function`` targets and ``call_method`` names of an addition."""
MUL = frozenset({operator.mul, operator.imul, torch.mul, "mul", "mul_", "__mul__"})
"""``call_function`` targets and ``call_method`` names of a product."""
CAT = frozenset({torch.cat, torch.concat, torch.concatenate})
"""``call_function`` targets of a concatenation."""


CALLS = "xai_module_calls"
"""``node.meta`` key: the indices (into :attr:`Trace.calls`) of the module calls a node was traced in."""


class UntraceableModelError(ValueError):
    """``torch.fx`` could not trace the model; the message names the module being traced when it failed."""


def _timm_fx() -> Any:
    if "timm" not in sys.modules:
        return None
    try:
        from timm.layers import _fx
    except ImportError:  # pragma: no cover - a timm without the fx registry
        return None
    return _fx


def _timm_leaf_types() -> tuple[type, ...]:
    fx = _timm_fx()
    if fx is None:
        return ()
    return tuple(set(getattr(fx, "_leaf_modules", ())) | set(fx.get_notrace_modules()))


def _timm_autowrap() -> tuple[Callable, ...]:
    fx = _timm_fx()
    if fx is None:
        return ()
    return tuple(set(getattr(fx, "_autowrap_functions", ())) | set(fx.get_notrace_functions()))


def frozen_batchnorm_types() -> tuple[type, ...]:
    """The FrozenBatchNorm classes of torchvision and timm loaded in this process (not ``_BatchNorm``s:
    they hold ``weight``, ``bias`` and the running statistics as buffers and normalise with them)."""
    found: list[type] = []
    ops = sys.modules.get("torchvision.ops.misc")
    if ops is not None and hasattr(ops, "FrozenBatchNorm2d"):
        found.append(ops.FrozenBatchNorm2d)
    timm_norm = sys.modules.get("timm.layers.norm_act")
    if timm_norm is not None:
        found.extend(getattr(timm_norm, name) for name in ("FrozenBatchNormAct2d",) if hasattr(timm_norm, name))
    timm_frozen = sys.modules.get("timm.layers.frozen_batchnorm") or sys.modules.get("timm.layers.norm")
    if timm_frozen is not None and hasattr(timm_frozen, "FrozenBatchNorm2d"):
        found.append(timm_frozen.FrozenBatchNorm2d)
    return tuple(found)


def _other_leaves() -> tuple[type, ...]:
    found: list[type] = list(frozen_batchnorm_types())
    ops = sys.modules.get("torchvision.ops.stochastic_depth")
    if ops is not None:
        found.append(ops.StochasticDepth)
    return tuple(found)


def norm_act_parts(module: nn.Module) -> tuple[str, ...]:
    """Names of the children a fused norm-and-activation module (timm's ``BatchNormAct2d`` family) applies
    after normalising, in order (``drop``, then ``act``); empty for a plain norm layer."""
    children = module._modules
    if not children or not isinstance(children.get("act"), nn.Module):
        return ()
    return tuple(name for name in ("drop", "act") if isinstance(children.get(name), nn.Module))


def is_conv_or_linear(module: nn.Module) -> bool:
    """A convolution or Linear layer whose output is ``W x + b`` of its own ``weight`` and ``bias``: torch's
    classes, the canonizers' ``PositionalBiasConv2d`` and timm's ``Conv2dSame`` (which pads, then convolves);
    subclasses that transform their weight in ``forward`` (weight standardisation) are not."""
    kind = type(module)
    if kind in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, PositionalBiasConv2d):
        return True
    if not isinstance(module, (nn.Linear, _ConvNd)) or getattr(module, "transposed", False):
        return False
    same_math = (getattr(sys.modules.get("timm.layers.conv2d_same"), "Conv2dSame", None),
                 getattr(sys.modules.get("timm.layers.linear"), "Linear", None))
    return kind in same_math


@dataclass(frozen=True)
class ModuleCall:
    """One call of a module the tracer traced through (not a leaf)."""

    path: str
    args: tuple
    """The positional arguments as passed: graph nodes and constants, in lists, tuples and dicts as passed."""
    kwargs: dict
    output: Any
    """What the call returned: a node, or nodes and constants in lists, tuples and dicts."""
    outer: tuple[int, ...]
    """Indices of the calls this call was made in, outermost first."""


@dataclass(frozen=True)
class Trace:
    """A traced graph with the module calls traced through; node ``n`` was traced in ``calls[i]`` for every
    ``i`` in ``n.meta[CALLS]``."""

    graph: torch.fx.Graph
    calls: tuple[ModuleCall, ...]


def map_nodes(value: Any, function: Callable[[Any], Any], kind: type = torch.fx.Node) -> Any:
    """``value`` (a ``kind`` instance, or such instances and constants in plain lists, tuples and dicts) with
    every ``kind`` instance mapped by ``function`` and the lists, tuples and dicts copied. Other containers (a
    namedtuple) are returned as they are."""
    if isinstance(value, kind):
        return function(value)
    if type(value) in (list, tuple):
        return type(value)(map_nodes(item, function, kind) for item in value)
    if type(value) is dict:
        return {key: map_nodes(item, function, kind) for key, item in value.items()}
    return value


def _nodes(value: Any) -> Any:
    """``value`` with every proxy replaced by its node, lists, tuples and dicts copied (a list a module passes
    on and later appends to is recorded as it was at the call)."""
    return map_nodes(value, lambda proxy: proxy.node, torch.fx.Proxy)


class GraphTracer(torch.fx.Tracer):
    """A ``torch.fx`` tracer whose leaves are torch's modules, norm layers, the explicit canonizer modules and
    the modules timm and torchvision mark as leaves; it remembers the module it was tracing when it failed and
    records the calls it traces through (:class:`ModuleCall`, node marks under :data:`CALLS`)."""

    def __init__(self) -> None:
        super().__init__(autowrap_functions=_timm_autowrap())
        self._leaf_types = EXPLICIT_MODULES + NORM_LEAVES + _timm_leaf_types() + _other_leaves()
        self.path: list[str] = []
        self.calls: list[ModuleCall] = []
        self._open: list[int] = []

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, self._leaf_types) or is_conv_or_linear(m):
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Callable, args: tuple, kwargs: dict) -> Any:
        path = self.path_of_module(m)
        self.path.append(path)
        if self.is_leaf_module(m, path):
            result = super().call_module(m, forward, args, kwargs)
        else:
            index, last = len(self.calls), next(iter(reversed(self.graph.nodes)), None)
            arguments, keywords = _nodes(args), _nodes(kwargs)
            self._open.append(index)
            self.calls.append(ModuleCall(path, arguments, keywords, None, tuple(self._open[:-1])))
            result = super().call_module(m, forward, args, kwargs)
            self._open.pop()
            self.calls[index] = replace(self.calls[index], output=_nodes(result))
            for node in reversed(self.graph.nodes):
                if node is last:
                    break
                node.meta[CALLS] = (index, *node.meta.get(CALLS, ()))
        self.path.pop()
        return result


def trace(model: nn.Module) -> Trace:
    """The ``torch.fx`` graph of ``model`` and the module calls traced through (see :class:`GraphTracer`);
    raises :class:`UntraceableModelError` naming the module whose ``forward`` could not be traced."""
    tracer = GraphTracer()
    try:
        graph = tracer.trace(model)
        return Trace(graph, tuple(tracer.calls))
    except Exception as exc:  # noqa: BLE001 - every tracing failure gets the same explanation
        where = tracer.path[-1] if tracer.path else ""
        cls = type(model.get_submodule(where)) if where else type(model)
        raise UntraceableModelError(
            f"torch.fx cannot trace {type(model).__name__}: in the forward of module "
            f"'{where or '<model>'}' ({cls.__module__}.{cls.__qualname__}): {type(exc).__name__}: {exc}. "
            "Data-dependent Python control flow cannot be canonized automatically; make that module a leaf "
            "(subclass GraphCanonizer and extend GraphTracer.is_leaf_module) or write a canonizer for the "
            "model (subclass xai_plugins.canonizers.Canonizer)") from exc


_SCALARS = (bool, int, float, str, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)
_MODULE_TABLES = frozenset((dict, OrderedDict, set))
"""The types of a module's own tables (parameters, hooks, children): never plain, skipped without a call."""


def _plain(value: Any) -> bool:
    if isinstance(value, _SCALARS):
        return True
    return isinstance(value, tuple) and all(isinstance(item, _SCALARS) for item in value)


def fingerprint(model: nn.Module) -> tuple:
    """What the traced graph of ``model`` can depend on besides tensor values: every module's path, class and
    plain (scalar) attributes, including ``training`` and its parameters' and buffers' shapes. Models with
    the same fingerprint trace to the same graph, so the canonical forward is cached under it. Attributes are
    listed in the order they were set (the same for models built by the same code; another order only misses
    the cache). It runs at every apply, so it stays one lean pass over the modules."""
    entries = []
    for name, module in model.named_modules():
        state = module.__dict__
        attributes = tuple([(key, value) for key, value in state.items()
                            if (type(value) in _SCALAR_TYPES or type(value) not in _MODULE_TABLES and _plain(value))
                            and key[:2] != "__"])
        shapes = tuple((key, None if value is None else value.shape)
                       for field in ("_parameters", "_buffers") for key, value in state[field].items())
        entries.append((name, type(module), attributes, shapes, "forward" in state))
    return tuple(entries)


FUNCTIONAL_ACTIVATIONS: dict[Any, Callable[..., nn.Module]] = {
    F.relu: lambda inplace=False: nn.ReLU(),
    torch.relu: nn.ReLU,
    torch.relu_: nn.ReLU,
    "relu": nn.ReLU,
    "relu_": nn.ReLU,
    F.relu6: lambda inplace=False: nn.ReLU6(),
    F.silu: lambda inplace=False: nn.SiLU(),
    F.hardswish: lambda inplace=False: nn.Hardswish(),
    F.hardsigmoid: lambda inplace=False: nn.Hardsigmoid(),
    F.mish: lambda inplace=False: nn.Mish(),
    F.gelu: lambda approximate="none": nn.GELU(approximate=approximate),
    F.leaky_relu: lambda negative_slope=0.01, inplace=False: nn.LeakyReLU(negative_slope),
    F.elu: lambda alpha=1.0, inplace=False: nn.ELU(alpha),
    torch.sigmoid: nn.Sigmoid,
    F.sigmoid: nn.Sigmoid,
    "sigmoid": nn.Sigmoid,
    "sigmoid_": nn.Sigmoid,
    torch.tanh: nn.Tanh,
    F.tanh: nn.Tanh,
    "tanh": nn.Tanh,
}
"""Functional activations (``call_function`` targets and ``call_method`` names) → a factory of the torch module
computing the same thing, called with the call's arguments after the input."""

_ARGUMENTS: dict[Any, tuple[str, ...]] = {
    F.relu: ("inplace",), F.relu6: ("inplace",), F.silu: ("inplace",), F.hardswish: ("inplace",),
    F.hardsigmoid: ("inplace",), F.mish: ("inplace",), F.gelu: ("approximate",),
    F.leaky_relu: ("negative_slope", "inplace"), F.elu: ("alpha", "inplace"),
    F.adaptive_avg_pool2d: ("output_size",), F.adaptive_max_pool2d: ("output_size", "return_indices"),
    F.avg_pool2d: ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    F.max_pool2d: ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    torch.flatten: ("start_dim", "end_dim"), "flatten": ("start_dim", "end_dim"),
    torch.mean: ("dim", "keepdim"), "mean": ("dim", "keepdim"),
}
"""Positional parameter names (after the input) of the functional calls made explicit."""

FUNCTIONAL_POOLS: dict[Any, Callable[..., nn.Module]] = {
    F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d,
    F.adaptive_max_pool2d: lambda output_size, return_indices=False: nn.AdaptiveMaxPool2d(output_size),
    F.avg_pool2d: lambda kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
    divisor_override=None: nn.AvgPool2d(kernel_size, stride, padding, ceil_mode, count_include_pad,
                                        divisor_override),
    F.max_pool2d: lambda kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
    return_indices=False: nn.MaxPool2d(kernel_size, stride, padding, dilation, ceil_mode=ceil_mode),
    torch.flatten: lambda start_dim=0, end_dim=-1: nn.Flatten(start_dim, end_dim),
    "flatten": lambda start_dim=0, end_dim=-1: nn.Flatten(start_dim, end_dim),
}
"""Functional pooling and flatten calls → a factory of the torch module computing the same thing."""

DROPOUT = frozenset({F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, torch.dropout})
"""Functional dropout: an identity when called with ``training=False`` (eval mode)."""

STRUCTURAL = frozenset({
    operator.getitem, operator.setitem, getattr, torch.reshape, torch.permute, torch.transpose, torch.chunk,
    torch.split, torch.unsqueeze, torch.squeeze, torch.narrow, torch.flatten, F.pad, torch.roll,
    "size", "dim", "view", "reshape", "permute", "transpose", "contiguous", "expand", "expand_as", "chunk",
    "split", "unsqueeze", "squeeze", "narrow", "type_as", "to", "float", "clone", "repeat", "tensor_split",
})
"""Calls that only move, copy or select values (and size queries): relevance passes through their gradient."""

UNSUPPORTED_MODULES: tuple[type, ...] = (nn.LayerNorm, nn.GroupNorm, nn.MultiheadAttention, nn.Softmax,
                                         nn.LocalResponseNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
                                         nn.InstanceNorm3d, nn.Transformer)
UNSUPPORTED_CALLS = frozenset({
    F.layer_norm, F.group_norm, F.instance_norm, F.scaled_dot_product_attention, F.softmax, torch.softmax,
    torch.matmul, operator.matmul, torch.bmm, torch.einsum, F.multi_head_attention_forward, torch.baddbmm,
    "softmax", "matmul", "bmm", "__matmul__",
})
"""Operations with no exact canonical form for LRP (normalisation over features, attention): refused."""


def call_arguments(target: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The arguments after the input of a functional call, by name (see ``_ARGUMENTS``)."""
    names = _ARGUMENTS.get(target, ())
    bound = dict(zip(names, args[1:]))
    bound.update(kwargs)
    return bound
