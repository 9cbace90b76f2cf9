"""Folding the rewritten graph back into the model's module hierarchy, so that containers stay called.

``torch.fx`` traces through every module that is not a leaf, so the rewritten graph is flat: a forward generated
from it alone would call the leaves directly and never a block, a stage or an ``nn.Sequential``, and a hook on
one of them (a user's, Captum's layer attributions, a host's) would not fire. :func:`fold` therefore turns every
module call the tracer traced through (:class:`~xai_plugins.canonizers.graph_trace.ModuleCall`) back into one
``call_module`` node, innermost calls first. A call folds when

- its module is called once, with positional arguments only (graph values and scalar constants, in lists,
  tuples and dicts as passed), and returns one graph value computed inside the call;
- its region, the nodes traced in it (``node.meta[CALLS]``, carried along by every rewrite), reads nothing but
  the call's arguments, no value of it but the result is used outside it, and it calls only modules inside the
  module (explicit modules the plan adds go to the module owning the node, see ``graph_plan``).

A folded module whose region the rewrite did not touch keeps its own forward; otherwise it gets the forward
``torch.fx`` generates from its region, with module paths relative to it, so it runs on any model of the same
structure (the plan caches it by path). Module, arguments and result of the canonical call are the original
ones, so hooks fire once per call with the original values, except where a BatchNorm merged across the call's
boundary changes them (a ``shifted`` row). A call that does not fold stays flat: its nodes are inlined into the
enclosing generated forward, the module is not called and its hooks do not fire while canonized (a ``flat``
row, unless an enclosing module keeps its own forward, which calls it as before).
"""

from __future__ import annotations

import inspect
import operator
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch.fx
from torch import nn

from xai_plugins.canonizers.graph_trace import CALLS, ModuleCall, map_nodes

__all__ = ["Folding", "compile_forward", "fold"]

_CONSTANTS = (bool, int, float, str, type(None))


@dataclass
class Folding:
    """What :func:`fold` did: generated forwards by module path, and the calls that stay flat or are shifted."""

    forwards: list[tuple[str, Callable[..., Any]]] = field(default_factory=list)
    """``(module path, forward)``: folded modules whose region was rewritten, innermost first."""
    flat: list[tuple[str, str]] = field(default_factory=list)
    """``(module path, why)``: modules not called while canonized."""
    shifted: list[tuple[str, str]] = field(default_factory=list)
    """``(module path, what)``: folded modules whose argument or result a BatchNorm merge changes."""


def compile_forward(graph: torch.fx.Graph, name: str) -> Callable[..., Any]:
    """The ``forward(self, ...)`` ``torch.fx`` generates from ``graph``, reading modules through ``self``."""
    code = graph.python_code(root_module="self")
    namespace = dict(code.globals)
    exec(compile(code.src, f"<xai-plugins canonical forward of {name}>", "exec"), namespace)  # noqa: S102 - fx codegen
    return namespace["forward"]


def _leaves(value: Any) -> Iterator[Any]:
    """What ``value`` holds in (plain) lists, tuples and dicts, in order; anything else is a leaf itself."""
    if type(value) in (list, tuple):
        for item in value:
            yield from _leaves(item)
    elif type(value) is dict:
        for item in value.values():
            yield from _leaves(item)
    else:
        yield value


def _nodes(value: Any) -> list[torch.fx.Node]:
    """The distinct nodes in ``value``, in order."""
    return list(dict.fromkeys(leaf for leaf in _leaves(value) if isinstance(leaf, torch.fx.Node)))


def _unpack(value: Any, source: torch.fx.Node, graph: torch.fx.Graph,
            values: dict[torch.fx.Node, torch.fx.Node]) -> None:
    """``values[node]`` = ``source`` or the ``getitem`` node of ``source`` holding ``node`` in ``value`` (an
    argument or a result: nodes and constants in lists, tuples and dicts), for every node in ``value``."""
    if isinstance(value, torch.fx.Node):
        values.setdefault(value, source)
        return
    items = value.items() if type(value) is dict else enumerate(value) if type(value) in (list, tuple) else ()
    for key, item in items:
        if _nodes(item):
            _unpack(item, graph.call_function(operator.getitem, (source, key)), graph, values)


def _parameter_names(module: nn.Module, count: int) -> list[str]:
    try:
        parameters = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    names = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [names[k] if k < len(names) else f"input_{k}" for k in range(count)]


