"""The registered attributors: ``attributor(model, inputs, target, **kwargs) -> Tensor`` shaped like inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from xai_plugins.extremal.channels import channel_extremal_perturbation, last_conv
from xai_plugins.extremal.checks import check_images
from xai_plugins.extremal.spatial import extremal_perturbation
from xai_plugins.host_bridge import extra_args
from xai_plugins.model_state import explaining

Inputs = torch.Tensor | tuple[torch.Tensor, ...]


def _tensors(inputs: Inputs, name: str) -> tuple[tuple[torch.Tensor, ...], bool]:
    """The input tensors and whether they came as a tuple (Captum's convention)."""
    if isinstance(inputs, (tuple, list)):
        if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
            raise TypeError(f"{name} expects a tensor or a tuple of tensors as inputs")
        return tuple(inputs), True
    return (inputs,), False


def _areas(areas: float | Sequence[float] | None, area: float | Sequence[float] | None) -> float | Sequence[float]:
    """``areas`` is the documented keyword (as in the Captum and Zennit classes); ``area`` is accepted too."""
    if areas is not None and area is not None:
        raise TypeError("pass the mask areas once, as areas=...; area= is an alias of it")
    if areas is None and area is None:
        return 0.1
    return areas if areas is not None else area  # type: ignore[return-value]


def extremal_attribution(model: torch.nn.Module, inputs: Inputs, target: int | Sequence[int] | torch.Tensor,
                         areas: float | Sequence[float] | None = None, *, area: float | Sequence[float] | None = None,
                         **kwargs: Any) -> Inputs:
    """Extremal perturbation masks expanded over the input channels: (N, C, H, W) like ``inputs``.

    With several areas the masks are summed (regions kept at small areas count most). A tuple of images with
    the same N, H and W is explained with one mask shared by all of them (``model(*inputs)``) and gives a tuple
    back. ``areas`` (default 0.1; ``area`` is an alias) and the other keywords are those of
    :func:`xai_plugins.extremal.extremal_perturbation`.
    """
    tensors, is_tuple = _tensors(inputs, "extremal_attribution")
    for t in tensors:
        check_images(t, "extremal_attribution")
    if len({(t.shape[0], *t.shape[2:]) for t in tensors}) > 1:
        raise ValueError("extremal_attribution: all input tensors must share N, H and W so one mask covers them; "
                         f"got shapes {[tuple(t.shape) for t in tensors]}")
    splits = [t.shape[1] for t in tensors]

    def joined_model(x: torch.Tensor, *args: Any) -> torch.Tensor:
        return model(*torch.split(x, splits, dim=1), *args)

    joined = torch.cat([t.detach() for t in tensors], dim=1)
    with explaining(model):
        result = extremal_perturbation(joined_model if is_tuple else model, joined, target, areas=_areas(areas, area),
                                       **kwargs)
    saliency = result.saliency()
    if saliency.shape[-2:] != joined.shape[-2:]:
        saliency = F.interpolate(saliency, size=joined.shape[-2:], mode="bilinear", align_corners=False)
    out = tuple(saliency.expand_as(t).to(t.dtype).contiguous() for t in tensors)
    return out if is_tuple else out[0]


def channel_extremal_attribution(model: torch.nn.Module, inputs: Inputs,
                                 target: int | Sequence[int] | torch.Tensor, layer: torch.nn.Module | None = None,
                                 areas: float | Sequence[float] | None = None, *,
                                 area: float | Sequence[float] | None = None, **kwargs: Any) -> Inputs:
    """Where the channels kept by a channel extremal perturbation fire, as an input-shaped (N, C, H, W) map.

    The channel masks of ``layer`` (default: the last ``nn.Conv2d``; summed over areas) weight the absolute
    activations of that layer on the unperturbed input; the sum over channels is upsampled to the input size,
    scaled to a maximum of 1 per sample and expanded over the input channels. ``areas`` (default 0.1; ``area``
    is an alias) are fractions of the layer's channels. The channel masks themselves
    come from :func:`xai_plugins.extremal.channel_extremal_perturbation`. A 1-tuple of inputs gives a 1-tuple.
    """
    tensors, is_tuple = _tensors(inputs, "channel_extremal_attribution")
    if len(tensors) != 1:
        raise ValueError("channel_extremal_attribution maps channels back to one image input; pass one tensor (or a "
                         "1-tuple), or use channel_extremal_perturbation with additional_forward_args")
    inputs = check_images(tensors[0], "channel_extremal_attribution")
    if layer is None:
        layer = last_conv(model)
    result = channel_extremal_perturbation(model, inputs, target, layer, areas=_areas(areas, area), **kwargs)
    weights = result.masks.sum(dim=1)
    captured: list[torch.Tensor] = []
    with explaining(model, "channel extremal perturbation"), torch.no_grad():
        handle = layer.register_forward_hook(lambda module, args, output: captured.append(output.detach()))
        try:
            model(inputs, *extra_args(kwargs.get("additional_forward_args")))
        finally:
            handle.remove()
    activation = captured[0]
    if activation.dim() != 4:
        raise ValueError(f"channel_extremal_attribution maps channels back to the image and needs a layer with "
                         f"spatial output (N, K, h, w); the layer returned shape {tuple(activation.shape)}. Use "
                         "channel_extremal_perturbation for the channel masks of this layer")
    footprint = (activation.abs() * weights[:, :, None, None]).sum(dim=1, keepdim=True)
    footprint = F.interpolate(footprint, size=inputs.shape[-2:], mode="bilinear", align_corners=False)
    footprint = footprint / footprint.flatten(1).amax(dim=1).clamp(min=1e-12).reshape(-1, 1, 1, 1)
    out = footprint.expand_as(inputs).to(inputs.dtype).contiguous()
    return (out,) if is_tuple else out

