"""B-cos explanations in Zennit: a composite that puts B-cos layers in explanation mode.

With :class:`BcosExplanation` registered, the plain gradient of a B-cos model is its dynamic linear weight
W(x), so Zennit's ``Gradient`` attributor yields W(x)[target] and ``input * W(x)`` the contributions::

    with Gradient(model, BcosExplanation()) as attributor:
        output, weights = attributor(x6, torch.eye(num_classes)[target])
"""

from __future__ import annotations

from torch import nn
from zennit.core import Composite

from xai_plugins.bcos.mode import ExplanationModeSwitch


class BcosExplanation(Composite):
    """Composite for B-cos models: no gradient rules, only explanation mode (detached dynamic scalings).

    Optional ``canonizers`` are applied first, as in any Zennit composite. Removing the composite restores
    every module exactly as it was.
    """

    def __init__(self, canonizers: list | None = None) -> None:
        super().__init__(module_map=None, canonizers=canonizers)

    def register(self, module: nn.Module) -> None:
        super().register(module)
        self.handles.append(ExplanationModeSwitch(module))
