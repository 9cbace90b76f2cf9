"""What the host bridges share, in pure torch: the attributor metadata they read, the call of a registered
attributor on Captum-style inputs, and the check of its result.

``xai_plugins_captum.attribution(name)`` and ``xai_plugins_zennit.attributor(name)`` are thin host classes over
these functions, so every registered attributor reaches every host the same way and a broken result is one
:class:`~xai_plugins.errors.ComponentContractError` naming the component and its plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xai_plugins.errors import ComponentContractError, HostMetadataError
from xai_plugins.hookspecs import ATTRIBUTION_KINDS
from xai_plugins.registry import Component, get_registry

__all__ = ["AttributorMetadata", "JoinedInputs", "as_input_tuple", "attribute_inputs", "attributor_component",
           "attributor_metadata", "check_attribution", "check_target", "describe_source", "extra_args",
           "join_inputs"]


def as_input_tuple(inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[tuple[torch.Tensor, ...], bool]:
    """Captum's ``inputs`` (a tensor, or a tuple or list of tensors) as a tuple, and whether it was one."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,), False
    if isinstance(inputs, (tuple, list)) and inputs and all(isinstance(t, torch.Tensor) for t in inputs):
        return tuple(inputs), True
    raise TypeError(f"inputs must be a tensor or a tuple of tensors; got {type(inputs).__name__}")


def extra_args(additional_forward_args: Any) -> tuple[Any, ...]:
    """Captum's ``additional_forward_args`` (``None``, a tuple, or a single argument) as a tuple."""
    if additional_forward_args is None:
        return ()
    if isinstance(additional_forward_args, tuple):
        return additional_forward_args
    return (additional_forward_args,)


def describe_source(component: Component) -> str:
    """``"attributor 'x' of plugin 'p'"``: how errors name a component."""
    return f"{component.kind} {component.name!r} of plugin {component.plugin!r}"


def attributor_component(name: str) -> Component:
    """The registry record of attributor ``name``; an unknown name lists the registered attributors."""
    return get_registry().component("attributor", name)


@dataclass(frozen=True)
class AttributorMetadata:
    """The metadata of an attributor a host bridge needs (see ``hookspecs.xai_register_attributors``)."""

    attribution_kind: str | None
    multiplies_by_inputs: bool
    has_convergence_delta: bool
    takes_additional_forward_args: bool = False


def attributor_metadata(component: Component, host: str | None = None) -> AttributorMetadata:
    """Read and validate the bridge metadata of ``component``.

    With ``host="captum"``, ``attribution_kind`` is required (it picks Captum's base class). A malformed or
    missing value is a :class:`HostMetadataError` naming the component, its plugin and the metadata key.
    """
    extra = component.extra
    kind = extra.get("attribution_kind")
    if kind is None and host == "captum":
        raise HostMetadataError(
            f"{describe_source(component)} cannot be a Captum attribution: it declares no attribution_kind; the "
            f"plugin must pass attribution_kind='gradient' or 'perturbation' to register()")
    if kind is not None and kind not in ATTRIBUTION_KINDS:
        raise HostMetadataError(f"{describe_source(component)} declares attribution_kind={kind!r}; use one of: "
                                f"{', '.join(map(repr, ATTRIBUTION_KINDS))}")
    flags = {}
    for key in ("multiplies_by_inputs", "has_convergence_delta", "takes_additional_forward_args"):
        value = extra.get(key, False)
        if not isinstance(value, bool):
            raise HostMetadataError(f"{describe_source(component)} declares {key}={value!r}; it must be True or "
                                    "False")
        flags[key] = value
    if flags["has_convergence_delta"] and kind != "gradient":
        raise HostMetadataError(
            f"{describe_source(component)} declares has_convergence_delta=True with attribution_kind={kind!r}; "
            "a convergence delta is computed from input gradients, so it needs attribution_kind='gradient'")
    return AttributorMetadata(kind, flags["multiplies_by_inputs"], flags["has_convergence_delta"],
                              flags["takes_additional_forward_args"])


def check_attribution(component: Component, result: Any, expected_shape: Sequence[int]) -> torch.Tensor:
    """Return ``result`` if it is a tensor of ``expected_shape`` with finite values, else raise
    :class:`ComponentContractError` naming the component, its plugin and what is wrong."""
    if isinstance(result, tuple) and len(result) == 1 and isinstance(result[0], torch.Tensor):
        result = result[0]
    if not isinstance(result, torch.Tensor):
        raise ComponentContractError(f"{describe_source(component)} returned {type(result).__name__}, not a "
                                     "torch.Tensor shaped like the inputs")
    if tuple(result.shape) != tuple(expected_shape):
        raise ComponentContractError(f"{describe_source(component)} returned shape {tuple(result.shape)} for "
                                     f"inputs of shape {tuple(expected_shape)}; it must return the inputs' shape")
    bad = int((~torch.isfinite(result)).sum())
    if bad:
        raise ComponentContractError(f"{describe_source(component)} returned {bad} non-finite value(s) (NaN or "
                                     f"inf) of {result.numel()}; the attribution is unusable")
    return result.detach()


