"""B-cos explanations in Zennit: a composite that puts B-cos layers in explanation mode.

With :class:`BcosExplanation` registered, the plain gradient of a B-cos model is its dynamic linear weight
W(x), so Zennit's ``Gradient`` attributor yields W(x)[target] and ``input * W(x)`` the contributions::

    with Gradient(model, BcosExplanation()) as attributor:
        output, weights = attributor(encode_input(images), torch.eye(num_classes)[target])

The input must be what the model reads (``encode_input(images)`` for the 6-channel models): Zennit returns the
gradient with respect to the tensor it is given, and the gradient with respect to 3-channel images of a model
that encodes them inside would be ``W_x - W_(1-x)``, whose product with the images is not the contributions.
A 3-channel input therefore stops with the layer's error that says to call ``encode_input``.
"""

from __future__ import annotations

from torch import nn
from zennit.core import Composite

from xai_plugins.bcos.explain import require_bcos_model
from xai_plugins.bcos.mode import ExplanationModeSwitch


class BcosExplanation(Composite):
    """Composite for B-cos models: no gradient rules, only explanation mode (detached dynamic scalings).

    Optional ``canonizers`` are applied first, as in any Zennit composite. Registering it on a model without
    B-cos layers raises ``TypeError`` before anything is changed. Removing the composite restores every module
    exactly as it was.
    """

    def __init__(self, canonizers: list | None = None) -> None:
        super().__init__(module_map=None, canonizers=canonizers)

    def register(self, module: nn.Module) -> None:
        require_bcos_model(module, "BcosExplanation")
        super().register(module)
        self.handles.append(ExplanationModeSwitch(module))
