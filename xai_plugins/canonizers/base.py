"""The canonizer base class: Zennit's duck-typed interface with atomic apply and exact restore.

A canonizer rewrites a model into a form that computes the same function but that rule-based attribution
handles correctly. Every change goes through the recording editors of :class:`Canonizer` (swap a parameter,
a buffer, a child module or an instance attribute), each of which pushes its inverse onto an undo stack:

- ``apply`` is atomic: if anything raises halfway, the stack is unwound and the exception re-raised.
- ``remove`` unwinds the stack; the original tensors were never written to (they are swapped out, not
  modified), so the state dict and the outputs are bitwise what they were and no attribute is left behind.
- Applying the same instance twice to the same model is a no-op; removing twice is a no-op. A module that
  another canonizer instance already changed is refused with a clear error instead of being changed twice.
- One instance serves one model in one thread at a time: a second ``apply`` while the first is running, or
  from another thread while the instance is applied, raises (Zennit's composites apply the canonizer object
  they were given, so threads sharing a composite would otherwise remove each other's changes mid-forward).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import types
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["Canonizer", "CanonizerHandle", "TrainingModeWarning", "canonizing"]

_MISSING = object()
APPLY_EXTENSIONS: list[Callable[[Any, nn.Module, str], Any]] = []
"""Host-neutral extension point of :meth:`Canonizer.apply`: host adapters append ``extension(canonizer, model,
phase)``; ``apply`` calls each directly (so an extension can look at who called ``apply``) with ``phase="before"``
and, once canonized, ``"after"``. A returned object with ``remove()`` is removed on :meth:`Canonizer.remove`,
before the canonizer's own changes are reverted. The Zennit adapter uses it to give a core canonizer handed to a
Zennit composite the Zennit rules of its explicit modules."""
HOST_EXTENSION_GROUP = "xai_plugins.host_extensions"
"""Entry-point group of host adapters that fill :data:`APPLY_EXTENSIONS`: an entry named after a host package
(``zennit = "xai_plugins_zennit.canonizers"``) is imported by the first ``apply`` after that host is imported."""
_host_entries: list[Any] | None = None


def _load_host_extensions() -> None:
    """Import the adapter of every host the process has imported (once each; see HOST_EXTENSION_GROUP)."""
    global _host_entries
    if _host_entries is None:
        from importlib.metadata import entry_points

        _host_entries = list(entry_points(group=HOST_EXTENSION_GROUP))
    for entry in list(_host_entries):
        if entry.name in sys.modules:
            _host_entries.remove(entry)
            entry.load()
_OWNERS: dict[int, Canonizer] = {}
"""``id(module)`` → the canonizer that changed it. An entry lives exactly as long as the canonizer's claim, and
the claim holds the module, so the id cannot be reused meanwhile."""
_APPLYING: dict[int, list[tuple[object, threading.Thread]]] = {}
"""``id(model)`` → the canonizers whose ``apply`` is running on it (and the holders of :func:`canonizing` blocks)
with their threads (the model is held by the running call). Applies nest within one thread (a canonizer may apply
another one), never across threads."""
_OWNERS_LOCK = threading.Lock()
"""Makes the look-up and the entry of a claim (and of ``_APPLYING``) one step, so two canonizers never both
claim one module or canonize one model at once."""


def _reserve(model: nn.Module, holder: object) -> None:
    """Enter ``holder`` as canonizing ``model`` in this thread; raise if another thread is canonizing it."""
    thread = threading.current_thread()
    with _OWNERS_LOCK:
        running = _APPLYING.get(id(model), [])
        if running and running[0][1] is not thread:
            raise RuntimeError(f"{type(model).__name__} is being canonized by {running[0][0]!r} in another thread; "
                               "a model can be canonized by one canonizer at a time")
        _APPLYING[id(model)] = [*running, (holder, thread)]


def _release(model: nn.Module) -> None:
    """Undo the last :func:`_reserve` of ``model`` in this thread."""
    with _OWNERS_LOCK:
        running = _APPLYING[id(model)][:-1]
        if running:
            _APPLYING[id(model)] = running
        else:
            del _APPLYING[id(model)]


@contextlib.contextmanager
def canonizing(model: nn.Module, holder: object) -> Iterator[nn.Module]:
    """Hold ``model`` for ``holder`` in this thread for the duration of the block.

    Meanwhile any canonizer's :meth:`Canonizer.apply` to ``model`` and any other ``canonizing(model, ...)`` from
    another thread raise ``RuntimeError`` naming ``holder`` (by its ``repr``) before they read or change the model;
    in this thread they nest. A host adapter that canonizes a model and then attaches its own state (Captum's
    ``canonized()`` block) holds the model this way, so a second block on the same model from another thread gets
    the same clear error as a second canonizer, instead of racing the first one's changes. Raises that error if
    another thread holds ``model`` already.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"canonizing() expects a torch.nn.Module, got {type(model).__name__}")
    _reserve(model, holder)
    try:
        yield model
    finally:
        _release(model)


