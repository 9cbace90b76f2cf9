"""Build any registered model by name, as timm's ``create_model`` does, over built-ins and plugins alike.

Weights only ever come from a local file: ``.safetensors`` (read with safetensors) or a ``torch.save`` state
dict read with ``torch.load(weights_only=True)``, which refuses pickled code. Nothing is downloaded.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xai_plugins.errors import ComponentContractError, XaiPluginsError
from xai_plugins.registry import get_registry

__all__ = ["WeightsError", "create_model", "list_models", "load_state_dict"]

MAX_KEYS_SHOWN = 3


class WeightsError(XaiPluginsError, ValueError):
    """A weights file is missing, unreadable, or does not fit the model."""


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered model builders matching the shell-style ``pattern`` (``"bcos_*"``), sorted."""
    return sorted(c.name for c in get_registry().components("model") if fnmatch.fnmatchcase(c.name, pattern))


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a local ``.safetensors`` file or a ``torch.save`` state dict (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no weights file at {path}; weights are never downloaded, pass a local file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except ImportError:
        raise WeightsError(f"{path} is a safetensors file; install safetensors (pip install safetensors)") from None
    except Exception as exc:  # noqa: BLE001 - torch and safetensors raise many types for a malformed file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise WeightsError(f"cannot read weights from {path}: {type(exc).__name__}: {first}; pass a "
                           ".safetensors file or a state dict saved with torch.save") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return dict(state)


def _shown(keys: list[str]) -> str:
    more = f" and {len(keys) - MAX_KEYS_SHOWN} more" if len(keys) > MAX_KEYS_SHOWN else ""
    return ", ".join(keys[:MAX_KEYS_SHOWN]) + more


def create_model(name: str, weights: str | os.PathLike | None = None, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with ``kwargs`` and, if given, load ``weights`` strictly.

    An unknown name lists the registered models; a builder that returns no ``nn.Module`` is a
    ``ComponentContractError`` naming the model and its plugin; weights that do not fit are one
    ``WeightsError`` line with the missing and unexpected keys.
    """
    component = get_registry().component("model", name)
    model = component.load()(**kwargs)
    if not isinstance(model, nn.Module):
        raise ComponentContractError(f"model {name!r} of plugin {component.plugin!r} returned "
                                     f"{type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        state = load_state_dict(weights)
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
        if missing or unexpected or wrong:
            parts = [f"{label} {len(keys)} ({_shown(keys)})" for label, keys in
                     (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
            raise WeightsError(f"{weights} does not fit model {name!r} with {kwargs or 'default arguments'}: "
                               f"{'; '.join(parts)}; were they saved from this model with these arguments?")
        model.load_state_dict(state, strict=True)
    return model
