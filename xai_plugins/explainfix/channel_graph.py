"""Channel analysis and removal on a torch.fx graph: which channels can go without changing the function.

Every channel of every tensor in the traced graph gets a variable; operations that act channel by channel
(batch norm, activations, pooling, depthwise convolution, residual sums, products, concatenation along
channels, flatten before a linear layer) tie the channels they connect into one variable, so removing a
variable removes that channel everywhere it flows. A variable can be removed exactly when

- it never reaches the model output, an input, or an operation the analysis does not know (those pin it);
- at every consumer that mixes channels (a convolution with one group, a linear layer) either the consumer's
  weights on that channel are all zero, or the channel is identically zero there.

A channel is identically zero when a convolution's filters for it are all zero (and its bias is zero),
and stays zero through operations that map zero to zero (ReLU, GELU, SiLU, tanh, pooling, sums of zero
channels, products with a zero channel); a batch norm of a zero channel is silenced (scale and shift set to
zero, in the zeroed model too) so that an emptied channel carries exactly zero instead of a constant.
Removal slices parameters of convolutions, batch norms and linear layers; the graph itself is unchanged
because the remaining operations adapt to the channel count.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

__all__ = ["ChannelPlan", "analyse_channels", "apply_plan"]

_ZERO_KEEPING_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Mish,
    nn.Tanh, nn.Hardtanh, nn.Softsign, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
_OTHER_CHANNELWISE_MODULES = (nn.Sigmoid, nn.Hardsigmoid, nn.Softplus, nn.LogSigmoid)
_ZERO_KEEPING_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.silu, F.gelu, F.hardswish, F.mish,
    torch.tanh, F.tanh, F.hardtanh, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.max_pool1d,
    F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
    F.adaptive_max_pool3d, F.relu_, torch.relu_,
}
_OTHER_CHANNELWISE_FUNCTIONS = {torch.sigmoid, F.sigmoid, F.hardsigmoid, F.softplus}
_ZERO_KEEPING_METHODS = {"relu", "relu_", "tanh", "tanh_", "contiguous", "clone", "detach", "float"}
_OTHER_CHANNELWISE_METHODS = {"sigmoid", "sigmoid_", "exp", "exp_"}
_SHAPE_ONLY_METHODS = {"size", "dim"}
_ADD = {operator.add, operator.iadd, torch.add, operator.sub, operator.isub, torch.sub}
_MUL = {operator.mul, operator.imul, torch.mul}
_DIV = {operator.truediv, operator.itruediv, torch.div}
_REDUCE_METHODS = {"mean", "sum", "amax"}
_REDUCE_FUNCTIONS = {torch.mean, torch.sum, torch.amax}


@dataclass
class _Use:
    """A consumer that mixes channels: module ``target`` reads feature ``index`` of its input, carrying
    ``var``; ``zero`` when its weights for that feature are all zero or the feature is identically zero."""

    target: str
    index: int
    var: int
    zero: bool


@dataclass
class ChannelPlan:
    """The result of the analysis: which channel variables go, and how to slice each module."""

    vars: dict[str, list[int]]
    removed: set[int]
    slices: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    silenced: dict[str, list[int]] = field(default_factory=dict)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self, n: int) -> list[int]:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return list(range(start, start + n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _meta_shape(node: Any) -> tuple[int, ...] | None:
    if not isinstance(node, fx.Node):
        return None
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(shape) if shape is not None else None


def _channel_count(node: Any) -> int | None:
    shape = _meta_shape(node)
    return shape[1] if shape is not None and len(shape) >= 2 else None


def _flat_nodes(args: Any) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg(args, found.append)
    return found


def _is_zero(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else (t.detach() == 0)


class _Analysis:
    """One pass over the graph in topological order, then the choice of removable variables."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.uf = _UnionFind()
        self.vars: dict[fx.Node, list[int] | None] = {}
        self.zero: dict[fx.Node, list[bool] | None] = {}
        self.pinned: set[int] = set()
        self.uses: list[_Use] = []
        self.modules = dict(gm.named_modules())
        self.calls: dict[str, int] = {}
        for node in gm.graph.nodes:
            if node.op == "call_module":
                self.calls[node.target] = self.calls.get(node.target, 0) + 1
        self.conv_io: dict[str, tuple[list[int], list[int]]] = {}
        self.tied: dict[str, list[int]] = {}
        self.linear_in: dict[str, list[int]] = {}
        self.silenced: dict[str, list[int]] = {}

    # -- variables ------------------------------------------------------------------------------------
    def fresh(self, node: fx.Node, pin: bool) -> None:
        c = _channel_count(node)
        if c is None:
            self.vars[node], self.zero[node] = None, None
            return
        v = self.uf.new(c)
        if pin:
            self.pinned.update(v)
        self.vars[node], self.zero[node] = v, [False] * c

    def pin_inputs(self, node: fx.Node) -> None:
        for arg in _flat_nodes((node.args, node.kwargs)):
            self.pinned.update(self.vars.get(arg) or [])

    def barrier(self, node: fx.Node) -> None:
        self.pin_inputs(node)
        self.fresh(node, pin=True)

    def passthrough(self, node: fx.Node, src: Any, keeps_zero: bool) -> None:
        src_vars = self.vars.get(src) if isinstance(src, fx.Node) else None
        others = [a for a in _flat_nodes((node.args[1:], node.kwargs)) if _meta_shape(a) is not None]
        if src_vars is None or others or _channel_count(node) != len(src_vars):
            self.barrier(node)
            return
        self.vars[node] = list(src_vars)
        self.zero[node] = list(self.zero[src]) if keeps_zero else [False] * len(src_vars)

    def elementwise(self, node: fx.Node, operands: list[Any], rule: str) -> None:
        c = _channel_count(node)
        tensors = [a for a in operands if isinstance(a, fx.Node) and _meta_shape(a) is not None]
        if c is None or len(operands) != 2 or node.kwargs or any(self.vars.get(a) is None for a in tensors):
            self.barrier(node)
            return
        full = [a for a in tensors if len(self.vars[a]) == c and len(_meta_shape(a)) == len(_meta_shape(node))]
        if not full:
            self.barrier(node)
            return
        for a in tensors:
            if a not in full:
                self.pinned.update(self.vars[a])
        base = self.vars[full[0]]
        for a in full[1:]:
            for x, y in zip(base, self.vars[a]):
                self.uf.union(x, y)
        self.vars[node] = list(base)
        if rule == "add":
            exact = len(full) == len(operands)
            self.zero[node] = [exact and all(self.zero[a][k] for a in full) for k in range(c)]
        elif rule == "mul":
            self.zero[node] = [any(self.zero[a][k] for a in full) for k in range(c)]
        else:
            numerator = operands[0]
            self.zero[node] = list(self.zero[numerator]) if numerator in full else [False] * c

    def flatten(self, node: fx.Node, src: fx.Node) -> None:
        shape, out = _meta_shape(src), _meta_shape(node)
        src_vars = self.vars.get(src)
        if src_vars is None or out is None or len(out) != 2 or out[0] != shape[0] or out[1] % len(src_vars):
            self.barrier(node)
            return
        per = out[1] // len(src_vars)
        self.vars[node] = [v for v in src_vars for _ in range(per)]
        self.zero[node] = [z for z in self.zero[src] for _ in range(per)]

    # -- modules --------------------------------------------------------------------------------------
    def conv(self, node: fx.Node, module: nn.modules.conv._ConvNd, src: fx.Node) -> None:
        weight = module.weight.detach()
        out_ch = weight.shape[0]
        filt_zero = (weight.reshape(out_ch, weight.shape[1], -1) == 0).all(-1)
        bias_zero = _is_zero(module.bias)
        bias_zero = torch.ones(out_ch, dtype=torch.bool) if bias_zero is None else bias_zero
        src_vars, src_zero = self.vars[src], self.zero[src]
        if module.groups == 1:
            used_zero = filt_zero.all(0).tolist()
            for k, v in enumerate(src_vars):
                self.uses.append(_Use(node.target, k, v, used_zero[k] or src_zero[k]))
            self.fresh(node, pin=False)
            self.zero[node] = (filt_zero.all(1) & bias_zero).tolist()
            self.conv_io[node.target] = (src_vars, self.vars[node])
        elif module.groups == module.in_channels == module.out_channels:
            self.vars[node] = list(src_vars)
            self.zero[node] = [bool(bias_zero[k]) and (bool(filt_zero[k, 0]) or src_zero[k])
                               for k in range(out_ch)]
            self.tied[node.target] = src_vars
        else:
            self.barrier(node)

    def batchnorm(self, node: fx.Node, module: nn.modules.batchnorm._BatchNorm, src: fx.Node) -> None:
        self.vars[node] = list(self.vars[src])
        self.tied[node.target] = self.vars[src]
        dead = [k for k, z in enumerate(self.zero[src]) if z]
        if module.affine and dead:
            with torch.no_grad():
                module.weight[dead] = 0
                module.bias[dead] = 0
            self.silenced[node.target] = dead
        self.zero[node] = list(self.zero[src]) if module.affine else [False] * len(self.vars[src])

    def call_module(self, node: fx.Node) -> None:
        module = self.modules[node.target]
        src = node.args[0] if node.args else None
        has_state = any(True for _ in module.parameters(recurse=False)) or \
            any(True for _ in module.buffers(recurse=False))
        if len(node.args) != 1 or node.kwargs or not isinstance(src, fx.Node) or self.vars.get(src) is None \
                or (has_state and self.calls[node.target] > 1):
            self.barrier(node)
        elif isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
            self.conv(node, module, src)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            self.batchnorm(node, module, src)
        elif isinstance(module, nn.Linear) and len(_meta_shape(src)) == 2:
            unused = (module.weight.detach() == 0).all(0).tolist()
            for j, v in enumerate(self.vars[src]):
                self.uses.append(_Use(node.target, j, v, unused[j] or self.zero[src][j]))
            self.linear_in[node.target] = self.vars[src]
            self.fresh(node, pin=True)
        elif isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
            self.flatten(node, src)
        elif isinstance(module, _ZERO_KEEPING_MODULES) and not has_state:
            self.passthrough(node, src, keeps_zero=True)
        elif isinstance(module, _OTHER_CHANNELWISE_MODULES) and not has_state:
            self.passthrough(node, src, keeps_zero=False)
        else:
            self.barrier(node)

    # -- functions and methods ------------------------------------------------------------------------
    def reduce(self, node: fx.Node, src: Any, dims: Any) -> None:
        shape = _meta_shape(src) if isinstance(src, fx.Node) else None
        dims = (dims,) if isinstance(dims, int) else dims
        if shape is None or not isinstance(dims, (tuple, list)) or \
                any(not isinstance(d, int) or d % len(shape) < 2 for d in dims):
            self.barrier(node)
            return
        self.passthrough(node, src, keeps_zero=True)

    def call_function(self, node: fx.Node) -> None:
        fn, args = node.target, node.args
        if fn in _ADD:
            self.elementwise(node, list(args), "add")
        elif fn in _MUL:
            self.elementwise(node, list(args), "mul")
        elif fn in _DIV:
            self.elementwise(node, list(args), "div")
        elif fn is torch.cat:
            self.cat(node)
        elif fn is torch.flatten and args[1:] in ((1,), ()) and node.kwargs.get("start_dim", 1) == 1:
            self.flatten(node, args[0])
        elif fn in _REDUCE_FUNCTIONS and len(args) >= 2:
            self.reduce(node, args[0], args[1])
        elif fn in _ZERO_KEEPING_FUNCTIONS:
            self.passthrough(node, args[0] if args else None, keeps_zero=True)
        elif fn in _OTHER_CHANNELWISE_FUNCTIONS:
            self.passthrough(node, args[0] if args else None, keeps_zero=False)
        elif fn is operator.getitem and _meta_shape(node) is None:
            self.fresh(node, pin=True)
        else:
            self.barrier(node)

    def call_method(self, node: fx.Node) -> None:
        name, args = node.target, node.args
        src = args[0] if args else None
        if name in _SHAPE_ONLY_METHODS:
            self.vars[node], self.zero[node] = None, None
        elif name in ("add", "add_", "sub", "sub_"):
            self.elementwise(node, list(args), "add")
        elif name in ("mul", "mul_"):
            self.elementwise(node, list(args), "mul")
        elif name in ("div", "div_"):
            self.elementwise(node, list(args), "div")
        elif name == "flatten" and args[1:] in ((1,), (1, -1)):
            self.flatten(node, src)
        elif name in ("view", "reshape") and len(args) == 3 and args[2] == -1:
            self.flatten(node, src)
        elif name in _REDUCE_METHODS and len(args) >= 2:
            self.reduce(node, src, args[1])
        elif name in _ZERO_KEEPING_METHODS and len(args) == 1:
            self.passthrough(node, src, keeps_zero=True)
        elif name in _OTHER_CHANNELWISE_METHODS and len(args) == 1:
            self.passthrough(node, src, keeps_zero=False)
        else:
            self.barrier(node)

    def cat(self, node: fx.Node) -> None:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        parts = list(tensors) if isinstance(tensors, (list, tuple)) else []
        shape = _meta_shape(node)
        if shape is None or not parts or not isinstance(dim, int) or dim % len(shape) != 1 \
                or any(not isinstance(p, fx.Node) or self.vars.get(p) is None for p in parts):
            self.barrier(node)
            return
        self.vars[node] = [v for p in parts for v in self.vars[p]]
        self.zero[node] = [z for p in parts for z in self.zero[p]]

    # -- the pass -------------------------------------------------------------------------------------
    def run(self) -> ChannelPlan:
        for node in self.gm.graph.nodes:
            if node.op in ("placeholder", "get_attr"):
                self.fresh(node, pin=True)
            elif node.op == "output":
                self.pin_inputs(node)
            elif node.op == "call_module":
                self.call_module(node)
            elif node.op == "call_function":
                self.call_function(node)
            elif node.op == "call_method":
                self.call_method(node)
            else:
                self.barrier(node)
        find = self.uf.find
        blocked = {find(v) for v in self.pinned} | {find(u.var) for u in self.uses if not u.zero}
        removable = {find(v) for vs in self.vars.values() if vs for v in vs} - blocked
        for vs in self.vars.values():
            if vs and all(find(v) in removable for v in vs):
                removable.discard(find(vs[0]))

        def keep(vs: list[int]) -> list[int]:
            return [k for k, v in enumerate(vs) if find(v) not in removable]

        slices: dict[str, dict[str, list[int]]] = {}
        for target, (vin, vout) in self.conv_io.items():
            slices[target] = {"in": keep(vin), "out": keep(vout)}
        for target, vs in self.tied.items():
            slices[target] = {"tied": keep(vs)}
        for target, vs in self.linear_in.items():
            slices[target] = {"in": keep(vs)}
        named = {node.name: [find(v) for v in (self.vars.get(node) or [])] for node in self.gm.graph.nodes}
        return ChannelPlan(named, removable, slices, self.silenced)


