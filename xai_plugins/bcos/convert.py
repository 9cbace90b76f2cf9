"""B-cosification: convert standard torchvision CNNs into B-cos networks (Arya et al., NeurIPS 2024).

The conversion is done in two steps, as in the paper:

1. :func:`to_bcos` with ``b = 1`` gives a functionally equivalent B-cos model: the first convolution reads
   the encoding ``[x, 1 - x]`` (with the input normalisation folded into its weights, so zero padding stays
   exact), and every ``Conv2d``/``Linear`` becomes a B-cos layer with its original, non-normalised weights and
   bias. Its outputs equal the original model's outputs up to float rounding.
2. For interpretability, raise ``b`` (the paper uses 2) and drop the biases (``remove_biases=True`` or
   :func:`strip_biases`: conv/linear biases removed, batch norms made uncentered and bias-free, a fixed
   logit bias added), then fine-tune briefly (:func:`xai_plugins.bcos.train.bcosify_finetune`).

Two variants (``variant=``):

- ``"paper"`` (default), as Arya et al. do it: max pooling becomes average pooling; a ResNet's classifier
  becomes a 1×1 B-cos convolution applied before global average pooling; the input ``[x, 1 - x]`` is normalised
  with mean ``(m, 1 - m)`` and std ``(s, s)`` (giving ``[x̃, -x̃]`` with ``x̃ = (x - m) / s``) and the first
  convolution reads it with weights ``[W, -W] / 2``. The normalisation subtracts a constant, so the
  contributions with respect to ``[x, 1 - x]`` are not complete (the paper explains the normalised input).
- ``"folded"`` (ours): poolings and classifier kept, and the normalisation folded exactly into the first
  convolution (``[W (1 - m) / s, -W m / s]``), which subtracts nothing: with ``b = 1`` the model is the original
  one, and after :func:`strip_biases` the contributions are complete with respect to ``[x, 1 - x]``.

The input model is never modified: conversion works on a deep copy.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from xai_plugins.bcos.layers import BcosConv2d, BcosLinear, LogitLayer, check_b
from xai_plugins.bcos.norms import BatchNormUncentered2d

SUPPORTED_ARCHITECTURES: dict[str, str] = {
    "torchvision.models.resnet.ResNet": "ResNet (resnet18/34/50/101/152, ResNeXt, Wide ResNet)",
    "torchvision.models.vgg.VGG": "VGG (vgg11..vgg19, with or without batch norm)",
    "torchvision.models.densenet.DenseNet": "DenseNet (densenet121/161/169/201)",
}
"""Fully qualified class names :func:`to_bcos` accepts, with what they cover."""


VARIANTS = ("paper", "folded")
"""The conversion variants :func:`to_bcos` accepts (see the module doc)."""


class EncodedNormalize(nn.Module):
    """``(x6 - mean6) / std6`` for the encoding ``[x, 1 - x]``: mean ``(m, 1 - m)``, std ``(s, s)`` (the paper's
    input handling). Fixed buffers; no parameters."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", torch.cat([mean, 1 - mean]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.cat([std, std]).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class Bcosified(nn.Module):
    """A converted model followed by a fixed :class:`~xai_plugins.bcos.layers.LogitLayer`."""

    def __init__(self, model: nn.Module, logit_layer: LogitLayer) -> None:
        super().__init__()
        self.model = model
        self.logit_layer = logit_layer

    def forward(self, x: Tensor) -> Tensor:
        return self.logit_layer(self.model(x))


def architecture_of(model: nn.Module) -> str | None:
    """The supported architecture ``model`` is an instance of (by class name, without importing torchvision)."""
    for cls in type(model).__mro__:
        name = f"{cls.__module__}.{cls.__qualname__}"
        if name in SUPPORTED_ARCHITECTURES:
            return name
    return None


def to_bcos(model: nn.Module, b: float = 1.0, *, mean: Sequence[float] | None = None,
            std: Sequence[float] | None = None, remove_biases: bool = False,
            logit_bias: float | None = None, variant: str = "paper") -> nn.Module:
    """Convert a torchvision ResNet, VGG or DenseNet into a B-cos model taking ``encode_input(x)``.

    Args:
        model: the standard model (left unchanged; a converted deep copy is returned).
        b: alignment exponent of every converted layer.
        mean, std: the per-channel input normalisation the original model expects (e.g. ImageNet's). The
            converted model then takes ``encode_input(x)`` of the raw image ``x`` in [0, 1].
        remove_biases: also drop biases and centering (:func:`strip_biases`), as needed before fine-tuning.
        logit_bias: with ``remove_biases``, the fixed logit bias to add (default ``-log(num_classes - 1)``).
        variant: ``"paper"`` (Arya et al.: average pooling, a ResNet's classifier as a 1×1 convolution before
            pooling, the input normalised as ``[x̃, -x̃]`` and read with ``[W, -W] / 2``) or ``"folded"`` (ours:
            the architecture kept and the normalisation folded into the first convolution, so with ``b = 1``
            ``converted(encode_input(x)) == model((x - mean) / std)`` and the contributions of the bias-free
            model are complete). See the module doc.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(map(repr, VARIANTS))}, got {variant!r}")
    arch = architecture_of(model)
    if arch is None:
        supported = "; ".join(SUPPORTED_ARCHITECTURES.values())
        raise TypeError(f"to_bcos cannot convert a {type(model).__module__}.{type(model).__qualname__}; supported "
                        f"architectures are torchvision's {supported}")
    b = check_b(b)
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise TypeError(f"to_bcos found no Conv2d in the {type(model).__qualname__} to read the input encoding")
    scale, shift = _normalisation(first.in_channels, mean, std)
    if variant == "paper" and first.groups != 1:
        raise TypeError("to_bcos needs an ungrouped first convolution to read the [x, 1 - x] encoding")
    converted = copy.deepcopy(model)
    first_name = next(name for name, m in converted.named_modules() if isinstance(m, nn.Conv2d))
    if variant == "paper":
        # [W, -W] / 2 applied to [x̃, -x̃] is W x̃
        encoding = (torch.full_like(scale, 0.5), torch.full_like(shift, -0.5))
    else:
        encoding = (scale, shift)
    for name, module in list(converted.named_modules()):
        if isinstance(module, nn.Conv2d):
            new: nn.Module = _convert_conv(module, b, encoding if name == first_name else None)
        elif isinstance(module, nn.Linear):
            new = _convert_linear(module, b)
        elif isinstance(module, nn.MaxPool2d) and variant == "paper":
            new = nn.AvgPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode)
        else:
            continue
        _set_submodule(converted, name, new)
    if variant == "paper":
        converted = _paper_layout(converted, arch, *(v.to(first.weight.dtype) for v in _mean_std(first, mean, std)))
    if remove_biases:
        return strip_biases(converted, logit_bias=logit_bias)
    return converted


def _mean_std(first: nn.Conv2d, mean: Sequence[float] | None, std: Sequence[float] | None) -> tuple[Tensor, Tensor]:
    channels = first.in_channels
    mean_t = torch.zeros(channels, dtype=torch.float64) if mean is None else torch.as_tensor(mean, dtype=torch.float64)
    std_t = torch.ones(channels, dtype=torch.float64) if std is None else torch.as_tensor(std, dtype=torch.float64)
    return mean_t.to(first.weight.device), std_t.to(first.weight.device)


def _paper_layout(model: nn.Module, arch: str, mean: Tensor, std: Tensor) -> nn.Module:
    """The paper's input normalisation in front; a ResNet's classifier moved before global pooling."""
    if arch == "torchvision.models.resnet.ResNet" and isinstance(model.fc, BcosLinear):
        fc = model.fc
        conv = BcosConv2d(fc.in_features, fc.out_features, 1, b=fc.b, normalize_weights=False,
                          bias=fc.bias is not None, device=fc.weight.device, dtype=fc.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(fc.weight.view(*fc.weight.shape, 1, 1))
            if fc.bias is not None:
                conv.bias.copy_(fc.bias)
        conv.train(fc.training)
        model.avgpool = nn.Sequential(conv, model.avgpool)
        model.fc = nn.Identity()
    return nn.Sequential(EncodedNormalize(mean, std), model)


def _normalisation(channels: int, mean: Sequence[float] | None, std: Sequence[float] | None) -> tuple[Tensor, Tensor]:
    mean_t = torch.zeros(channels, dtype=torch.float64) if mean is None else torch.as_tensor(mean, dtype=torch.float64)
    std_t = torch.ones(channels, dtype=torch.float64) if std is None else torch.as_tensor(std, dtype=torch.float64)
    if mean_t.shape != (channels,) or std_t.shape != (channels,):
        raise ValueError(f"mean and std need one value per input channel ({channels}), got {mean!r} and {std!r}")
    if (std_t <= 0).any():
        raise ValueError(f"std must be positive, got {std!r}")
    # (x - m) / s = a x + c (1 - x) with a = (1 - m) / s and c = -m / s; zero-padded [x, 1 - x] maps to 0.
    return (1 - mean_t) / std_t, -mean_t / std_t


def _convert_conv(conv: nn.Conv2d, b: float, encoding: tuple[Tensor, Tensor] | None) -> BcosConv2d:
    in_channels = conv.in_channels * (2 if encoding is not None else 1)
    if encoding is not None and conv.groups != 1:
        raise TypeError("to_bcos needs an ungrouped first convolution to read the [x, 1 - x] encoding")
    new = BcosConv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                     conv.groups, conv.padding_mode, b=b, normalize_weights=False, bias=conv.bias is not None,
                     device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        weight = conv.weight
        if encoding is not None:
            a, c = (v.to(weight.dtype).to(weight.device).view(1, -1, 1, 1) for v in encoding)
            weight = torch.cat([weight * a, weight * c], 1)
        new.weight.copy_(weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    new.weight.requires_grad_(conv.weight.requires_grad)
    if conv.bias is not None:
        new.bias.requires_grad_(conv.bias.requires_grad)
    new.train(conv.training)
    return new


def _convert_linear(linear: nn.Linear, b: float) -> BcosLinear:
    new = BcosLinear(linear.in_features, linear.out_features, b=b, normalize_weights=False,
                     bias=linear.bias is not None, device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(linear.weight)
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    new.weight.requires_grad_(linear.weight.requires_grad)
    if linear.bias is not None:
        new.bias.requires_grad_(linear.bias.requires_grad)
    new.train(linear.training)
    return new


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


def strip_biases(model: nn.Module, logit_bias: float | None = None) -> nn.Module:
    """Make a converted model dynamic linear, in place: no conv/linear biases, uncentered bias-free batch norms.

    This changes the function (the step B-cosification fine-tunes away) and makes the contributions complete.
    Returns the model wrapped in :class:`Bcosified` with a fixed logit bias (default ``-log(C - 1)`` for C
    outputs), as B-cos models are trained with one.
    """
    num_classes = None
    for name, module in list(model.named_modules()):
        if isinstance(module, (BcosConv2d, BcosLinear)) and module.bias is not None:
            module.bias = None
        if isinstance(module, BcosLinear):
            num_classes = module.out_features
        elif isinstance(module, BcosConv2d):
            num_classes = module.out_channels
        if isinstance(module, nn.BatchNorm2d):
            norm = BatchNormUncentered2d(module.num_features, module.eps, module.momentum or 0.1,
                                         affine=module.weight is not None)
            like = module.running_var if module.running_var is not None else module.weight
            if like is not None:  # the original's dtype and device, before copying (float64 stays exact)
                norm.to(device=like.device, dtype=like.dtype)
            with torch.no_grad():
                if module.running_var is not None:
                    norm.running_var.copy_(module.running_var)
                if module.weight is not None:
                    norm.weight.copy_(module.weight)
                    norm.weight.requires_grad_(module.weight.requires_grad)
            norm.train(module.training)
            _set_submodule(model, name, norm)
    return Bcosified(model, LogitLayer.for_classes(num_classes or 2, 1.0, logit_bias))


def set_b(model: nn.Module, b: float) -> nn.Module:
    """Set the alignment exponent of every B-cos layer of ``model`` (in place), e.g. to raise it towards 2."""
    b = check_b(b)
    for module in model.modules():
        if isinstance(module, (BcosConv2d, BcosLinear)):
            module.b = b
    return model
