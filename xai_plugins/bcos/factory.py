"""Build B-cos models by name and load or save their weights (nothing is ever downloaded)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

MODEL_BUILDERS: dict[str, str] = {
    "bcos_resnet18": "xai_plugins.bcos.resnet:bcos_resnet18",
    "bcos_resnet34": "xai_plugins.bcos.resnet:bcos_resnet34",
    "bcos_resnet50": "xai_plugins.bcos.resnet:bcos_resnet50",
    "bcos_vgg11": "xai_plugins.bcos.vgg:bcos_vgg11",
    "bcos_densenet121": "xai_plugins.bcos.densenet:bcos_densenet121",
    "bcos_simple_cnn": "xai_plugins.bcos.simple_cnn:bcos_simple_cnn",
}
"""Model name → import string of its builder."""


def builder(name: str) -> Callable[..., nn.Module]:
    """The builder function of a B-cos model name."""
    try:
        module_name, _, attr = MODEL_BUILDERS[name].partition(":")
    except KeyError:
        raise ValueError(f"unknown B-cos model {name!r}; available: {', '.join(MODEL_BUILDERS)}") from None
    return getattr(importlib.import_module(module_name), attr)


def create_model(name: str, weights: str | os.PathLike | None = None, **kwargs: object) -> nn.Module:
    """Build a B-cos model by name (timm style), e.g. ``create_model("bcos_resnet18", num_classes=10)``.

    ``weights`` is an optional local file (``.safetensors`` or a ``torch.save`` state dict) loaded strictly.
    Keyword arguments go to the builder (``num_classes``, ``b``, ``max_out``, ``norm``, ``small_inputs``, ...).
    """
    model = builder(name)(**kwargs)
    if weights is not None:
        load_weights(model, weights)
    return model


def save_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Save the state dict: safetensors for a ``.safetensors`` path, ``torch.save`` otherwise."""
    path = Path(path)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load a state dict saved by :func:`save_weights` (``torch.load(weights_only=True)`` or safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}; B-cos models never download weights, pass a local file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=strict)
    return model