def analyse_channels(gm: fx.GraphModule) -> ChannelPlan:
    """Assign channel variables, propagate zero channels, silence emptied batch norms, choose removals.

    ``gm`` must carry shapes (``ShapeProp``). Batch norms of zero channels are silenced in ``gm`` itself;
    the plan lists them (``plan.silenced``) so the caller silences the same channels in its zeroed model.
    """
    return _Analysis(gm).run()


def _slice_param(module: nn.Module, name: str, index: torch.Tensor, dim: int) -> None:
    tensor = getattr(module, name, None)
    if tensor is None:
        return
    new = tensor.detach().index_select(dim, index.to(tensor.device)).clone()
    if isinstance(tensor, nn.Parameter):
        setattr(module, name, nn.Parameter(new, requires_grad=tensor.requires_grad))
    else:
        setattr(module, name, new)


def apply_plan(gm: fx.GraphModule, plan: ChannelPlan) -> dict[str, tuple[int, int]]:
    """Slice the modules of ``gm`` as planned; returns ``{module: (channels before, after)}`` of changes."""
    changed: dict[str, tuple[int, int]] = {}
    for target, spec in plan.slices.items():
        module = gm.get_submodule(target)
        if isinstance(module, nn.modules.conv._ConvNd) and "out" in spec:
            before = module.out_channels
            out_idx, in_idx = torch.tensor(spec["out"]), torch.tensor(spec["in"])
            if len(out_idx) == module.out_channels and len(in_idx) == module.in_channels:
                continue
            _slice_param(module, "weight", out_idx, 0)
            _slice_param(module, "weight", in_idx, 1)
            _slice_param(module, "bias", out_idx, 0)
            module.out_channels, module.in_channels = len(out_idx), len(in_idx)
            changed[target] = (before, module.out_channels)
        elif isinstance(module, nn.modules.conv._ConvNd):
            idx = torch.tensor(spec["tied"])
            if len(idx) == module.out_channels:
                continue
            before = module.out_channels
            _slice_param(module, "weight", idx, 0)
            _slice_param(module, "bias", idx, 0)
            module.out_channels = module.in_channels = module.groups = len(idx)
            changed[target] = (before, len(idx))
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            idx = torch.tensor(spec["tied"])
            if len(idx) == module.num_features:
                continue
            before = module.num_features
            for name in ("weight", "bias", "running_mean", "running_var"):
                _slice_param(module, name, idx, 0)
            module.num_features = len(idx)
            changed[target] = (before, len(idx))
        elif isinstance(module, nn.Linear):
            idx = torch.tensor(spec["in"])
            if len(idx) == module.in_features:
                continue
            before = module.in_features
            _slice_param(module, "weight", idx, 1)
            module.in_features = len(idx)
            changed[target] = (before, len(idx))
    return changed
