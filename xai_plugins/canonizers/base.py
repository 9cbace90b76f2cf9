"""The canonizer base class: Zennit's duck-typed interface with atomic apply and exact restore.

A canonizer rewrites a model into a form that computes the same function but that rule-based attribution
handles correctly. Every change goes through the recording editors of :class:`Canonizer` (swap a parameter,
a buffer, a child module or an instance attribute), each of which pushes its inverse onto an undo stack:

- ``apply`` is atomic: if anything raises halfway, the stack is unwound and the exception re-raised.
- ``remove`` unwinds the stack; the original tensors were never written to (they are swapped out, not
  modified), so the state dict and the outputs are bitwise what they were and no attribute is left behind.
- Applying the same instance twice to the same model is a no-op; removing twice is a no-op. A module that
  another canonizer instance already changed is refused with a clear error instead of being changed twice.
"""

from __future__ import annotations

import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["Canonizer", "CanonizerHandle", "modules_of", "release_spare_blocks"]

RESERVE_LIMIT = 24 << 20
"""Largest block, in bytes, that :meth:`Canonizer.reserve` allocates (below glibc's 32 MB mmap ceiling)."""

_SPARE: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, int]] = {}
"""Per dtype and device, the last block :meth:`Canonizer.reserve` allocated and its storage's use count when
nothing but the block held it; kept after ``remove`` so that the next ``apply`` writes into memory the process
already has (see ``reserve``). At most ``RESERVE_LIMIT`` bytes each; :func:`release_spare_blocks` frees them."""
_SPARE_LOCK = threading.Lock()
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
the claim holds the module, so the id cannot be reused meanwhile (a plain dictionary: no weak reference is
made per module and apply)."""


def _padded(size: int) -> int:
    """``size`` rounded up to 16 elements: every tensor handed out of a reserved block starts 64-byte aligned."""
    return -(-size // 16) * 16


def _storage_users(block: torch.Tensor) -> int | None:
    """How many tensors share ``block``'s storage (torch's own counter; ``None`` if this torch lacks it)."""
    count = getattr(torch._C, "_storage_Use_Count", None)
    return None if count is None else count(block.untyped_storage()._cdata)


def _spare_block(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A block of at least ``size`` elements: the kept spare if no tensor uses it any more, else a new one,
    which becomes the spare. Called under ``_SPARE_LOCK`` so that two applies never get the same block."""
    key = (dtype, device)
    spare = _SPARE.get(key)
    if spare is not None and spare[0].numel() >= size and _storage_users(spare[0]) == spare[1]:
        return spare[0]
    block = torch.empty(size, dtype=dtype, device=device)
    users = _storage_users(block)
    if users is None:
        _SPARE.pop(key, None)
    else:
        _SPARE[key] = (block, users)
    return block


def release_spare_blocks() -> None:
    """Free the blocks canonizers keep between applies (at most ``RESERVE_LIMIT`` bytes per dtype and device);
    a block still used by a canonized model is freed when that model's merged weights are."""
    with _SPARE_LOCK:
        _SPARE.clear()


def modules_of(model: nn.Module) -> list[nn.Module]:
    """``list(model.modules())``: every module once, in the same (depth-first) order, without the nested
    generators of ``named_modules``, which for a DenseNet's 430 modules cost more than the walk itself."""
    found: list[nn.Module] = []
    seen: set[int] = set()
    stack: list[nn.Module | None] = [model]
    while stack:
        module = stack.pop()
        if module is None or id(module) in seen:
            continue
        seen.add(id(module))
        found.append(module)
        children = module._modules
        if children:
            stack.extend(reversed(children.values()))
    return found


class CanonizerHandle:
    """Handle returned by :meth:`Canonizer.apply`; ``remove()`` reverts the canonizer (as Zennit expects)."""

    def __init__(self, canonizer: Canonizer) -> None:
        self.canonizer = canonizer

    def remove(self) -> None:
        """Revert every change the canonizer made."""
        self.canonizer.remove()


