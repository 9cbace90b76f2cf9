"""``--model SOURCE:NAME`` of the core's commands (``canonize``, ``explainfix``): a torchvision or timm model with
random weights. The workbench's ``explain`` accepts these forms and more (registry, checkpoint, a user's builder,
a TorchScript file)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MODEL_FORMS", "build_model"]

MODEL_FORMS = "torchvision:NAME (a torchvision.models builder) or timm:NAME"
"""The help text naming the accepted forms."""


def build_model(spec: str, num_classes: int = 10) -> nn.Module:
    """The model named ``torchvision:NAME`` or ``timm:NAME``, built with random weights (nothing is downloaded),
    in eval mode. A bare ``NAME`` (the form of earlier releases) is read as ``torchvision:NAME``, with a
    deprecation line on stderr. Unknown sources or names are a
    :class:`~xai_plugins.cli.UsageError` that lists where to find the valid ones."""
    from xai_plugins.cli import UsageError

    source, sep, name = spec.partition(":")
    if not sep:
        print(f"xai-plugins: warning: --model {spec} is deprecated; use --model torchvision:{spec}", file=sys.stderr)
        source, name = "torchvision", spec
    if source == "torchvision":
        import torchvision

        names = torchvision.models.list_models(module=torchvision.models)
        if name not in names:
            raise UsageError(f"unknown torchvision model {name!r}; classification models: {', '.join(names)}")
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes).eval()
    if source == "timm":
        try:
            import timm
        except ImportError:
            raise UsageError("timm is not installed; pip install timm") from None
        if name not in timm.list_models():
            raise UsageError(f"unknown timm model {name!r}; see timm.list_models()")
        return timm.create_model(name, pretrained=False, num_classes=num_classes).eval()
    raise UsageError(f"--model must be {MODEL_FORMS}, got {spec!r}")
