"""Checks of canonizers: Zennit's duck-typed interface, function unchanged while applied, remove restores
bitwise, apply is atomic (interrupted anywhere, it leaves the model as it was), idempotence, and an LRP rule in
every installed host for each module type the canonizer adds."""

from __future__ import annotations

import contextlib
import copy
import importlib
import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from xai_plugins.conformance.checks import check
from xai_plugins.conformance.common import (
    InjectedFailure,
    assert_restored,
    expect_clear_error,
    forward,
    raised_inside_torch,
)
from xai_plugins.conformance.fixtures import Example, examples_for, tolerance
from xai_plugins.conformance.results import CheckFailure, CheckSkipped
from xai_plugins.conformance.state import diff_states, relative_difference, snapshot, summarize
from xai_plugins.registry import Component

DEFAULT_TOLERANCE = 1e-5
MAX_INTERRUPTIONS = 10


def new_canonizer(component: Component) -> Any:
    """An instance of the registered canonizer class (or factory), made without arguments."""
    try:
        canonizer = component.load()()
    except TypeError as exc:
        raise CheckFailure(f"cannot instantiate without arguments ({exc}); canonizers are made as cls()") from exc
    missing = [m for m in ("apply", "remove", "copy") if not callable(getattr(canonizer, m, None))]
    if missing:
        raise CheckFailure(f"missing method(s) {', '.join(missing)} of Zennit's canonizer interface "
                           "(apply(model) -> list of handles, remove(), copy())")
    return canonizer


def _apply(canonizer: Any, model: nn.Module) -> list[Any]:
    handles = canonizer.apply(model)
    if not isinstance(handles, (list, tuple)):
        raise CheckFailure(f"apply(model) returned {type(handles).__name__}, not a list of handles "
                           "(Zennit's Composite does 'handles += canonizer.apply(model)')")
    bad = [h for h in handles if not callable(getattr(h, "remove", None))]
    if bad:
        raise CheckFailure(f"apply(model) returned handles without remove(): {bad[:3]!r}")
    return list(handles)


def _examples(component: Component) -> list[tuple[Example, nn.Module, torch.Tensor]]:
    return [(ex, ex.model(), ex.inputs()) for ex in examples_for(component)]


@check("interface", "canonizer")
def check_interface(component: Component) -> str:
    """Instantiable without arguments; apply/remove/copy present; copy() is a fresh canonizer of its own."""
    canonizer = new_canonizer(component)
    twin = canonizer.copy()
    if twin is canonizer:
        raise CheckFailure("copy() returned the same object; it must return a fresh canonizer of the same kind")
    missing = [m for m in ("apply", "remove", "copy") if not callable(getattr(twin, m, None))]
    if missing:
        raise CheckFailure(f"copy() returned {type(twin).__name__} without {', '.join(missing)}")
    return f"{type(canonizer).__name__}() with apply, remove and copy"


@check("function_unchanged", "canonizer")
def check_function_unchanged(component: Component) -> tuple[str, float, float]:
    """While applied, the model's output equals the original within the tolerance (relative to max |output|)."""
    tol = tolerance(component, DEFAULT_TOLERANCE)
    worst, where = 0.0, ""
    for ex, model, x in _examples(component):
        ref = forward(model, x)
        canonizer = new_canonizer(component)
        _apply(canonizer, model)
        try:
            out = forward(model, x)
        finally:
            canonizer.remove()
        rel = relative_difference(ref, out)
        if rel >= worst:
            worst, where = rel, ex.label
    if not worst <= tol:
        raise CheckFailure(f"the canonized model computes another function on {where}: max |output difference| "
                           f"is {worst:.3g} of max |output| (tolerance {tol:g})", worst, tol)
    return f"worst relative output difference {worst:.2g} (tolerance {tol:g})", worst, tol


@check("remove_restores", "canonizer")
def check_remove_restores(component: Component) -> str:
    """After ``remove()``, and after removing every returned handle (Zennit's way), the model is bitwise the
    original: parameters, buffers, module objects, hooks, attributes and forward output."""
    for ex, model, x in _examples(component):
        ref = forward(model, x)
        before = snapshot(model)
        for how in ("canonizer.remove()", "removing each handle apply() returned"):
            canonizer = new_canonizer(component)
            handles = _apply(canonizer, model)
            forward(model, x)
            if how == "canonizer.remove()":
                canonizer.remove()
            else:
                for handle in handles:
                    handle.remove()
            assert_restored(model, before, f"after apply and {how} on {ex.label}")
            out = forward(model, x)
            if not torch.equal(ref, out):
                raise CheckFailure(f"after {how} on {ex.label} the output is not bitwise the original: max abs "
                                   f"difference {(ref - out).abs().max().item():.3g}")
    return "state and output bitwise restored by remove() and by the handles"


