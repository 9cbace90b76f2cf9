"""Extremal perturbations as a Zennit attributor, used like ``zennit.attribution.Occlusion``::

    with ExtremalPerturbation(model, areas=(0.1,)) as attributor:
        output, relevance = attributor(images, torch.eye(1000)[targets])

It is the registered attributor ``extremal_perturbation`` through the generic Zennit bridge
(:class:`~xai_plugins_zennit.bridge.RegisteredAttributor`), the same way a third-party attributor reaches Zennit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from xai_plugins_zennit.bridge import RegisteredAttributor


class ExtremalPerturbation(RegisteredAttributor):
    """Zennit attributor computing extremal perturbation masks (summed over ``areas``), shaped like the input.

    Args:
        model: the classifier, returning (N, classes).
        composite: a Zennit composite registered while the attributor runs, as for every Zennit attributor.
        attr_output: which class to explain per sample: one-hot rows (``torch.eye(num_classes)[targets]``) or a
            function of the output giving them; the relevance is the masks times the row's entry. Default: the
            predicted class (argmax of the output), entry 1.
        areas: fractions of the image the masks keep, each in (0, 1); default ``(0.1,)``.
        **kwargs: the other keywords of :func:`xai_plugins.extremal.extremal_perturbation` (``variant``,
            ``max_iter``, ``seed``, ...), used on every call.

    Cost per call: at most ``max_iter`` (default 70) forward and backward passes of the model over
    N × len(areas) masked images at once. Needs the built-in plugin ``extremal`` loaded (not blocked by
    ``XAI_PLUGINS_BLOCK``, autoload not disabled).
    """

    registered_name = "extremal_perturbation"

    def __init__(self, model: torch.nn.Module, composite: Any = None, attr_output: Any = None,
                 areas: float | Sequence[float] = (0.1,), **kwargs: Any) -> None:
        super().__init__(model, composite=composite, attr_output=attr_output, areas=areas, **kwargs)
        self.areas = areas
