"""Build B-cos models by name and load or save their weights (nothing is ever downloaded)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from xai_plugins.bcos.zoo import MODELS

MODEL_BUILDERS: dict[str, str] = {name: entry.target for name, entry in MODELS.items()}
"""Model name → import string of its builder (derived from :data:`xai_plugins.bcos.zoo.MODELS`)."""


def builder(name: str) -> Callable[..., nn.Module]:
    """The builder function of a B-cos model name."""
    try:
        module_name, _, attr = MODEL_BUILDERS[name].partition(":")
    except KeyError:
        raise ValueError(f"unknown B-cos model {name!r}; available: {', '.join(MODEL_BUILDERS)}") from None
    return getattr(importlib.import_module(module_name), attr)


def create_model(name: str, weights: str | os.PathLike | None = None, **kwargs: object) -> nn.Module:
    """Build a B-cos model by name (timm style), e.g. ``create_model("bcos_resnet18", num_classes=10)``.

    ``weights`` is an optional local file (``.safetensors`` or a ``torch.save`` state dict, ours or a checkpoint
    of the authors' ``bcos`` package) loaded strictly.
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


def read_state_dict(path: str | os.PathLike) -> dict:
    """The state dict in a local file: safetensors for ``.safetensors``, else ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}; B-cos models never download weights, pass a local file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise TypeError(f"{path} holds a {type(state).__name__}, not a state dict; save model.state_dict()")
    return state


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load a state dict from a local file into ``model`` (strictly by default).

    Files written by :func:`save_weights` and checkpoints of the authors' ``bcos`` package (their key layout,
    ``<layer>.linear.weight``, is recognised and mapped by :mod:`xai_plugins.bcos.authors`) both load.
    """
    from xai_plugins.bcos import authors

    state = read_state_dict(path)
    if authors.is_authors_layout(state):
        state = authors.from_authors_state_dict(state)
    return authors.load_state(model, authors.unwrap(state), strict, source=str(path))
