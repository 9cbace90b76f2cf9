"""Validation of user input shared by the extremal perturbation variants; each error names the fix."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

VARIANTS = ("preserve", "delete", "dual")


def check_areas(areas: float | Sequence[float]) -> tuple[float, ...]:
    """A non-empty tuple of areas, each strictly between 0 and 1."""
    if isinstance(areas, torch.Tensor):
        areas = areas.flatten().tolist()
    if isinstance(areas, (int, float)):
        areas = (areas,)
    areas = tuple(float(a) for a in areas)
    if not areas:
        raise ValueError("areas is empty; pass at least one area fraction in (0, 1), e.g. areas=(0.1,)")
    for area in areas:
        if not (0.0 < area < 1.0) or math.isnan(area):
            raise ValueError(f"area {area!r} is outside (0, 1); areas are fractions of the image (or of the "
                             "channels) kept by the mask, e.g. areas=(0.05, 0.1, 0.2)")
    return areas


def check_variant(variant: str) -> str:
    """One of :data:`VARIANTS`."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}; got {variant!r}")
    return variant


def check_images(inputs: Any, name: str = "extremal_perturbation") -> torch.Tensor:
    """A floating-point (N, C, H, W) tensor."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"{name} expects inputs as a torch.Tensor of shape (N, C, H, W); got {type(inputs).__name__}")
    if inputs.dim() != 4:
        raise ValueError(f"{name} expects a batch of images of shape (N, C, H, W); got inputs of shape "
                         f"{tuple(inputs.shape)}. Add the batch dimension with inputs.unsqueeze(0) for a single "
                         "image, or use channel_extremal_perturbation to explain a layer of a model whose "
                         "inputs are not images")
    if not inputs.is_floating_point():
        raise TypeError(f"{name} expects floating-point inputs; got dtype {inputs.dtype}. Convert with "
                        "inputs.float()")
    if inputs.shape[0] == 0:
        raise ValueError(f"{name} got an empty batch (N = 0)")
    return inputs


def check_targets(target: Any, batch: int, device: torch.device) -> torch.Tensor:
    """Per-sample integer targets of shape (N,) from an int, a list or a tensor."""
    if target is None:
        raise ValueError("target is None; pass the output channel to explain as an int, a list of N ints or a "
                         "tensor of shape (N,)")
    if isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.is_complex():
            raise TypeError(f"target must hold integers; got a tensor of dtype {target.dtype}")
        targets = target.to(device=device, dtype=torch.long).flatten()
    elif isinstance(target, bool):
        raise TypeError("target must be an int, a list of ints or an integer tensor; got a bool")
    elif isinstance(target, int):
        targets = torch.tensor([target], dtype=torch.long, device=device)
    elif isinstance(target, (list, tuple)):
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in target):
            raise TypeError(f"target as a list must hold one int per sample; got {list(target)!r}")
        targets = torch.tensor(list(target), dtype=torch.long, device=device)
    else:
        raise TypeError(f"target must be an int, a list of ints or an integer tensor; got {type(target).__name__}")
    if targets.numel() == 1:
        targets = targets.expand(batch).clone()
    if targets.numel() != batch:
        raise ValueError(f"got {targets.numel()} targets for a batch of {batch} inputs; pass one target per "
                         "sample or a single int for all")
    return targets


def check_outputs(outputs: Any, targets: torch.Tensor) -> None:
    """Outputs must be a finite (N, C, ...) tensor and every target a valid channel of it."""
    if not isinstance(outputs, torch.Tensor) or outputs.dim() < 2:
        shape = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs).__name__
        raise ValueError(f"the model must return a tensor of shape (N, num_classes) or (N, C, ...); got {shape}")
    channels = outputs.shape[1]
    bad = targets[(targets < 0) | (targets >= channels)]
    if bad.numel():
        raise ValueError(f"target {bad[0].item()} is out of range for a model output with {channels} "
                         f"channels; targets must be in [0, {channels - 1}]")
    if not torch.isfinite(outputs).all():
        raise ValueError("the model output on the unperturbed inputs is not finite (NaN or inf); check the "
                         "inputs and the model (e.g. normalisation, weights) before explaining it")
