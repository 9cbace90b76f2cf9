"""Extremal perturbations as a Zennit attributor, used like ``zennit.attribution.Occlusion``::

    with ExtremalPerturbation(model, areas=(0.1,)) as attributor:
        output, relevance = attributor(images, torch.eye(1000)[targets])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from zennit.attribution import Attributor

from xai_plugins.extremal.spatial import extremal_perturbation


class ExtremalPerturbation(Attributor):
    """Zennit attributor computing extremal perturbation masks (summed over ``areas``), shaped like the input.

    The class explained for each sample is the argmax of the output attribution (``attr_output``: a one-hot
    tensor, or a function of the output; by default the output itself, i.e. the predicted class). A composite,
    if given, is registered while the attributor runs, as for every Zennit attributor. Keywords go to
    :func:`xai_plugins.extremal.extremal_perturbation`.
    """

    def __init__(self, model: torch.nn.Module, composite: Any = None, attr_output: Any = None,
                 areas: float | Sequence[float] = (0.1,), **kwargs: Any) -> None:
        super().__init__(model=model, composite=composite, attr_output=attr_output)
        self.areas = areas
        self.kwargs = kwargs

    def forward(self, input: torch.Tensor, attr_output_fn: Callable[[torch.Tensor], torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The model output on ``input`` and the (N, C, H, W) masks summed over the areas."""
        with torch.no_grad():
            output = self.model(input)
        selection = attr_output_fn(output.detach())
        if not isinstance(selection, torch.Tensor) or selection.shape != output.shape:
            raise ValueError(f"attr_output must select classes with the output's shape {tuple(output.shape)} "
                             f"(e.g. torch.eye(num_classes)[targets]); got {getattr(selection, 'shape', selection)}")
        target = selection.reshape(selection.shape[0], -1).argmax(dim=1)
        result = extremal_perturbation(self.model, input, target, areas=self.areas, **self.kwargs)
        return output, result.saliency().expand_as(input).contiguous()
