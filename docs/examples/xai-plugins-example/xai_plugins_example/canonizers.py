"""A canonizer that merges BatchNorm into the convolution before it, inside ``nn.Sequential`` containers."""

from __future__ import annotations

import copy

import torch
from torch import nn


def merged_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution computing ``bn(conv(x))`` of an eval-mode BatchNorm (computed in float64)."""
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(scale)
    merged = copy.deepcopy(conv)
    merged.weight = nn.Parameter((conv.weight.detach().double() * scale.reshape(-1, 1, 1, 1)).to(conv.weight.dtype))
    merged.bias = nn.Parameter(((bias - bn.running_mean.double()) * scale + bn.bias.detach().double())
                               .to(conv.weight.dtype))
    return merged


class SequentialMergeBatchNorm:
    """Merge every ``BatchNorm2d`` that directly follows a ``Conv2d`` in an ``nn.Sequential`` into the conv.

    Works by swapping modules, never by writing into the user's tensors: ``remove()`` puts the original module
    objects back, so the model is bitwise what it was. ``apply`` is atomic: if anything fails, what was
    already swapped is swapped back before the error propagates.
    """

    def __init__(self) -> None:
        self._swapped: list[tuple[nn.Module, str, nn.Module]] = []

    def apply(self, model: nn.Module) -> list[SequentialMergeBatchNorm]:
        """Canonize ``model`` in place; returns ``[self]`` as the handle Zennit's Composite removes."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"apply() needs a torch.nn.Module model, got {type(model).__name__}")
        try:
            for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
                names = list(seq._modules)
                for first, second in zip(names, names[1:]):
                    conv, bn = seq._modules[first], seq._modules[second]
                    if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                        self._swap(seq, first, merged_conv(conv, bn))
                        self._swap(seq, second, nn.Identity())
        except BaseException:
            self.remove()
            raise
        return [self]

    def _swap(self, parent: nn.Module, name: str, module: nn.Module) -> None:
        self._swapped.append((parent, name, parent._modules[name]))
        setattr(parent, name, module)

    def remove(self) -> None:
        """Put the original modules back (a no-op when nothing is applied)."""
        while self._swapped:
            parent, name, module = self._swapped.pop()
            setattr(parent, name, module)

    def copy(self) -> SequentialMergeBatchNorm:
        """A fresh canonizer of the same kind (Zennit copies canonizers per model)."""
        return type(self)()
