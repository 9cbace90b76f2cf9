"""B-cos contributions as a native Captum attribution.

:class:`BcosAttribution` is Input × Gradient computed in explanation mode, where the input gradient of a B-cos
network is its dynamic linear weight W(x): the attributions are the contributions ``x ⊙ W(x)[target]``.
Captum's own ``InputXGradient`` inside ``xai_plugins.bcos.explanation_mode(model)`` gives the same numbers.
"""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import GradientAttribution
from torch import Tensor, nn

from xai_plugins.bcos.encoding import encode_input
from xai_plugins.bcos.explain import fold_encoded, needs_encoding, require_bcos_model
from xai_plugins.bcos.mode import explanation_mode
from xai_plugins_captum._compat import (
    TargetType,
    TensorOrTupleOfTensorsGeneric,
    _format_output,
    _format_tensor_into_tuples,
    _is_tuple,
    apply_gradient_requirements,
    undo_gradient_requirements,
)


class BcosAttribution(GradientAttribution):
    """Contribution maps of a B-cos model: ``inputs × W(inputs)`` for the target logit.

    Args:
        model: a B-cos network (``xai_plugins.bcos.create_model`` or ``to_bcos``); a model without B-cos layers
            raises ``TypeError`` here, since its input × gradient carries none of the B-cos guarantees.

    The inputs are encoded images (``xai_plugins.bcos.encode_input``) or the images themselves in [0, 1]: when
    the model reads the 6-channel encoding and gets 3 channels, they are encoded here and the contributions of
    ``x`` and ``1 - x`` are added per channel, so the attributions are shaped like the inputs and keep their
    sum. Completeness: for each sample the attributions sum to the target logit minus the logit bias;
    ``return_convergence_delta=True`` returns that difference, computed the Captum way as
    ``Σ attributions - (F(inputs) - F(0))`` on what the model reads (a B-cos model maps a zero input to its
    logit bias).

    Example::

        attr, delta = BcosAttribution(model).attribute(images, target=3, return_convergence_delta=True)
    """

    def __init__(self, model: nn.Module) -> None:
        require_bcos_model(model, "BcosAttribution")
        super().__init__(model)
        self.model = model

    def attribute(self, inputs: TensorOrTupleOfTensorsGeneric, target: TargetType = None,
                  additional_forward_args: Any = None,
                  return_convergence_delta: bool = False) -> TensorOrTupleOfTensorsGeneric | tuple[Any, Tensor]:
        """Contributions shaped like ``inputs``; with ``return_convergence_delta`` also the per-sample delta."""
        is_tuple = _is_tuple(inputs)
        given = _format_tensor_into_tuples(inputs)
        encoded = len(given) == 1 and needs_encoding(self.model, given[0])
        inputs_tuple = (encode_input(given[0].detach()),) if encoded else given
        gradient_mask = apply_gradient_requirements(inputs_tuple, warn=False)
        try:
            with explanation_mode(self.model):
                gradients = self.gradient_func(self.forward_func, inputs_tuple, target, additional_forward_args)
        finally:
            undo_gradient_requirements(inputs_tuple, gradient_mask)
        attributions = tuple(x.detach() * g for x, g in zip(inputs_tuple, gradients))
        shown = (fold_encoded(attributions[0]),) if encoded else attributions
        formatted = _format_output(is_tuple, shown)
        if not return_convergence_delta:
            return formatted
        start = tuple(torch.zeros_like(x) for x in inputs_tuple)
        delta = self.compute_convergence_delta(attributions, start, inputs_tuple, target, additional_forward_args)
        return formatted, delta

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return True
