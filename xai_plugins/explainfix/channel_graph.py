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
Removal slices parameters of convolutions, batch norms and linear layers; the remaining operations adapt
to the channel count.

A channel that must stay (a residual-stream channel some block still reads or writes) is still cut out of
every convolution or linear layer that does not use it (``partial=True``): a reader whose weights on it
are zero (or that receives it identically zero) gets its input through ``index_select`` of the channels it
uses, and a convolution whose filters for an output channel are all zero computes only its other outputs,
scattered back into the stream's width with exact zeros (:func:`scatter_channels`). So every all-zero
output row and input column of every convolution goes, which is the largest reduction that slicing can
make without changing the zeroed model's function.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

__all__ = ["ChannelPlan", "analyse_channels", "apply_plan", "scatter_channels", "stream_cuts"]

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
    """Per module: the original channel indices it keeps (``in``/``out``/``tied``), and for convolutions and
    linear layers the indices of the tensor it reads (``in_width``) and writes (``out_width``) after removal."""
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

    def __init__(self, gm: fx.GraphModule, partial: bool = True) -> None:
        self.gm = gm
        self.partial = partial
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
        self.masks: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
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
            self.masks[node.target] = (filt_zero, torch.tensor(src_zero, dtype=torch.bool), bias_zero)
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

    def _used_part(self, target: str, width_in: list[int], width_out: list[int]) -> tuple[list[int], list[int]]:
        """The output rows and input columns a convolution has to compute, of those it writes and reads.

        A row is dropped when its filters on every input that is not identically zero are zero and its
        bias is zero (its output is exactly zero, so a scatter restores it); then a column is dropped when
        its input is identically zero or the filters of every remaining row on it are zero. No remaining
        row or column is all zero afterwards, and the kept part computes exactly what the full one does.
        """
        if not self.partial:
            return width_out, width_in
        filt_zero, src_zero, bias_zero = self.masks[target]
        live_in = torch.tensor(width_in, dtype=torch.long)
        live_in = live_in[~src_zero[live_in]]
        row_zero = filt_zero[:, live_in].all(1) & bias_zero
        rows = [k for k in width_out if not row_zero[k]] or width_out[:1]
        col_zero = filt_zero[rows].all(0) | src_zero
        cols = [k for k in width_in if not col_zero[k]] or width_in[:1]
        return rows, cols

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

        unused = {(u.target, u.index) for u in self.uses if u.zero} if self.partial else set()
        slices: dict[str, dict[str, list[int]]] = {}
        for target, (vin, vout) in self.conv_io.items():
            width_in, width_out = keep(vin), keep(vout)
            rows, cols = self._used_part(target, width_in, width_out)
            slices[target] = {"in": cols, "out": rows, "in_width": width_in, "out_width": width_out}
        for target, vs in self.tied.items():
            slices[target] = {"tied": keep(vs)}
        for target, vs in self.linear_in.items():
            width_in = keep(vs)
            slices[target] = {"in": [k for k in width_in if (target, k) not in unused] or width_in[:1],
                              "in_width": width_in}
        named = {node.name: [find(v) for v in (self.vars.get(node) or [])] for node in self.gm.graph.nodes}
        return ChannelPlan(named, removable, slices, self.silenced)


def analyse_channels(gm: fx.GraphModule, *, partial: bool = True) -> ChannelPlan:
    """Assign channel variables, propagate zero channels, silence emptied batch norms, choose removals.

    ``gm`` must carry shapes (``ShapeProp``). Batch norms of zero channels are silenced in ``gm`` itself;
    the plan lists them (``plan.silenced``) so the caller silences the same channels in its zeroed model.
    With ``partial`` a layer also drops the kept channels it does not use (see the module docstring).
    """
    return _Analysis(gm, partial).run()


def scatter_channels(y: torch.Tensor, mapping: torch.Tensor) -> torch.Tensor:
    """Channel ``j`` of the result is ``y[:, mapping[j]]``, or exact zero where ``mapping[j] == y.shape[1]``.

    Written with ``cat`` and ``index_select`` only, so torch.fx can trace a model that calls it.
    """
    return torch.index_select(torch.cat([y, torch.zeros_like(y[:, :1])], 1), 1, mapping)


def _module_nodes(gm: fx.GraphModule) -> dict[str, fx.Node]:
    return {node.target: node for node in gm.graph.nodes if node.op == "call_module"}


def _index_buffer(gm: fx.GraphModule, kind: str, target: str, index: list[int]) -> str:
    name = f"_{kind}_{target.replace('.', '_')}"
    gm.register_buffer(name, torch.tensor(index, dtype=torch.long), persistent=False)
    return name


