"""The one table of B-cos models: name, builder, summary, and the `bcos` package's name for the same network.

:mod:`xai_plugins.bcos.factory` (``create_model``) and :mod:`xai_plugins.bcos.plugin` (the registry) are both
derived from :data:`MODELS`. The table holds import strings only, so reading it imports nothing but this module
(plugin discovery stays cheap); :func:`register_model` is how an entry is added.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelEntry:
    """One B-cos model.

    Attributes:
        name: the registered name (``create_model(name)``).
        target: import string ``"module:callable"`` of the builder.
        summary: one line for ``xai-plugins list``.
        authors_builder: import string of the authors' ``bcos`` package builder of the same network (whose
            state dicts :mod:`xai_plugins.bcos.authors` maps onto this model), or ``None`` if they have none.
        example_kwargs: builder arguments the conformance suite uses to keep its example small.
        complete: whether the contributions sum to the logit minus the logit bias (the ViTs add a constant
            positional embedding, whose contribution is separate; the plugin then promises no completeness).
    """

    name: str
    target: str
    summary: str
    authors_builder: str | None = None
    example_kwargs: dict[str, object] = field(default_factory=dict)
    complete: bool = True


MODELS: dict[str, ModelEntry] = {}
"""Registered B-cos models by name, in registration order."""


def register_model(name: str, target: str, summary: str, authors_builder: str | None = None,
                   example_kwargs: Mapping[str, object] | None = None, complete: bool = True) -> ModelEntry:
    """Add a model to :data:`MODELS`; a name can be registered once."""
    if name in MODELS:
        raise ValueError(f"B-cos model {name!r} is already registered (builder {MODELS[name].target})")
    entry = ModelEntry(name, target, summary, authors_builder, dict(example_kwargs or {}), complete)
    MODELS[name] = entry
    return entry


_ENCODED = "on 6-channel [x, 1-x] inputs"
_SMALL_VGG = {"classifier_width": 512}
_SMALL_RESNET = {"width": 16}
_SMALL_DENSENET = {"growth": 8, "init_features": 16}

for _depth in (18, 34, 50, 101, 152):
    register_model(f"bcos_resnet{_depth}", f"xai_plugins.bcos.resnet:bcos_resnet{_depth}",
                   f"B-cos ResNet-{_depth} {_ENCODED}", f"bcos.models.resnet:resnet{_depth}",
                   _SMALL_RESNET if _depth > 50 else None)
register_model("bcos_resnext50_32x4d", "xai_plugins.bcos.resnet:bcos_resnext50_32x4d",
               f"B-cos ResNeXt-50 (32x4d) {_ENCODED}", "bcos.models.resnet:resnext50_32x4d", _SMALL_RESNET)
register_model("bcos_wide_resnet50_2", "xai_plugins.bcos.resnet:bcos_wide_resnet50_2",
               f"B-cos Wide ResNet-50-2 {_ENCODED}", "bcos.models.resnet:wide_resnet50_2", _SMALL_RESNET)
for _depth in (11, 13, 16, 19):
    register_model(f"bcos_vgg{_depth}", f"xai_plugins.bcos.vgg:bcos_vgg{_depth}",
                   f"B-cos VGG-{_depth} with uncentered batch norm (BNU) {_ENCODED}",
                   f"bcos.models.vgg:vgg{_depth}_bnu", _SMALL_VGG)
for _depth in (121, 161, 169, 201):
    register_model(f"bcos_densenet{_depth}", f"xai_plugins.bcos.densenet:bcos_densenet{_depth}",
                   f"B-cos DenseNet-{_depth} {_ENCODED}", f"bcos.models.densenet:densenet{_depth}",
                   _SMALL_DENSENET if _depth > 121 else None)
for _size in ("atto", "tiny", "small", "base", "large"):
    register_model(f"bcos_convnext_{_size}", f"xai_plugins.bcos.convnext:bcos_convnext_{_size}",
                   f"B-cos ConvNeXt-{_size.capitalize()} (centered position norm; norm='batch' for BNU) {_ENCODED}",
                   f"bcos.models.convnext:convnext_{_size}", {"widths": (8, 16, 24, 32)})
_SMALL_VIT = {"dim": 32, "depth": 2, "heads": 2, "mlp_dim": 64}
for _size in ("ti", "s", "b", "l"):
    register_model(f"bcos_simple_vit_{_size}_patch16_224", f"xai_plugins.bcos.vit:bcos_simple_vit_{_size}_patch16_224",
                   f"B-cos Simple ViT-{_size.upper()}/16 {_ENCODED}",
                   f"bcos.models.vit:simple_vit_{_size}_patch16_224", _SMALL_VIT, complete=False)
    register_model(f"bcos_vitc_{_size}_patch1_14", f"xai_plugins.bcos.vit:bcos_vitc_{_size}_patch1_14",
                   f"B-cos ViT-C-{_size.upper()} (B-cos convolution stem, 1x1 patches) {_ENCODED}",
                   f"bcos.models.vit:vitc_{_size}_patch1_14", {**_SMALL_VIT, "stem": (8, 16)}, complete=False)
register_model("bcos_simple_cnn", "xai_plugins.bcos.simple_cnn:bcos_simple_cnn",
               "small B-cos CNN for small images (digits, CIFAR-sized) on 6-channel inputs")

MODEL_TYPES: tuple[str, ...] = (
    "xai_plugins.bcos.resnet.BcosResNet",
    "xai_plugins.bcos.vgg.BcosVGG",
    "xai_plugins.bcos.densenet.BcosDenseNet",
    "xai_plugins.bcos.convnext.BcosConvNeXt",
    "xai_plugins.bcos.vit.BcosViT",
    "xai_plugins.bcos.simple_cnn.BcosSimpleCNN",
    "xai_plugins.bcos.convert.Bcosified",
)
"""Classes of the B-cos networks the ``bcos_contributions`` attributor declares (``model_types``)."""