class _Folder:
    def __init__(self, graph: torch.fx.Graph, calls: tuple[ModuleCall, ...], modules: dict[str, nn.Module],
                 renamed: dict[torch.fx.Node, torch.fx.Node], changed: set[int],
                 shifted: set[torch.fx.Node]) -> None:
        self.graph, self.calls, self.modules = graph, calls, modules
        self.renamed, self.changed, self.shifted = renamed, changed, shifted
        self.count = Counter(call.path for call in calls)
        self.order = {node: position for position, node in enumerate(graph.nodes)}
        self.members: dict[int, set[torch.fx.Node]] = {index: set() for index in range(len(calls))}
        for node in graph.nodes:
            for index in node.meta.get(CALLS, ()):
                self.members[index].add(node)
        self.folding = Folding()
        self.native: set[int] = set()
        """Folded calls that keep their own forward."""

    def why_not(self, index: int) -> str | None:
        """Why call ``index`` cannot be folded (``None``: it can)."""
        call = self.calls[index]
        if self.count[call.path] > 1:
            return f"called {self.count[call.path]} times"
        if call.kwargs:
            return f"called with keyword arguments ({', '.join(call.kwargs)})"
        if any(not isinstance(leaf, (torch.fx.Node, *_CONSTANTS)) for leaf in _leaves(call.args)):
            return "called with an argument that is not a tensor, a constant or a list, tuple or dict of them"
        if any(not isinstance(leaf, (torch.fx.Node, *_CONSTANTS)) for leaf in _leaves(call.output)):
            return f"returns a {type(call.output).__name__}, not a tensor or a list, tuple or dict of tensors"
        inputs = {self.resolve(leaf) for leaf in _leaves(call.args) if isinstance(leaf, torch.fx.Node)}
        results = _nodes(map_nodes(call.output, self.resolve))
        if not results:
            return "returns no graph value"
        region = self.members[index]
        if any(result in inputs for result in results):
            return "returns an argument unchanged (the graph cannot tell its result from its argument)"
        if any(result not in region for result in results):
            return "returns a value computed before it was called"
        last = max(self.order[node] for node in region)
        prefix = f"{call.path}."
        for node in region:
            if any(source not in region and source not in inputs for source in node.all_input_nodes):
                return f"node '{node.name}' reads a value that is not an argument of the call"
            outside = [user for user in node.users if user not in region]
            if outside and node not in results:
                return f"node '{node.name}' is used outside the call, but not returned"
            if any(self.order[user] < last for user in outside):
                return f"its nodes are interleaved with nodes outside it (a user of '{node.name}')"
            if node.op in ("call_module", "get_attr") and not str(node.target).startswith(prefix):
                return f"node '{node.name}' reads '{node.target}', outside the module"
        return None

    def run(self) -> Folding:
        innermost_first = sorted(range(len(self.calls)), key=lambda index: -len(self.calls[index].outer))
        unfolded: dict[int, str] = {}
        for index in innermost_first:
            why = self.why_not(index)
            if why is None:
                self.fold(index)
            else:
                unfolded[index] = why
        flat: dict[str, str] = {}
        for index, why in unfolded.items():
            if not any(outer in self.native for outer in self.calls[index].outer):
                flat.setdefault(self.calls[index].path, why)
        self.folding.flat = sorted(flat.items())
        return self.folding

    def fold(self, index: int) -> None:
        """Replace the region of call ``index`` by one ``call_module`` node (and ``getitem`` nodes taking its
        result apart where it returns several values)."""
        call = self.calls[index]
        region = sorted(self.members[index], key=self.order.__getitem__)
        args, output = map_nodes(call.args, self.resolve), map_nodes(call.output, self.resolve)
        if index in self.changed:
            self.folding.forwards.append((call.path, self.generate(call, region, args, output)))
        else:
            self.native.add(index)
        moved = [what for what, values in (("argument", _nodes(args)), ("result", _nodes(output)))
                 if any(value in self.shifted for value in values)]
        if moved:
            self.folding.shifted.append((call.path, " and ".join(moved)))
        with self.graph.inserting_after(region[-1]):
            folded = self.graph.call_module(call.path, args=args)
        values: dict[torch.fx.Node, torch.fx.Node] = {}
        assert folded.next is not None
        with self.graph.inserting_before(folded.next):
            _unpack(output, folded, self.graph, values)
        for result, value in values.items():
            value.meta = {key: item for key, item in result.meta.items() if key != CALLS}
            value.meta[CALLS] = call.outer
            result.replace_all_uses_with(value)
            self.renamed[result] = value
            if result in self.shifted:
                self.shifted.add(value)
        if folded not in values.values():
            folded.meta = {CALLS: call.outer}
        for node in reversed(region):
            self.graph.erase_node(node)
        added = {folded, *values.values()}
        for outer in call.outer:
            self.members[outer].difference_update(region)
            self.members[outer].update(added)
        if len(added) == 1:
            self.order[folded] = self.order[region[-1]]
        else:
            self.order = {node: position for position, node in enumerate(self.graph.nodes)}

    def resolve(self, node: torch.fx.Node) -> torch.fx.Node:
        """The node now holding the value ``node`` held in the trace."""
        while node in self.renamed:
            node = self.renamed[node]
        return node

    def generate(self, call: ModuleCall, region: list[torch.fx.Node], args: Any, output: Any) -> Callable[..., Any]:
        """The forward of the call's module computing its region, module paths relative to the module."""
        module = self.modules[call.path]
        graph = torch.fx.Graph()
        env: dict[torch.fx.Node, torch.fx.Node] = {}
        placeholders = [graph.placeholder(name) for name in _parameter_names(module, len(args))]
        for argument, placeholder in zip(args, placeholders):
            _unpack(argument, placeholder, graph, env)
        cut = len(call.path) + 1
        for node in region:
            copied = graph.node_copy(node, env.__getitem__)
            if copied.op in ("call_module", "get_attr"):
                copied.target = str(copied.target)[cut:]
            env[node] = copied
        graph.output(map_nodes(output, env.__getitem__))
        return compile_forward(graph, call.path)


def fold(graph: torch.fx.Graph, calls: tuple[ModuleCall, ...], modules: dict[str, nn.Module],
         renamed: dict[torch.fx.Node, torch.fx.Node], changed: set[int], shifted: set[torch.fx.Node]) -> Folding:
    """Fold ``graph`` (rewritten; its nodes marked with ``calls``) into the hierarchy of ``modules``, in place.

    ``renamed`` maps a node the rewrite replaced to its replacement (extended here by the folded calls),
    ``changed`` holds the indices of the calls whose region the rewrite touched, ``shifted`` the nodes whose
    values a BatchNorm merge changes."""
    return _Folder(graph, calls, modules, renamed, changed, shifted).run()