class _CountingDict(dict):
    """Stands in for a module's ``_parameters``/``_buffers``/``_modules`` while counting: canonizers that edit
    these dictionaries directly (bypassing ``Module.__setattr__``) are seen and can be interrupted too."""

    def __init__(self, content: dict, counter: _MutationCounter, label: str) -> None:
        super().__init__(content)
        self.counter, self.label = counter, label

    def __setitem__(self, key: str, value: Any) -> None:
        if not self.counter.inside:  # a write by a counted Module method is counted once, as that call
            self.counter.hit(f"{self.label}[{key!r}] = {type(value).__name__}")
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        if not self.counter.inside:
            self.counter.hit(f"del {self.label}[{key!r}]")
        super().__delitem__(key)

    def __reduce__(self) -> tuple:
        # copies of a module made while counting (deepcopy, pickle) get a plain dict
        return dict, (dict(self),)

    def __copy__(self) -> dict:
        return dict(self)

    def __deepcopy__(self, memo: dict) -> dict:
        return {key: copy.deepcopy(value, memo) for key, value in self.items()}


_MODULE_DICTS = ("_parameters", "_buffers", "_modules")


def _memory_start(tensor: torch.Tensor) -> int:
    """Address of the start of the memory ``tensor`` views (the same for every view of one tensor)."""
    return int(tensor.data_ptr() - tensor.storage_offset() * tensor.element_size())


