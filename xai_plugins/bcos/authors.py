"""Weights of the authors' ``bcos`` package (B-cos v2, github.com/B-cos/B-cos-v2) for the models here.

The authors' CNNs and ours are the same networks with the same module names, except that each of their B-cos
layers keeps its weight in a child module (``conv1.linear.weight`` where ours is ``conv1.weight``) and their
uncentered batch norms (``BatchNormUncentered2d``, a subclass of ``nn.BatchNorm2d``) carry a ``running_mean``
buffer that they never read or update. :func:`from_authors_state_dict` maps their layout onto ours; it refuses
checkpoints whose norms are centered with a running mean or have a bias, since those are other networks (a
bias the contributions cannot explain) and loading them into ours would give silently wrong outputs.

Which of our models have an authors' counterpart is in :data:`xai_plugins.bcos.zoo.MODELS`
(``authors_builder``). Nothing is downloaded: pass a local file, e.g. one of their released ``.pth`` files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor, nn

_LINEAR = ".linear.weight"
_LIGHTNING_PREFIX = "model."


def is_authors_layout(state: Mapping[str, object]) -> bool:
    """Whether a state dict is in the authors' key layout (B-cos weights under ``<layer>.linear.weight``)."""
    return any(key.endswith(_LINEAR) or key == _LINEAR[1:] for key in unwrap(state))


def unwrap(state: Mapping[str, object]) -> Mapping[str, object]:
    """The state dict inside a training checkpoint: ``checkpoint["state_dict"]`` (PyTorch Lightning, as the
    authors' trainer saves it) without its ``model.`` prefix, or the mapping itself."""
    inner = state.get("state_dict") if "state_dict" in state else state
    if not isinstance(inner, Mapping):
        raise TypeError(f"expected a state dict (a mapping of names to tensors), got {type(inner).__name__}")
    if inner and all(isinstance(k, str) and k.startswith(_LIGHTNING_PREFIX) for k in inner):
        return {k[len(_LIGHTNING_PREFIX):]: v for k, v in inner.items()}
    return inner


def from_authors_state_dict(state: Mapping[str, object]) -> dict[str, Tensor]:
    """Map a state dict of the authors' ``bcos`` package onto the key layout of the models here.

    ``<layer>.linear.weight`` becomes ``<layer>.weight``; the unused ``running_mean`` of their uncentered batch
    norms is dropped after checking that it is zero (it is never updated in their code). Raises ``ValueError``
    for a non-zero ``running_mean`` (a centered batch norm) or a norm ``bias`` (a network with biases), naming
    the key.
    """
    converted: dict[str, Tensor] = {}
    for key, value in unwrap(state).items():
        if not torch.is_tensor(value):
            raise TypeError(f"entry {key!r} of the state dict is a {type(value).__name__}, not a tensor")
        if key.endswith(_LINEAR) or key == _LINEAR[1:]:
            converted[key[: -len(_LINEAR)] + ".weight" if key != _LINEAR[1:] else "weight"] = value
        elif key.endswith("running_mean"):
            if value.count_nonzero():
                raise ValueError(
                    f"{key} is non-zero: this checkpoint's batch norms are centered with a running mean (a bias "
                    "the contributions cannot explain); the B-cos models here use the authors' uncentered batch "
                    "norm (BNU), which never updates running_mean — load a BNU checkpoint")
        elif key.endswith(".bias"):
            raise ValueError(
                f"{key}: this checkpoint has a bias, which the B-cos models here do not (a bias breaks "
                "Σ contributions = logit - logit bias); only the authors' bias-free (NoBias) models can be loaded")
        else:
            converted[key] = value
    return converted


def load_authors_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load a checkpoint of the authors' ``bcos`` package from a local file into ``model`` (strictly).

    The file is read with ``torch.load(weights_only=True)`` (or safetensors); see :func:`from_authors_state_dict`
    for the mapping. Returns ``model``.
    """
    from xai_plugins.bcos.factory import read_state_dict

    return load_state(model, from_authors_state_dict(read_state_dict(path)), strict, source=str(path))


def load_state(model: nn.Module, state: Mapping[str, object], strict: bool, source: str) -> nn.Module:
    """``model.load_state_dict(state)``, checked first so that a state dict that does not fit leaves the model
    untouched, with an error that names the file, the first differences and the likely fix."""
    own = model.state_dict()
    problems = [f"{k}: {type(v).__name__} in the file, not a tensor" for k, v in state.items()
                if not torch.is_tensor(v)]
    problems += [f"{k}: shape {tuple(v.shape)} in the file, {tuple(own[k].shape)} in the model"
                 for k, v in state.items() if torch.is_tensor(v) and k in own and tuple(v.shape) != tuple(own[k].shape)]
    if strict:
        missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
        if missing:
            problems.append(f"missing in the file: {_first(missing)}")
        if unexpected:
            problems.append(f"not in the model: {_first(unexpected)}")
    if problems:
        raise RuntimeError(
            f"the weights in {source} do not fit this {type(model).__name__} (model left unchanged): "
            f"{'; '.join(problems[:4])}. Build the model with the architecture and options the weights were "
            "trained with (num_classes=, width=, norm=, small_inputs=, ...)")
    model.load_state_dict(state, strict=strict)
    return model


def _first(keys: list[str], count: int = 5) -> str:
    return ", ".join(keys[:count]) + (" ..." if len(keys) > count else "")
