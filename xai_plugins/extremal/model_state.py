"""Run a user's model for an explanation and give it back exactly as it was.

Inside :func:`explaining` the model is in eval mode (a model in training mode gets a warning) and its
parameters do not require gradients, so no parameter gradient is ever computed; on exit, also after an
exception, ``training`` of every module and ``requires_grad`` of every parameter are restored.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def explaining(model: torch.nn.Module, method: str = "extremal perturbation") -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode with frozen parameters for the duration of the block, then restore it."""
    if not isinstance(model, torch.nn.Module):
        yield model
        return
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    if model.training:
        warnings.warn(f"{method}: the model is in training mode; it is explained in eval mode (dropout off, "
                      "batch-norm running statistics) and put back in training mode afterwards. Call "
                      "model.eval() first to silence this warning.", UserWarning, stacklevel=4)
    try:
        model.eval()
        for param, _ in flags:
            param.requires_grad_(False)
        yield model
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)
        for module, mode in modes:
            module.training = mode
