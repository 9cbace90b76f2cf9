"""Extremal perturbations as native Captum attributions.

``ExtremalPerturbation(forward_func).attribute(inputs, target=..., areas=...)`` follows Captum's conventions
(tensor or tuple inputs, int / list / tensor targets, ``additional_forward_args``) and returns, per input tensor,
the masks summed over the areas and expanded over that tensor's channels. It works inside ``NoiseTunnel``,
``captum.metrics.sensitivity_max`` (which call ``attribute`` under ``no_grad``) and with ``infidelity``.
``LayerExtremalPerturbation(forward_func, layer)`` returns per-instance channel masks expanded to the layer's
output shape (or, with ``attribute_to_layer_input=True``, over the channels of the layer's input).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from captum.attr import LayerAttribution, PerturbationAttribution
from captum.log import log_usage

from xai_plugins.extremal.channels import channel_extremal_perturbation
from xai_plugins.extremal.spatial import extremal_perturbation
from xai_plugins.host_bridge import as_input_tuple, extra_args
from xai_plugins.model_state import explaining

Inputs = torch.Tensor | tuple[torch.Tensor, ...]



def _check_target(target: Any) -> Any:
    if target is None:
        raise ValueError("ExtremalPerturbation needs a target: the output class to explain, as an int, a list of "
                         "ints (one per sample) or a tensor of shape (N,)")
    if isinstance(target, tuple) or (isinstance(target, list) and any(isinstance(t, tuple) for t in target)):
        raise ValueError("ExtremalPerturbation explains one output channel per sample; tuple targets for "
                         "multi-dimensional outputs are not supported. Reduce the output to (N, classes) in "
                         "forward_func")
    return target


class ExtremalPerturbation(PerturbationAttribution):
    """Extremal perturbations (Fong, Patrick and Vedaldi, ICCV 2019) as a Captum attribution method."""

    def __init__(self, forward_func: Any) -> None:
        super().__init__(forward_func)

    @log_usage(part_of_slo=False)
    def attribute(self, inputs: Inputs, target: Any = None, additional_forward_args: Any = None,
                  areas: float | Sequence[float] = (0.1,), variant: str = "preserve", progress: bool = False,
                  **kwargs: Any) -> Inputs:
        """Masks of the given areas summed over the areas, shaped like each input tensor.

        All input tensors must be (N, C_i, H, W) with the same N, H and W: one mask covers all of them. Other
        keywords go to :func:`xai_plugins.extremal.extremal_perturbation` (``perturbation``, ``reward``,
        ``max_iter``, ``seed``, ...).
        """
        tensors, is_tuple = as_input_tuple(inputs)
        shapes = {(t.shape[0], *t.shape[2:]) if t.dim() == 4 else None for t in tensors}
        if None in shapes:
            bad = next(tuple(t.shape) for t in tensors if t.dim() != 4)
            raise ValueError(f"ExtremalPerturbation expects images of shape (N, C, H, W); got an input of shape "
                             f"{bad}. Use LayerExtremalPerturbation for inputs that are not images")
        if len(shapes) > 1:
            raise ValueError("all input tensors must share the batch size and the image size (N, *, H, W) so one "
                             f"mask covers them; got shapes {[tuple(t.shape) for t in tensors]}")
        splits = [t.shape[1] for t in tensors]
        forward_func = self.forward_func

        def forward(x: torch.Tensor, *args: Any) -> torch.Tensor:
            return forward_func(*torch.split(x, splits, dim=1), *args)

        joined = torch.cat([t.detach() for t in tensors], dim=1)
        with explaining(forward_func, "ExtremalPerturbation"):
            result = extremal_perturbation(forward, joined, _check_target(target), areas=areas, variant=variant,
                                           additional_forward_args=extra_args(additional_forward_args),
                                           progress=progress, **kwargs)
        saliency = result.saliency()
        out = tuple(saliency.expand_as(t).to(t.dtype).contiguous() for t in tensors)
        return out if is_tuple else out[0]


class LayerExtremalPerturbation(LayerAttribution, PerturbationAttribution):
    """Channel extremal perturbations of ``layer``: per-instance channel masks in Captum's layer convention."""

    def __init__(self, forward_func: Any, layer: torch.nn.Module, device_ids: list[int] | None = None) -> None:
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
        PerturbationAttribution.__init__(self, forward_func)

    @log_usage(part_of_slo=False)
    def attribute(self, inputs: Inputs, target: Any = None, additional_forward_args: Any = None,
                  areas: float | Sequence[float] = (0.1,), variant: str = "preserve", progress: bool = False,
                  attribute_to_layer_input: bool = False, **kwargs: Any) -> torch.Tensor:
        """Channel masks summed over the areas, expanded to the layer's output shape (N, K, ...), or with
        ``attribute_to_layer_input`` masks over the channels of the layer's (first) input, expanded to its shape.

        Inputs may be a tensor or a tuple of tensors with the batch first (any shape); ``forward_func`` is called
        as ``forward_func(*inputs, *additional_forward_args)``.
        """
        tensors, _ = as_input_tuple(inputs)
        forward_func = self.forward_func
        batch = tensors[0].shape[0]
        if any(t.shape[0] != batch for t in tensors):
            raise ValueError(f"all input tensors must share the batch size; got {[tuple(t.shape) for t in tensors]}")
        extra = tuple(t.detach() for t in tensors[1:]) + extra_args(additional_forward_args)
        with explaining(forward_func, "LayerExtremalPerturbation"):
            result = channel_extremal_perturbation(forward_func, tensors[0].detach(), _check_target(target),
                                                   self.layer, areas=areas, variant=variant,
                                                   layer_input=attribute_to_layer_input,
                                                   additional_forward_args=extra, progress=progress, **kwargs)
        weights = result.masks.sum(dim=1)
        shape = result.layer_shape
        return weights.reshape(*weights.shape, *([1] * (len(shape) - 2))).expand(batch, *shape[1:]).contiguous()