class TrainingModeWarning(UserWarning):
    """A model was canonized while (part of) it was in training mode; the canonized function is the eval-mode
    one (BatchNorm folded with its running statistics), so the model's output changes until ``remove()``."""


class CanonizerHandle:
    """Handle returned by :meth:`Canonizer.apply`; ``remove()`` reverts the canonizer (as Zennit expects)."""

    def __init__(self, canonizer: Canonizer) -> None:
        self.canonizer = canonizer

    def remove(self) -> None:
        """Revert every change the canonizer made."""
        self.canonizer.remove()


class Canonizer:
    """Base class of all xai-plugins canonizers (usable wherever Zennit accepts a canonizer).

    Subclasses implement :meth:`canonize`, making every change through the recording editors below
    (:meth:`swap_parameter`, :meth:`swap_buffer`, :meth:`set_child`, :meth:`set_attribute`,
    :meth:`override_forward`, :meth:`claim`); subclasses with constructor arguments override :meth:`copy`.
    ``eval_mode_only`` (default ``True``) says that the canonized function is the eval-mode one: ``apply`` then
    warns with :class:`TrainingModeWarning` when a module of the model is in training mode.
    """

    eval_mode_only: bool = True

    def __init__(self) -> None:
        self._undo: list[tuple[nn.Module, str | None, str, Any]] = []
        self._claimed: dict[int, nn.Module] = {}
        self._model: weakref.ReferenceType[nn.Module] | None = None
        self._handle: CanonizerHandle | None = None
        self._thread: threading.Thread | None = None
        self._busy = threading.Lock()
        self._extensions: list[Any] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def canonize(self, model: nn.Module) -> None:
        """Rewrite ``model`` in place using the recording editors. Implemented by subclasses."""
        raise NotImplementedError(f"{type(self).__name__} must implement canonize(model)")

    def apply(self, model: nn.Module) -> list[CanonizerHandle]:
        """Canonize ``model``; returns a list with one handle whose ``remove()`` reverts everything.

        Raises ``RuntimeError`` (changing nothing) when this instance is being applied in another thread, is
        applied to a model by another thread that is still running, or is applied to another model; each thread
        and each model needs its own instance (:meth:`copy`)."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"{type(self).__name__}.apply expects a torch.nn.Module, got {type(model).__name__}")
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(f"{self!r} is being applied in another thread at the same time; one canonizer "
                               "instance canonizes one model in one thread: give each thread its own instance "
                               "(canonizer.copy(), or canonizers_for(model) per thread)")
        try:
            current = self._model() if self._model is not None else None
            if current is not None:
                if self._thread is not threading.current_thread() and self._thread is not None \
                        and self._thread.is_alive():
                    raise RuntimeError(f"{self!r} is applied to a model by another thread; one canonizer instance "
                                       "canonizes one model in one thread: give each thread its own instance "
                                       "(canonizer.copy(), or canonizers_for(model) per thread)")
                if current is model and self._handle is not None:
                    return [self._handle]
                raise RuntimeError(f"{self!r} is already applied to another model; call remove() first or use "
                                   "copy() to canonize a second model")
            thread = threading.current_thread()
            _reserve(model, self)
            try:
                training = next((name for name, module in model.named_modules() if module.training), None) \
                    if self.eval_mode_only else None
                if _host_entries is None or _host_entries:
                    _load_host_extensions()
                for extension in APPLY_EXTENSIONS:
                    extension_handle = extension(self, model, "before")
                    if extension_handle is not None:
                        self._extensions.append(extension_handle)
                with torch.no_grad():
                    self.canonize(model)
                for extension in APPLY_EXTENSIONS:
                    extension_handle = extension(self, model, "after")
                    if extension_handle is not None:
                        self._extensions.append(extension_handle)
            except BaseException:
                self._unwind()
                raise
            finally:
                _release(model)
            self._model = weakref.ref(model)
            self._thread = thread
            self._handle = CanonizerHandle(self)
            handle = self._handle
        finally:
            self._busy.release()
        if training is not None and self._undo:
            warnings.warn(f"{type(self).__name__} canonized {type(model).__name__} while "
                          f"{'the model' if not training else f'module {training!r}'} is in training mode: the "
                          "canonized model computes the eval-mode function (BatchNorm with its running "
                          "statistics), so its output differs from the training-mode output until remove(); "
                          "call model.eval() before canonizing", TrainingModeWarning, stacklevel=2)
        return [handle]

    def remove(self) -> None:
        """Revert every change, restoring the model exactly; safe to call more than once."""
        self._unwind()
        self._model = None
        self._handle = None
        self._thread = None

    def copy(self) -> Canonizer:
        """A fresh, unapplied canonizer with the same configuration."""
        return type(self)()

    @property
    def applied(self) -> bool:
        """Whether this canonizer currently has changes applied to a model."""
        return bool(self._undo or self._claimed)

    def _unwind(self) -> None:
        try:
            while self._extensions:
                self._extensions.pop().remove()
        finally:
            self._unwind_changes()

    def _unwind_changes(self) -> None:
        # each record is (module, field, key, previous value), see _record: put the value back, or delete the
        # key the mapping did not have
        undo = self._undo
        while undo:
            module, field, key, old = undo.pop()
            mapping = module.__dict__ if field is None else module.__dict__[field]
            if old is _MISSING:
                mapping.pop(key, None)
            else:
                mapping[key] = old
        with _OWNERS_LOCK:
            for module in self._claimed.values():
                if _OWNERS.get(id(module)) is self:
                    del _OWNERS[id(module)]
        self._claimed.clear()

    def _record(self, module: nn.Module, field: str | None, key: str, value: Any) -> None:
        """Set ``key`` to ``value`` in the module's dictionary ``field`` (``_parameters``, ``_buffers``,
        ``_modules``; ``None`` for its ``__dict__``), remembering what was there (or that nothing was) for remove.
        The dictionary is looked up again on remove, in case something replaced it in between."""
        mapping = module.__dict__ if field is None else module.__dict__[field]
        self._undo.append((module, field, key, mapping.get(key, _MISSING)))
        mapping[key] = value

    # -- recording editors -------------------------------------------------------------------------------

    def claim(self, module: nn.Module) -> None:
        """Mark ``module`` as changed by this canonizer; refuse modules another canonizer already changed."""
        if id(module) in self._claimed:
            return
        with _OWNERS_LOCK:
            owner = _OWNERS.get(id(module))
            if owner is not None and owner is not self:
                raise RuntimeError(
                    f"{type(module).__name__} module is already canonized by {owner!r}; remove that canonizer "
                    "before applying another one to the same model")
            _OWNERS[id(module)] = self
        self._claimed[id(module)] = module

    def owns(self, module: nn.Module) -> bool:
        """Whether this canonizer has changed ``module``."""
        return self._claimed.get(id(module)) is module and _OWNERS.get(id(module)) is self

    def swap_parameter(self, module: nn.Module, name: str, value: torch.Tensor | None) -> None:
        """Replace parameter ``name`` of ``module`` by a new ``Parameter`` holding ``value`` (or by ``None``).

        The new parameter copies ``requires_grad`` from the old one (or from ``weight`` when adding a bias).
        """
        self.claim(module)
        old = module._parameters[name]
        if value is None:
            new = None
        else:
            reference = old if old is not None else module._parameters.get("weight")
            requires_grad = reference.requires_grad if reference is not None else True
            new = nn.Parameter(value, requires_grad=requires_grad)  # Parameter() detaches
        self._record(module, "_parameters", name, new)

    def swap_buffer(self, module: nn.Module, name: str, value: torch.Tensor) -> None:
        """Replace buffer ``name`` of ``module`` by ``value`` (the old tensor is kept, not modified)."""
        self.claim(module)
        if name not in module._buffers:
            raise KeyError(f"{type(module).__name__} has no buffer {name!r}")
        self._record(module, "_buffers", name, value)

    def set_child(self, parent: nn.Module, name: str, child: nn.Module) -> None:
        """Put ``child`` at ``parent.<name>``: replaces an existing child in place or adds a new one."""
        self.claim(parent)
        if name not in parent._modules and (name in parent.__dict__ or name in parent._parameters
                                            or name in parent._buffers):
            raise RuntimeError(f"cannot add child {name!r} to {type(parent).__name__}: the name is taken")
        self._record(parent, "_modules", name, child)

    def set_attribute(self, module: nn.Module, name: str, value: Any) -> None:
        """Set a plain instance attribute (e.g. ``eps``) and restore or delete it on remove."""
        self.claim(module)
        if name in module._parameters or name in module._buffers or name in module._modules:
            raise RuntimeError(f"{name!r} of {type(module).__name__} is not a plain attribute")
        self._record(module, None, name, value)

    def override_forward(self, module: nn.Module, forward: Callable[..., Any]) -> None:
        """Make ``forward(module, *args)`` the module's forward (an instance attribute, deleted on remove)."""
        if "forward" in module.__dict__:
            raise RuntimeError(f"{type(module).__name__} already has an instance-level forward override; "
                               "another tool patched this model")
        self.set_attribute(module, "forward", types.MethodType(forward, module))
