"""Comparing two canonizations of one model: explicit modules and their places, called modules and their state,
function, and relevance in Zennit and Captum.

Used by ``tests/canonizers/test_family_presets.py`` (the family presets and the graph canonizer agree) and by
``benchmarks/compare_family_presets.py`` (the measured table of ``docs/canonizers.md``).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from xai_plugins.canonizers import modules as explicit

__all__ = ["Canonical", "PLACED", "architecture_problems", "canonical", "captum_relevance", "relative",
           "zennit_relevance"]

PLACED = (explicit.ExplicitModule, explicit.PositionalBiasConv2d, nn.ReLU, nn.Flatten, nn.AdaptiveAvgPool2d)
"""Module types whose places are compared: the explicit modules and the torch modules of functional calls."""


@dataclass
class Canonical:
    """What one canonizer made of one model (taken while applied; the model is restored afterwards)."""

    layout: collections.Counter
    """``(parent path, type name)`` → count, for the modules of :data:`PLACED` types."""
    calls: dict[tuple[str, str], collections.Counter]
    """``(path of an original module or "<new>", type name)`` → the states (parameters and buffers as bytes)
    it was called with in one forward, counted."""
    output: torch.Tensor
    merged: bool
    """Every BatchNorm is an exact identity while canonized."""
    problems: list[str] = field(default_factory=list)
    """Where the canonical model misses the architecture's canonical form (:func:`architecture_problems`)."""


def _state(module: nn.Module) -> tuple:
    return tuple((str(tensor.dtype), tuple(tensor.shape), tensor.detach().contiguous().numpy().tobytes())
                 for tensor in [*module.parameters(False), *module.buffers(False)])


def canonical(model: nn.Module, canonizer, x: torch.Tensor) -> Canonical:
    """Apply ``canonizer`` to ``model``, record its canonical form on input ``x``, remove it."""
    original = {id(module) for module in model.modules()}
    canonizer.apply(model)
    try:
        names = {id(module): name for name, module in model.named_modules()}
        layout = collections.Counter((names[id(m)].rpartition(".")[0], type(m).__name__) for m in model.modules()
                                     if isinstance(m, PLACED))
        calls: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)

        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            where = names[id(module)] if id(module) in original else "<new>"
            calls[(where, type(module).__name__)][_state(module)] += 1

        handles = [module.register_forward_hook(record) for module in model.modules() if not module._modules]
        try:
            with torch.no_grad():
                output = model(x)
        finally:
            for handle in handles:
                handle.remove()
        merged = True
        for bn in (module for module in model.modules() if isinstance(module, _BatchNorm)):
            probe = torch.randn(2, bn.num_features, 3, 3, dtype=x.dtype)
            merged = merged and torch.equal(bn(probe), probe)
        problems = architecture_problems(model)
    finally:
        canonizer.remove()
    return Canonical(layout, dict(calls), output, merged, problems)


def architecture_problems(model: nn.Module) -> list[str]:
    """Where a canonized torchvision model misses its architecture's canonical form (empty: it has it): one
    ``Sum`` inside every residual block, one signal-takes-all ``Gate`` inside every squeeze-and-excitation module,
    one ``Concat`` inside every dense layer, one ``ThresholdReLU`` per BatchNorm that comes first (DenseNet's
    ``norm1`` of every layer, ``norm`` of every transition, ``norm5``), no module called twice (checked by the
    caller through :attr:`Canonical.calls`)."""
    problems = []
    kinds = {name: type(module).__name__ for name, module in model.named_modules()}

    def count(name: str, kind: type) -> int:
        return sum(isinstance(child, kind) for child in model.get_submodule(name).children())

    def one_each(block_types: tuple[str, ...], kind: type, condition=lambda module: True) -> None:
        for name, module in model.named_modules():
            if kinds[name] in block_types and condition(module) and count(name, kind) != 1:
                problems.append(f"{name} ({kinds[name]}) holds {count(name, kind)} {kind.__name__}")

    one_each(("BasicBlock", "Bottleneck", "ResBottleneckBlock"), explicit.Sum)
    one_each(("MBConv", "FusedMBConv", "InvertedResidual"), explicit.Sum, lambda module: module.use_res_connect)
    one_each(("SqueezeExcitation",), explicit.Gate)
    one_each(("_DenseLayer",), explicit.Concat)
    if not all(gate.signal_takes_all for gate in model.modules() if isinstance(gate, explicit.Gate)):
        problems.append("a Gate does not send all relevance to the signal")
    first = sum(kind in ("_DenseLayer", "_Transition") for kind in kinds.values()) + ("features.norm5" in kinds)
    thresholds = sum(isinstance(module, explicit.ThresholdReLU) for module in model.modules())
    if thresholds != first:
        problems.append(f"{thresholds} ThresholdReLU for {first} BatchNorms that come first")
    return problems


def zennit_relevance(model: nn.Module, canonizer, x: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Relevance of Zennit's ``EpsilonPlusFlat(zero_params='bias')`` with ``canonizer`` through the adapter."""
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    from xai_plugins_zennit.canonizers import for_zennit

    composite = EpsilonPlusFlat(zero_params="bias", canonizers=[for_zennit(canonizer)])
    with Gradient(model, composite) as attributor:
        return attributor(x, start)[1]


def captum_relevance(model: nn.Module, canonizer, x: torch.Tensor, target: int) -> torch.Tensor:
    """Relevance of Captum's ``LRP`` inside ``canonized(model, canonizers=[canonizer])``."""
    from captum.attr import LRP

    from xai_plugins_captum import canonized

    with canonized(model, canonizers=[canonizer]):
        return LRP(model).attribute(x, target=target).detach()


def relative(reference: torch.Tensor, other: torch.Tensor) -> float:
    """``max|other - reference| / max|reference|`` in float64 (the absolute difference if the scale is 0)."""
    reference, other = reference.double(), other.double()
    scale = float(reference.abs().max())
    difference = float((other - reference).abs().max())
    return difference / scale if scale > 0 else difference