class _MutationCounter:
    """Counts (and optionally interrupts) mutations of one model's modules and tensors: calls of the mutating
    ``Module`` and in-place ``Tensor`` methods, and direct writes into a module's parameter, buffer and child
    dictionaries."""

    def __init__(self, model: nn.Module, fail_at: int | None = None) -> None:
        self.modules = list(model.modules())
        self.module_ids = {id(m) for m in self.modules}
        self.storages = {_memory_start(t)
                         for t in itertools.chain(model.parameters(), model.buffers()) if t is not None}
        self.fail_at = fail_at
        self.events: list[str] = []
        self.inside = 0

    def hit(self, what: str) -> None:
        self.events.append(what)
        if len(self.events) == self.fail_at:
            raise InjectedFailure(f"conformance suite: injected failure at mutation {self.fail_at} ({what})")

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        counter = self
        saved: dict[tuple[type, str], Any] = {}

        def wrap_module_method(name: str) -> None:
            original = getattr(nn.Module, name)
            saved[(nn.Module, name)] = original

            def wrapper(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
                if id(self) in counter.module_ids:
                    arg = f" {args[0]!r}" if args and isinstance(args[0], str) else ""
                    counter.hit(f"{type(self).__name__}.{name}{arg}")
                counter.inside += 1
                try:
                    return original(self, *args, **kwargs)
                finally:
                    counter.inside -= 1

            setattr(nn.Module, name, wrapper)

        def wrap_tensor_method(name: str) -> None:
            original = getattr(torch.Tensor, name)
            saved[(torch.Tensor, name)] = torch.Tensor.__dict__.get(name)

            def wrapper(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
                if _memory_start(self) in counter.storages:
                    counter.hit(f"Tensor.{name} of a model tensor {tuple(self.shape)}")
                return original(self, *args, **kwargs)

            setattr(torch.Tensor, name, wrapper)

        for method in ("__setattr__", "__delattr__", "register_forward_hook", "register_forward_pre_hook",
                       "register_full_backward_hook", "register_full_backward_pre_hook", "register_backward_hook",
                       "register_buffer", "register_parameter", "add_module", "register_module"):
            wrap_module_method(method)
        for method in ("copy_", "mul_", "add_", "sub_", "div_", "zero_", "fill_", "set_"):
            wrap_tensor_method(method)
        originals: list[tuple[nn.Module, str, dict]] = []
        for module in self.modules:
            for attribute in _MODULE_DICTS:
                original = module.__dict__.get(attribute)
                if type(original) is dict:
                    originals.append((module, attribute, original))
                    module.__dict__[attribute] = _CountingDict(original, self,
                                                               f"{type(module).__name__}.{attribute}")
        try:
            yield
        finally:
            for module, attribute, original in originals:
                current = module.__dict__.get(attribute)
                if isinstance(current, _CountingDict):
                    original.clear()
                    original.update(current)
                    module.__dict__[attribute] = original
            for (owner, name), original in saved.items():
                if owner is torch.Tensor and original is None:
                    delattr(torch.Tensor, name)
                else:
                    setattr(owner, name, original)


def _interruption_points(count: int) -> list[int]:
    if count <= MAX_INTERRUPTIONS:
        return list(range(1, count + 1))
    step = (count - 1) / (MAX_INTERRUPTIONS - 1)
    return sorted({1 + round(i * step) for i in range(MAX_INTERRUPTIONS)})


@check("atomic_apply", "canonizer")
def check_atomic_apply(component: Component) -> str:
    """``apply`` interrupted at any mutation of the model raises and leaves the model exactly as before."""
    tried = 0
    for ex, model, x in _examples(component):
        ref = forward(model, x)
        before = snapshot(model)
        counter = _MutationCounter(model)
        canonizer = new_canonizer(component)
        with counter.active():
            _apply(canonizer, model)
        canonizer.remove()
        assert_restored(model, before, f"after a normal apply and remove on {ex.label}")
        total = len(counter.events)
        for k in _interruption_points(total):
            interrupter = _MutationCounter(model, fail_at=k)
            canonizer = new_canonizer(component)
            raised = False
            try:
                with interrupter.active():
                    canonizer.apply(model)
            except InjectedFailure:
                raised = True
            except Exception as exc:  # noqa: BLE001 - a replaced error is fine, a changed model is not
                raised = isinstance(exc.__cause__ or exc.__context__, InjectedFailure)
                if not raised:
                    raise
            where = f"apply interrupted at mutation {k} of {total} ({counter.events[k - 1]}) on {ex.label}"
            if not raised:
                canonizer.remove()
                assert_restored(model, before, f"{where} (the error was swallowed) then remove()")
                continue
            assert_restored(model, before, where)
            out = forward(model, x)
            if not torch.equal(ref, out):
                raise CheckFailure(f"{where}: output not bitwise the original (max abs difference "
                                   f"{(ref - out).abs().max().item():.3g})")
            tried += 1
    if tried == 0:
        return "apply made no observable mutation of the model to interrupt"
    return f"model unchanged after apply was interrupted at {tried} point(s)"


@check("idempotent", "canonizer")
def check_idempotent(component: Component) -> tuple[str, float, float]:
    """Canonizing twice is safe: a copy applied on top either keeps the function, or is refused with a clear
    error that leaves the canonized model as it was; removing in reverse order restores; removing twice is a
    no-op; applying again after remove gives the same model as the first time."""
    tol = tolerance(component, DEFAULT_TOLERANCE)
    worst, nested = 0.0, "nested apply keeps the function"
    for ex, model, x in _examples(component):
        ref = forward(model, x)
        before = snapshot(model)
        first = new_canonizer(component)
        _apply(first, model)
        once = forward(model, x)
        canonized = snapshot(model)
        second = first.copy()
        try:
            _apply(second, model)
        except CheckFailure:
            first.remove()
            raise
        except Exception as exc:  # noqa: BLE001 - a clear refusal is allowed; a changed model is not
            inside = raised_inside_torch(exc)
            if inside:
                first.remove()
                raise CheckFailure(f"applying a second copy on {ex.label} failed inside torch ({inside}): "
                                   f"{type(exc).__name__}: {exc}") from exc
            nested = f"nested apply refused ({type(exc).__name__})"
            lines = diff_states(canonized, snapshot(model))
            if lines:
                first.remove()
                raise CheckFailure(f"a refused second apply on {ex.label} changed the canonized model: "
                                   f"{summarize(lines)}") from exc
        else:
            twice = forward(model, x)
            second.remove()
            rel = relative_difference(ref, twice)
            worst = max(worst, rel)
            if not rel <= tol:
                first.remove()
                raise CheckFailure(f"applying a second copy on top changed the function on {ex.label}: max |output "
                                   f"difference| is {rel:.3g} of max |output| (tolerance {tol:g})", rel, tol)
        first.remove()
        assert_restored(model, before, f"after applying twice and removing both on {ex.label}")
        first.remove()
        assert_restored(model, before, f"after remove() was called a second time on {ex.label}")
        _apply(first, model)
        again = forward(model, x)
        first.remove()
        rel = relative_difference(once, again)
        if not rel <= tol:
            raise CheckFailure(f"applying again after remove gives another function on {ex.label} "
                               f"({rel:.3g} relative)", rel, tol)
        assert_restored(model, before, f"after a second apply/remove cycle on {ex.label}")
    return f"{nested}; double remove and re-apply safe (worst relative difference {worst:.2g})", worst, tol


@check("clear_errors", "canonizer")
def check_clear_errors(component: Component) -> str:
    """``apply`` on something that is not a ``torch.nn.Module`` raises an error that says so."""
    canonizer = new_canonizer(component)
    return expect_clear_error(lambda: canonizer.apply("not a model"), "apply('not a model')",
                              ("nn.Module", "model"))


HOST_ADAPTERS = ("xai_plugins_zennit", "xai_plugins_captum")
"""The adapters whose ``missing_rules(canonizer, model)`` the ``host_rules`` check asks (those installed)."""


@check("host_rules", "canonizer")
def check_host_rules(component: Component) -> str:
    """Every module type the canonizer adds to its example models has an LRP rule in each installed host
    adapter (its ``host_rules`` metadata, the adapter's defaults, or a layer the host already knows); the
    adapters are imported only if installed, so the core suite itself needs no host."""
    hosts = []
    for name in HOST_ADAPTERS:
        try:
            hosts.append((name, importlib.import_module(name).missing_rules))
        except ImportError:
            continue
    if not hosts:
        raise CheckSkipped("no host adapter (xai-plugins-zennit, xai-plugins-captum) is installed")
    for ex, model, _ in _examples(component):
        for name, missing_rules in hosts:
            missing = missing_rules(new_canonizer(component), model)
            if missing:
                raise CheckFailure(f"on {ex.label} the canonizer adds module types without a {name} rule: "
                                   f"{', '.join(missing)}; declare their rules in the canonizer's host_rules "
                                   "(see docs/plugin-authors.md)")
    return f"every added module type has a rule in {', '.join(name for name, _ in hosts)}"