class Canonizer:
    """Base class of all xai-plugins canonizers (usable wherever Zennit accepts a canonizer).

    Subclasses implement :meth:`canonize`, making every change through the ``swap_*``/``set_*`` editors below.
    """

    def __init__(self) -> None:
        self._undo: list[tuple[nn.Module, str | None, str, Any]] = []
        self._claimed: dict[int, nn.Module] = {}
        self._fresh: dict[int, torch.Tensor] = {}
        self._reserved: dict[int, torch.Tensor] = {}
        self._model: weakref.ReferenceType[nn.Module] | None = None
        self._handle: CanonizerHandle | None = None
        self._extensions: list[Any] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def canonize(self, model: nn.Module) -> None:
        """Rewrite ``model`` in place using the recording editors. Implemented by subclasses."""
        raise NotImplementedError(f"{type(self).__name__} must implement canonize(model)")

    def apply(self, model: nn.Module) -> list[CanonizerHandle]:
        """Canonize ``model``; returns a list with one handle whose ``remove()`` reverts everything."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"{type(self).__name__}.apply expects a torch.nn.Module, got {type(model).__name__}")
        current = self._model() if self._model is not None else None
        if current is model and self._handle is not None:
            return [self._handle]
        if current is not None:
            raise RuntimeError(f"{self!r} is already applied to another model; call remove() first or use "
                               "copy() to canonize a second model")
        if _host_entries is None or _host_entries:
            _load_host_extensions()
        try:
            for extension in APPLY_EXTENSIONS:
                handle = extension(self, model, "before")
                if handle is not None:
                    self._extensions.append(handle)
            with torch.no_grad():
                self.canonize(model)
            for extension in APPLY_EXTENSIONS:
                handle = extension(self, model, "after")
                if handle is not None:
                    self._extensions.append(handle)
        except BaseException:
            self._unwind()
            raise
        finally:
            self._reserved.clear()
        self._model = weakref.ref(model)
        self._handle = CanonizerHandle(self)
        return [self._handle]

    def remove(self) -> None:
        """Revert every change, restoring the model exactly; safe to call more than once."""
        self._unwind()
        self._model = None
        self._handle = None

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
        for module in self._claimed.values():
            if _OWNERS.get(id(module)) is self:
                del _OWNERS[id(module)]
        self._claimed.clear()
        self._fresh.clear()
        self._reserved.clear()

    def reserve(self, tensors: Iterable[torch.Tensor]) -> None:
        """Allocate room for a new tensor shaped like each of ``tensors`` in one block per dtype and device, if
        the block stays below ``RESERVE_LIMIT`` bytes; during this ``apply``, :meth:`new_like` hands it out.

        Why: memory freed on ``remove`` often goes back to the operating system (glibc trims the top of its
        heap, and maps large blocks freshly), and the next ``apply`` then page-faults it in again: 5,600 faults,
        about 8 ms, for the 23 MB of a DenseNet-121's merged weights, which is more than the merge itself. In
        the benchmark this hit every second apply in some processes (depending on what the LRP runs in between
        had allocated). So one block is allocated, and kept after ``remove`` as a spare for the next ``apply``;
        it is handed out again only when torch's own count shows that no tensor uses its storage any more (a
        merged weight the user kept after ``remove``, or an autograd graph holding one, gets a fresh block
        instead). Blocks above ``RESERVE_LIMIT`` are not kept: larger sets of weights are allocated per tensor.
        """
        groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
        for tensor in tensors:
            if tensor.is_contiguous() and id(tensor) not in self._reserved:
                groups.setdefault((tensor.dtype, tensor.device), []).append(tensor)
        for (dtype, device), members in groups.items():
            sizes = [_padded(tensor.numel()) for tensor in members]
            if sum(sizes) * members[0].element_size() > RESERVE_LIMIT:
                continue
            with _SPARE_LOCK:  # the slices taken before the lock is released mark the block as used
                block = _spare_block(sum(sizes), dtype, device)
                offset = 0
                for tensor, size in zip(members, sizes):
                    # contiguous, so the source's own strides describe the slice
                    self._reserved[id(tensor)] = block.as_strided(tensor.shape, tensor.stride(), offset)
                    offset += size

    def new_like(self, tensor: torch.Tensor) -> torch.Tensor | None:
        """The room :meth:`reserve` set aside for ``tensor`` (uninitialised, same shape and dtype), to pass as
        ``out=`` once; ``None`` (the operation allocates) when none was reserved or autograd is recording
        (``out=`` is not differentiable)."""
        if torch.is_grad_enabled():
            return None
        return self._reserved.pop(id(tensor), None)

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

    def is_fresh(self, tensor: torch.Tensor | None) -> bool:
        """Whether ``tensor`` is a parameter this canonizer created (so it may be updated in place: it is not
        the user's tensor and nothing outside the canonizer has seen it before ``apply`` returns)."""
        return tensor is not None and self._fresh.get(id(tensor)) is tensor

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
            self._fresh[id(new)] = new
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