class _JoinedForward(nn.Module):
    """``forward_func`` called on the pieces of one joined input tensor, with the extra arguments appended.

    A module ``forward_func`` is a submodule, so an attributor that restores its model's modes restores it too.
    """

    def __init__(self, forward_func: Callable[..., torch.Tensor], split: Callable[[torch.Tensor], tuple],
                 extra: tuple[Any, ...]) -> None:
        super().__init__()
        self.forward_func = forward_func
        self._split = split
        self._extra = extra

    def forward(self, joined: torch.Tensor, *additional_forward_args: Any) -> torch.Tensor:
        return self.forward_func(*self._split(joined), *self._extra, *additional_forward_args)


@dataclass
class JoinedInputs:
    """Captum-style inputs as the one tensor the attributor contract takes, and the way back."""

    tensor: torch.Tensor
    model: Callable[..., torch.Tensor]
    split: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


def join_inputs(forward_func: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...],
                additional_forward_args: tuple[Any, ...] = ()) -> JoinedInputs:
    """Present ``forward_func(*inputs, *additional_forward_args)`` as ``model(tensor)`` of one batch tensor.

    One input, no extra arguments and a module ``forward_func``: the tensor and the module as they are.
    Several inputs of the same shape but for dimension 1 (channels): joined along it, so image attributors
    still see (N, C, H, W).
    Otherwise each input is flattened per sample and the flat pieces are joined into (N, D).
    """
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise TypeError("inputs must be a tensor or a non-empty tuple of tensors")
    batch = inputs[0].shape[0] if inputs[0].dim() else None
    if batch is None or any(t.dim() == 0 or t.shape[0] != batch for t in inputs):
        raise ValueError(f"every input tensor needs the batch first, the same for all; got shapes "
                         f"{[tuple(t.shape) for t in inputs]}")
    if len(inputs) == 1 and not additional_forward_args and isinstance(forward_func, nn.Module):
        return JoinedInputs(inputs[0], forward_func, lambda x: (x,))
    shapes = [tuple(t.shape) for t in inputs]
    same_but_channels = (all(t.dim() >= 2 for t in inputs) and len({s[:1] + s[2:] for s in shapes}) == 1)
    if same_but_channels:
        sizes = [s[1] for s in shapes]

        def split(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(torch.split(x, sizes, dim=1))

        joined = torch.cat(list(inputs), dim=1)
    else:
        sizes = [int(torch.Size(s[1:]).numel()) for s in shapes]

        def split(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(p.reshape(x.shape[0], *s[1:]) for p, s in zip(torch.split(x, sizes, dim=1), shapes))

        joined = torch.cat([t.reshape(batch, -1) for t in inputs], dim=1)
    return JoinedInputs(joined, _JoinedForward(forward_func, split, tuple(additional_forward_args)), split)


def check_target(target: Any, who: str) -> Any:
    """Return ``target`` if it names one output class per sample (an int, a list of ints, a tensor of shape
    (N,)); else a ``ValueError`` that starts with ``who`` (a component, or the host class that explains)."""
    if target is None:
        raise ValueError(f"{who} needs a target: the output class to explain, as an int, a list of ints (one per "
                         "sample) or a tensor of shape (N,)")
    if isinstance(target, tuple) or (isinstance(target, list) and any(isinstance(t, tuple) for t in target)):
        raise ValueError(f"{who} explains one output class per sample; tuple targets for multi-dimensional outputs "
                         "are not supported: reduce the output to (N, classes) in the forward function")
    return target


def attribute_inputs(component: Component, forward_func: Callable[..., torch.Tensor],
                     inputs: tuple[torch.Tensor, ...], target: Any, additional_forward_args: tuple[Any, ...] = (),
                     **kwargs: Any) -> tuple[torch.Tensor, ...]:
    """Attributions of the registered attributor for ``forward_func(*inputs, *additional_forward_args)``, one
    per input tensor, each checked (shape, finiteness) and in that input's dtype.

    The extra arguments are bound to the model the attributor gets, or, for an attributor that declares
    ``takes_additional_forward_args``, handed to it as the keyword ``additional_forward_args`` (it then passes them
    to the model itself, e.g. row by row when it evaluates more rows than the batch has). Gradients are enabled
    for the call (Captum's metrics call explanation functions under ``no_grad``).
    """
    delegate = attributor_metadata(component).takes_additional_forward_args and bool(additional_forward_args)
    joined = join_inputs(forward_func, inputs, () if delegate else additional_forward_args)
    if delegate:
        kwargs["additional_forward_args"] = tuple(additional_forward_args)
    x = joined.tensor.detach()
    with torch.enable_grad():
        result = component.load()(joined.model, x, check_target(target, describe_source(component)), **kwargs)
    result = check_attribution(component, result, x.shape)
    return tuple(r.to(t.dtype).contiguous() for r, t in zip(joined.split(result), inputs))
