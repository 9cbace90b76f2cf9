"""Snapshots of a model's complete state, and a readable diff between two of them.

A component must hand a user's model back exactly as it found it. The snapshot records everything a user can
observe: the module tree (and the identity of each module object), parameters and buffers bit for bit,
``requires_grad`` and ``.grad``, ``training``, hooks on every module and the global module hooks, and instance
attributes (a canonizer that overrides ``forward`` on an instance and forgets to delete it is caught here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_state_dict_hooks", "_load_state_dict_pre_hooks")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")
_SIMPLE = (bool, int, float, str, type(None))
_MAX_LINES = 8


def _hook_counts(mod: nn.Module) -> dict[str, int]:
    return {name.strip("_"): len(getattr(mod, name, None) or {}) for name in _HOOK_DICTS}


def _global_hook_counts() -> dict[str, int]:
    return {name.strip("_"): len(getattr(_module, name, None) or {}) for name in _GLOBAL_HOOKS}


def _simple_attributes(mod: nn.Module) -> dict[str, Any]:
    out = {}
    for key, value in vars(mod).items():
        if key.startswith("_") or key == "training":
            continue
        if isinstance(value, _SIMPLE) or (isinstance(value, tuple) and all(isinstance(v, _SIMPLE) for v in value)):
            out[key] = value
        else:
            out[key] = f"<{type(value).__name__} at {id(value):#x}>"
    return out


@dataclass
class ModelState:
    """Everything observable about a model at one moment (tensors are cloned)."""

    modules: dict[str, tuple[int, str]] = field(default_factory=dict)
    params: dict[str, tuple[int, torch.Tensor, bool, torch.Tensor | None]] = field(default_factory=dict)
    buffers: dict[str, torch.Tensor | None] = field(default_factory=dict)
    training: dict[str, bool] = field(default_factory=dict)
    hooks: dict[str, dict[str, int]] = field(default_factory=dict)
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    global_hooks: dict[str, int] = field(default_factory=dict)


def snapshot(model: nn.Module) -> ModelState:
    """Record the full state of ``model``."""
    state = ModelState(global_hooks=_global_hook_counts())
    for name, mod in model.named_modules(remove_duplicate=False):
        key = name or "<root>"
        state.modules[key] = (id(mod), type(mod).__qualname__)
        state.training[key] = mod.training
        state.hooks[key] = _hook_counts(mod)
        state.attributes[key] = _simple_attributes(mod)
    for name, p in model.named_parameters(remove_duplicate=False):
        grad = None if p.grad is None else p.grad.detach().clone()
        state.params[name] = (id(p), p.detach().clone(), p.requires_grad, grad)
    for name, b in model.named_buffers(remove_duplicate=False):
        state.buffers[name] = None if b is None else b.detach().clone()
    return state


def _tensor_diff(a: torch.Tensor, b: torch.Tensor) -> str | None:
    if a.shape != b.shape or a.dtype != b.dtype:
        return f"shape/dtype {tuple(a.shape)} {a.dtype} -> {tuple(b.shape)} {b.dtype}"
    if torch.equal(a, b) or (a.is_floating_point() and torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))
                             and torch.equal(a.isnan(), b.isnan())):
        return None
    diff = (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
    return f"max abs diff {diff:.3g}"


def diff_states(before: ModelState, after: ModelState) -> list[str]:
    """Human-readable differences between two snapshots of one model, most important first."""
    lines: list[str] = []
    added = [n for n in after.modules if n not in before.modules]
    removed = [n for n in before.modules if n not in after.modules]
    if added:
        lines.append(f"modules added: {', '.join(added[:5])}{' ...' if len(added) > 5 else ''}")
    if removed:
        lines.append(f"modules removed: {', '.join(removed[:5])}{' ...' if len(removed) > 5 else ''}")
    for name, (ident, typ) in before.modules.items():
        if name in after.modules and after.modules[name] != (ident, typ):
            new_type = after.modules[name][1]
            what = f"type {typ} -> {new_type}" if new_type != typ else "the same type, another object"
            lines.append(f"module '{name}' was replaced ({what})")
    for name, (ident, value, req, grad) in before.params.items():
        if name not in after.params:
            lines.append(f"parameter '{name}' is gone")
            continue
        ident2, value2, req2, grad2 = after.params[name]
        change = _tensor_diff(value, value2)
        if change:
            lines.append(f"parameter '{name}' changed: {change}")
        elif ident2 != ident:
            lines.append(f"parameter '{name}' was replaced by another Parameter object (same values)")
        if req2 != req:
            lines.append(f"requires_grad of '{name}' changed: {req} -> {req2}")
        if (grad is None) != (grad2 is None):
            lines.append(f".grad of '{name}' changed: {'None' if grad is None else 'set'} -> "
                         f"{'None' if grad2 is None else 'set'}")
        elif grad is not None and grad2 is not None and _tensor_diff(grad, grad2):
            lines.append(f".grad of '{name}' changed: {_tensor_diff(grad, grad2)}")
    for name in after.params.keys() - before.params.keys():
        lines.append(f"parameter '{name}' was added")
    for name, buffer in before.buffers.items():
        if name not in after.buffers:
            lines.append(f"buffer '{name}' is gone")
            continue
        buffer2 = after.buffers[name]
        if buffer is None or buffer2 is None:
            if (buffer is None) != (buffer2 is None):
                lines.append(f"buffer '{name}' changed between None and a tensor")
        elif _tensor_diff(buffer, buffer2):
            lines.append(f"buffer '{name}' changed: {_tensor_diff(buffer, buffer2)}")
    for name in after.buffers.keys() - before.buffers.keys():
        lines.append(f"buffer '{name}' was added")
    flipped = [n for n, t in before.training.items() if n in after.training and after.training[n] != t]
    if flipped:
        mode = "training" if after.training[flipped[0]] else "eval"
        was = "eval" if mode == "training" else "training"
        lines.append(f"left {len(flipped)} module(s) in {mode} mode (was {was}), e.g. '{flipped[0]}'")
    for name, counts in before.hooks.items():
        if name in after.hooks and after.hooks[name] != counts:
            changes = ", ".join(f"{k} {counts[k]} -> {after.hooks[name][k]}" for k in counts
                                if counts[k] != after.hooks[name][k])
            lines.append(f"hooks on '{name}' changed: {changes}")
    if before.global_hooks != after.global_hooks:
        changes = ", ".join(f"{k} {before.global_hooks[k]} -> {after.global_hooks[k]}" for k in before.global_hooks
                            if before.global_hooks[k] != after.global_hooks[k])
        lines.append(f"global module hooks changed: {changes}")
    for name, attrs in before.attributes.items():
        if name not in after.attributes:
            continue
        attrs2 = after.attributes[name]
        for key in attrs2.keys() - attrs.keys():
            lines.append(f"attribute '{key}' was left set on module '{name}'")
        for key in attrs.keys() - attrs2.keys():
            lines.append(f"attribute '{key}' was deleted from module '{name}'")
        for key in attrs.keys() & attrs2.keys():
            if attrs[key] != attrs2[key]:
                lines.append(f"attribute '{key}' of module '{name}' changed: {attrs[key]!r} -> {attrs2[key]!r}")
    return lines


def summarize(lines: list[str]) -> str:
    """The first few diff lines joined, with a count of the rest."""
    shown = "; ".join(lines[:_MAX_LINES])
    return shown + (f"; and {len(lines) - _MAX_LINES} more" if len(lines) > _MAX_LINES else "")


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b| / max |a|`` in float64 (``inf`` for a shape mismatch or non-finite values)."""
    if a.shape != b.shape:
        return float("inf")
    a64, b64 = a.detach().double(), b.detach().double()
    if not (torch.isfinite(a64).all() and torch.isfinite(b64).all()):
        return float("inf")
    scale = a64.abs().max().item() if a64.numel() else 0.0
    diff = (a64 - b64).abs().max().item() if a64.numel() else 0.0
    if diff == 0.0:
        return 0.0
    return diff / scale if scale > 0 else float("inf")
