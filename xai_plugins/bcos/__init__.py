"""B-cos networks (Böhle, Fritz and Schiele, CVPR 2022; B-cos v2, TPAMI 2024) and B-cosification of
standard CNNs (Arya et al., NeurIPS 2024), in pure PyTorch.

Quick start::

    from xai_plugins import bcos
    model = bcos.create_model("bcos_resnet18", num_classes=10).eval()
    x6 = bcos.encode_input(images)                 # [x, 1 - x]: 3 -> 6 channels
    result = bcos.contributions(model, x6, target)  # contributions, dynamic_weights, logits, ...

Names are imported lazily so that plugin discovery stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xai_plugins._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "BcosConv2d": "xai_plugins.bcos.layers",
    "BcosLinear": "xai_plugins.bcos.layers",
    "LogitLayer": "xai_plugins.bcos.layers",
    "patch_norms": "xai_plugins.bcos.layers",
    "BatchNormUncentered2d": "xai_plugins.bcos.norms",
    "GroupNormUncentered2d": "xai_plugins.bcos.norms",
    "LayerNormUncentered2d": "xai_plugins.bcos.norms",
    "PositionNormUncentered2d": "xai_plugins.bcos.norms",
    "PositionNorm2d": "xai_plugins.bcos.norms",
    "GroupNorm2d": "xai_plugins.bcos.norms",
    "LayerNorm2d": "xai_plugins.bcos.norms",
    "TokenLayerNorm": "xai_plugins.bcos.norms",
    "encode_input": "xai_plugins.bcos.encoding",
    "decode_input": "xai_plugins.bcos.encoding",
    "explanation_mode": "xai_plugins.bcos.mode",
    "Contributions": "xai_plugins.bcos.explain",
    "contributions": "xai_plugins.bcos.explain",
    "bcos_contributions": "xai_plugins.bcos.explain",
    "logit_bias": "xai_plugins.bcos.explain",
    "create_model": "xai_plugins.bcos.factory",
    "load_weights": "xai_plugins.bcos.factory",
    "save_weights": "xai_plugins.bcos.factory",
    "MODEL_BUILDERS": "xai_plugins.bcos.factory",
    "MODELS": "xai_plugins.bcos.zoo",
    "register_model": "xai_plugins.bcos.zoo",
    "from_authors_state_dict": "xai_plugins.bcos.authors",
    "load_authors_weights": "xai_plugins.bcos.authors",
    "to_bcos": "xai_plugins.bcos.convert",
    "strip_biases": "xai_plugins.bcos.convert",
    "set_b": "xai_plugins.bcos.convert",
    "Bcosified": "xai_plugins.bcos.convert",
    "SUPPORTED_ARCHITECTURES": "xai_plugins.bcos.convert",
}
_SUBMODULES = ("visualize", "train")

if TYPE_CHECKING:  # the lazy exports, visible to type checkers and editors
    from xai_plugins.bcos.authors import from_authors_state_dict, load_authors_weights  # noqa: F401
    from xai_plugins.bcos.convert import SUPPORTED_ARCHITECTURES, Bcosified, set_b, strip_biases, to_bcos  # noqa: F401
    from xai_plugins.bcos.encoding import decode_input, encode_input  # noqa: F401
    from xai_plugins.bcos.explain import Contributions, bcos_contributions, contributions, logit_bias  # noqa: F401
    from xai_plugins.bcos.factory import MODEL_BUILDERS, create_model, load_weights, save_weights  # noqa: F401
    from xai_plugins.bcos.layers import BcosConv2d, BcosLinear, LogitLayer, patch_norms  # noqa: F401
    from xai_plugins.bcos.mode import explanation_mode  # noqa: F401
    from xai_plugins.bcos.norms import (  # noqa: F401
        BatchNormUncentered2d,
        GroupNorm2d,
        GroupNormUncentered2d,
        LayerNorm2d,
        LayerNormUncentered2d,
        PositionNorm2d,
        PositionNormUncentered2d,
        TokenLayerNorm,
    )
    from xai_plugins.bcos.zoo import MODELS, register_model  # noqa: F401

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
