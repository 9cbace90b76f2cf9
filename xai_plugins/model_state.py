"""Run a user's model for an explanation and give it back exactly as it was.

Inside :func:`explaining` the model is in eval mode (a model in training mode gets a warning) and, unless
``freeze=False``, its parameters do not require gradients, so no parameter gradient is ever computed. On exit,
also after an exception, ``training`` of every module and ``requires_grad`` of every parameter are restored.
This is the one place in the core that switches and restores a model's modes; every family uses it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch

__all__ = ["explaining"]


@contextlib.contextmanager
def explaining(model: torch.nn.Module, method: str = "the explanation", *, freeze: bool = True,
               warn: bool = True) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode (and, with ``freeze``, its parameters out of autograd) for the block.

    ``method`` names the caller in the training-mode warning; ``warn=False`` silences it (for callers that
    switch modes for an internal computation the user did not ask to be explained). Anything that is not a
    module is yielded unchanged.
    """
    if not isinstance(model, torch.nn.Module):
        yield model
        return
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()] if freeze else []
    if warn and model.training:
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
