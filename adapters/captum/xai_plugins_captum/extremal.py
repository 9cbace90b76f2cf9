"""Extremal perturbations as native Captum attributions.

``ExtremalPerturbation(forward_func).attribute(inputs, target=..., areas=...)`` follows Captum's conventions
(tensor or tuple inputs, int / list / tensor targets, ``additional_forward_args``) and returns, per input tensor,
the masks summed over the areas and expanded over that tensor's channels. It works inside ``NoiseTunnel``,
``captum.metrics.sensitivity_max`` (which call ``attribute`` under ``no_grad``) and with ``infidelity``. It is the
registered attributor ``extremal_perturbation`` through the generic Captum bridge
(:class:`~xai_plugins_captum.bridge.RegisteredAttribution`), the same way a third-party attributor reaches Captum.
``LayerExtremalPerturbation(forward_func, layer)`` returns per-instance channel masks expanded to the layer's
output shape (or, with ``attribute_to_layer_input=True``, over the channels of the layer's input): masks of a
layer are not shaped like the inputs, so it calls the core's channel optimisation directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from captum.attr import LayerAttribution, PerturbationAttribution
from captum.log import log_usage

from xai_plugins.extremal.channels import channel_extremal_perturbation
from xai_plugins.host_bridge import as_input_tuple, check_target, extra_args
from xai_plugins.model_state import explaining
from xai_plugins_captum.bridge import RegisteredAttribution

Inputs = torch.Tensor | tuple[torch.Tensor, ...]


class ExtremalPerturbation(RegisteredAttribution, PerturbationAttribution):
    """Extremal perturbations (Fong, Patrick and Vedaldi, ICCV 2019) as a Captum attribution method.

    For each image and each requested area, a smooth mask that keeps that fraction of the image (``"preserve"``)
    or removes it (``"delete"``) while maximising the target score; the attribution is the sum of the masks over
    the areas, so regions kept at small areas count most. The registered attributor ``extremal_perturbation`` of
    the built-in plugin ``extremal`` through the Captum bridge (needs that plugin loaded: not blocked by
    ``XAI_PLUGINS_BLOCK``, autoload not disabled).

    Args:
        forward_func: the model, or any callable ``forward_func(*inputs, *additional_forward_args)`` that returns
            scores of shape (N, classes).

    Cost: each of at most ``max_iter`` (default 70) iterations is one forward and one backward pass of
    ``forward_func`` over N × len(areas) masked images at once, plus a few passes for the final rewards.

    Example::

        attr = ExtremalPerturbation(model).attribute(images, target=[3, 7], areas=(0.05, 0.1), max_iter=20)
        # attr: shaped like images, masks summed over the two areas and expanded over the channels
    """

    registered_name = "extremal_perturbation"
    host_name = "ExtremalPerturbation"

    def __init__(self, forward_func: Any) -> None:
        super().__init__(forward_func)

    @log_usage(part_of_slo=False)
    def attribute(self, inputs: Inputs, target: Any = None, additional_forward_args: Any = None,
                  areas: float | Sequence[float] = (0.1,), variant: str = "preserve", progress: bool = False,
                  **kwargs: Any) -> Inputs:
        """Masks of the given areas summed over the areas, shaped like each input tensor.

        Args:
            inputs: (N, C, H, W) images, or a tuple of such tensors with the same N, H and W (one mask covers all
                of them; ``forward_func`` gets them as separate arguments).
            target: the class to explain: an int for all samples, a list of N ints or a tensor of shape (N,).
            additional_forward_args: extra arguments of ``forward_func`` (a tuple, or one argument); tensors with
                N rows follow the rows of the masked batch.
            areas: fractions of the image the masks keep, each in (0, 1); default ``(0.1,)``.
            variant: ``"preserve"`` (default), ``"delete"`` or ``"dual"``.
            progress: show a progress bar.
            **kwargs: the other keywords of :func:`xai_plugins.extremal.extremal_perturbation` (``perturbation``,
                ``reward``, ``max_iter``, ``seed``, ...).

        Returns:
            A tensor shaped like ``inputs`` (a tuple of them for tuple inputs), in each input's dtype.
        """
        tensors, _ = as_input_tuple(inputs)
        shapes = {(t.shape[0], *t.shape[2:]) if t.dim() == 4 else None for t in tensors}
        if None in shapes:
            bad = next(tuple(t.shape) for t in tensors if t.dim() != 4)
            raise ValueError(f"ExtremalPerturbation expects images of shape (N, C, H, W); got an input of shape "
                             f"{bad}. Use LayerExtremalPerturbation for inputs that are not images")
        if len(shapes) > 1:
            raise ValueError("all input tensors must share the batch size and the image size (N, *, H, W) so one "
                             f"mask covers them; got shapes {[tuple(t.shape) for t in tensors]}")
        return super().attribute(inputs, target=target, additional_forward_args=additional_forward_args,
                                 areas=areas, variant=variant, progress=progress, **kwargs)


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
        target = check_target(target, "LayerExtremalPerturbation")
        with explaining(forward_func, "LayerExtremalPerturbation"):
            result = channel_extremal_perturbation(forward_func, tensors[0].detach(), target, self.layer,
                                                   areas=areas, variant=variant, layer_input=attribute_to_layer_input,
                                                   additional_forward_args=extra, progress=progress, **kwargs)
        weights = result.masks.sum(dim=1)
        shape = result.layer_shape
        return weights.reshape(*weights.shape, *([1] * (len(shape) - 2))).expand(batch, *shape[1:]).contiguous()