def _gather_input(gm: fx.GraphModule, node: fx.Node, width: list[int], kept: list[int]) -> None:
    """Feed ``node`` only the channels ``kept`` of its input, which carries the channels ``width``."""
    position = {k: j for j, k in enumerate(width)}
    name = _index_buffer(gm, "gather", node.target, [position[k] for k in kept])
    with gm.graph.inserting_before(node):
        index = gm.graph.get_attr(name)
        gathered = gm.graph.call_function(torch.index_select, (node.args[0], 1, index))
    node.args = (gathered, *node.args[1:])


def _scatter_output(gm: fx.GraphModule, node: fx.Node, width: list[int], kept: list[int]) -> None:
    """Widen the output of ``node`` (the channels ``kept``) back to the channels ``width``, zeros elsewhere."""
    position = {k: j for j, k in enumerate(kept)}
    name = _index_buffer(gm, "scatter", node.target, [position.get(k, len(kept)) for k in width])
    with gm.graph.inserting_after(node):
        index = gm.graph.get_attr(name)
    with gm.graph.inserting_after(index):
        widened = gm.graph.call_function(scatter_channels, (node, index))
    node.replace_all_uses_with(widened, delete_user_cb=lambda user: user is not widened)


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
    """Slice the modules of ``gm`` as planned, with gathers and scatters where a layer uses only some of the
    channels it reads or writes; returns ``{module: (channels before, after)}`` of the changed modules.
    Call ``gm.recompile()`` afterwards."""
    changed: dict[str, tuple[int, int]] = {}
    nodes = _module_nodes(gm)
    for target, spec in plan.slices.items():
        module = gm.get_submodule(target)
        if "in_width" in spec and spec["in"] != spec["in_width"]:
            _gather_input(gm, nodes[target], spec["in_width"], spec["in"])
        if "out_width" in spec and spec["out"] != spec["out_width"]:
            _scatter_output(gm, nodes[target], spec["out_width"], spec["out"])
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


def stream_cuts(gm: fx.GraphModule) -> dict[str, dict[str, list[int]]]:
    """Channels whose spatial filters are all gone on one side, to cut consistently everywhere else.

    A channel (a union of tied channels, such as one channel of a residual stream across its blocks) is
    *writer-dead* when every spatial convolution writing it has all-zero filters and bias for it, and
    *reader-dead* when every spatial convolution reading it has all-zero filters on it. What keeps such a
    channel alive is only its non-spatial writers (1x1 shortcut convolutions) or readers (1x1 convolutions,
    linear layers). Returns, per such module, the output rows (``out``) or input columns (``in``) to zero so
    that the channel carries exact zeros, or is read by nobody, in every block; channels that reach the
    model output or an unknown operation are left alone. ``gm`` must carry shapes; it is changed (batch
    norms silenced), so pass a scratch copy.
    """
    analysis = _Analysis(gm, partial=True)
    analysis.run()
    find = analysis.uf.find
    pinned = {find(v) for v in analysis.pinned}
    modules = analysis.modules
    # per channel: (module, index, dead) of its writers and readers; dead is None for non-spatial modules
    sides: dict[int, dict[str, list[tuple[str, int, bool | None]]]] = {}

    def side(v: int, key: str, entry: tuple[str, int, bool | None]) -> None:
        sides.setdefault(find(v), {"w": [], "r": []})[key].append(entry)

    for target, (vin, vout) in analysis.conv_io.items():
        filt_zero, _, bias_zero = analysis.masks[target]
        spatial = math.prod(modules[target].kernel_size) > 1
        rows_dead = (filt_zero.all(1) & bias_zero).tolist()
        cols_dead = filt_zero.all(0).tolist()
        for k, v in enumerate(vout):
            side(v, "w", (target, k, rows_dead[k] if spatial else None))
        for k, v in enumerate(vin):
            side(v, "r", (target, k, cols_dead[k] if spatial else None))
    for target, vin in analysis.linear_in.items():
        for k, v in enumerate(vin):
            side(v, "r", (target, k, None))
    cuts: dict[str, dict[str, list[int]]] = {}
    for root, ends in sides.items():
        if root in pinned:
            continue
        for key, kind in (("w", "out"), ("r", "in")):
            spatial = [dead for _, _, dead in ends[key] if dead is not None]
            others = [(t, k) for t, k, dead in ends[key] if dead is None]
            if spatial and others and all(spatial):
                for target, k in others:
                    cuts.setdefault(target, {"out": [], "in": []})[kind].append(k)
    return cuts
