"""Finding the spatial convolutions of a model: kernels larger than 1 (1×1, 1 and 1×1×1 are not spatial)."""

from __future__ import annotations

import math

from torch import nn

__all__ = ["NoSpatialConvError", "is_spatial_conv", "spatial_convs"]


class NoSpatialConvError(ValueError):
    """The model has no spatial convolution, so there is nothing to fix, explain or prune."""


def is_spatial_conv(module: nn.Module) -> bool:
    """True for Conv1d/2d/3d (any groups, depthwise included) whose kernel has more than one element."""
    return isinstance(module, nn.modules.conv._ConvNd) and not module.transposed \
        and math.prod(module.kernel_size) > 1


def spatial_convs(model: nn.Module, *, required: bool = True) -> list[tuple[str, nn.modules.conv._ConvNd]]:
    """``(qualified name, module)`` of every spatial convolution in ``model``, in module order.

    A module reused at several places is listed once. With ``required`` a model without any spatial
    convolution raises :class:`NoSpatialConvError`.
    """
    found = [(name, m) for name, m in model.named_modules() if is_spatial_conv(m)]
    if required and not found:
        raise NoSpatialConvError(
            f"{type(model).__name__} has no spatial convolution (Conv1d/Conv2d/Conv3d with a kernel larger "
            "than 1x1); ExplainFix fixes, explains and prunes spatial filters only, so pass a convolutional "
            "model such as a torchvision ResNet")
    return found
