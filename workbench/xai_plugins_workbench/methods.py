"""The explanation methods the workbench compares, each as ``fn(model, inputs, target) -> attributions``.

Inputs are what the model takes (the 6-channel encoding for B-cos models); the result has the inputs' shape.
Methods that only apply to some models say so with ``applies_to`` (a recipe name predicate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

from torch import Tensor, nn

from xai_plugins.evaluation.controls import edge_attribution, input_attribution, random_attribution
from xai_plugins.extremal.spatial import ExtremalResult
from xai_plugins.model_state import explaining
from xai_plugins_workbench.lrp import LrpConfig, captum_lrp, zennit_lrp

Attribute = Callable[[nn.Module, Tensor, Tensor], Tensor]
BN_RECIPES = ("resnet", "densenet", "efficientnet", "resnet_textured", "densenet_textured", "efficientnet_textured")
DENSENET_RECIPES = ("densenet", "densenet_textured")
"""The DenseNets among :data:`BN_RECIPES`: they also take the untangled canonization (Pahde et al.'s second
DenseNet variant, :class:`~xai_plugins.canonizers.DenseNetUntangledCanonizer`)."""


@dataclass(frozen=True)
class Method:
    """A named explanation method; ``applies_to(recipe)`` says which benchmark models it explains, ``control``
    marks a model-free control attribution (:mod:`xai_plugins.evaluation.controls`)."""

    name: str
    label: str
    fn: Attribute
    applies_to: Callable[[str], bool]
    conserving: bool = False
    control: bool = False


def gradient(model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
    """The signed input gradient of the target logit (Captum's ``Saliency`` with ``abs=False``), computed in
    eval mode; the model's mode is restored."""
    from captum.attr import Saliency

    with explaining(model, warn=False):
        return Saliency(model).attribute(inputs.detach().requires_grad_(True), target=target, abs=False).detach()


def input_x_gradient(model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
    """Input times gradient of the target logit (Captum's ``InputXGradient``), computed in eval mode; the
    model's mode is restored."""
    from captum.attr import InputXGradient

    with explaining(model, warn=False):
        return InputXGradient(model).attribute(inputs.detach().requires_grad_(True), target=target).detach()


class ExtremalSettings(TypedDict):
    """Mask scales of :func:`~xai_plugins.extremal.spatial.extremal_perturbation` (keywords of the same name)."""

    step: int
    sigma: float
    max_blur: float


def extremal_settings(height: int, width: int) -> ExtremalSettings:
    """The demo's mask scales for images of ``height x width``: grid step, bump radius and strongest blur
    proportional to the image (the paper's 224-pixel constants would make one bump larger than a digit)."""
    size = min(height, width)
    return ExtremalSettings(step=max(2, size // 16), sigma=size / 8, max_blur=size / 8)


def extremal_result(model: nn.Module, inputs: Tensor, target: Tensor, *, area: float = 0.1,
                    max_iter: int = 150) -> ExtremalResult:
    """The extremal perturbation preservation masks of the given area (Fong et al., ICCV 2019) with the
    demo's scales (:func:`extremal_settings`), and their preserve rewards (the target logit of each image
    with everything outside the mask blurred)."""
    from xai_plugins.extremal.spatial import extremal_perturbation

    return extremal_perturbation(model, inputs, target, areas=(area,), max_iter=max_iter,
                                 **extremal_settings(*inputs.shape[-2:]))


def extremal_mask(model: nn.Module, inputs: Tensor, target: Tensor, *, area: float = 0.1,
                  max_iter: int = 150) -> Tensor:
    """The masks of :func:`extremal_result`, repeated over the input channels."""
    result = extremal_result(model, inputs, target, area=area, max_iter=max_iter)
    return result.masks[:, 0].expand_as(inputs).detach()


def bcos_contributions(model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
    """B-cos contributions ``x * W(x)[target]`` (they sum to the logit minus the logit bias)."""
    from xai_plugins.bcos import contributions

    return contributions(model, inputs, target).contributions.detach()


def _any(recipe: str) -> bool:
    return True


def _bn(recipe: str) -> bool:
    return recipe in BN_RECIPES


def _densenet(recipe: str) -> bool:
    return recipe in DENSENET_RECIPES


def _standard(recipe: str) -> bool:
    return recipe != "bcos"


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("gradient", "Gradient", gradient, _any),
    Method("input_x_gradient", "Input x Gradient", input_x_gradient, _any),
    Method("lrp_zennit_plain", "LRP (Zennit, plain)",
           lambda m, x, t: zennit_lrp(m, x, t, LrpConfig(canonize=False)), _bn, conserving=True),
    Method("lrp_zennit_canonized", "LRP (Zennit, canonized)",
           lambda m, x, t: zennit_lrp(m, x, t, LrpConfig(canonize=True)), _bn, conserving=True),
    Method("lrp_captum_plain", "LRP (Captum, plain)",
           lambda m, x, t: captum_lrp(m, x, t, canonize=False), _bn, conserving=True),
    Method("lrp_captum_canonized", "LRP (Captum, canonized)",
           lambda m, x, t: captum_lrp(m, x, t, canonize=True), _bn, conserving=True),
    Method("lrp_zennit_untangled", "LRP (Zennit, untangled DenseNet)",
           lambda m, x, t: zennit_lrp(m, x, t, LrpConfig(canonize=True, untangled=True)), _densenet,
           conserving=True),
    Method("lrp_captum_untangled", "LRP (Captum, untangled DenseNet)",
           lambda m, x, t: captum_lrp(m, x, t, canonize=True, untangled=True), _densenet, conserving=True),
    Method("extremal", "Extremal perturbation (10%)", extremal_mask, _standard),
    Method("bcos", "B-cos contributions", bcos_contributions, lambda r: r == "bcos", conserving=True),
    Method("control_input", "Control: the input itself", input_attribution, _any, control=True),
    Method("control_edges", "Control: edge detector (Sobel)", edge_attribution, _any, control=True),
    Method("control_random", "Control: random attribution", random_attribution, _any, control=True),
)}
"""The compared methods, then the controls (model-free attributions that a valid benchmark ranks last)."""
