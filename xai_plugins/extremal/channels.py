"""Channel extremal perturbations (Fong, Patrick and Vedaldi, ICCV 2019, Sec. 4.4): per instance, a mask over
the channels of one layer that keeps a given fraction of them and maximises the reward.

The mask ``m`` in [0, 1]^K scales the layer's channels (``preserve`` keeps ``m * a``, ``delete`` keeps
``(1 - m) * a``, ``dual`` rewards the difference); the area constraint is the same ranking penalty as for input
masks, over the K channels. The mask enters through a forward hook that is removed on exit, also on error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from xai_plugins.extremal.checks import check_areas, check_outputs, check_targets, check_variant
from xai_plugins.extremal.optimiser import MaskAdam, Schedule, area_penalty, area_reference
from xai_plugins.extremal.progress import progress_bar
from xai_plugins.extremal.rewards import Reward, resolve_reward
from xai_plugins.extremal.spatial import _forward_with_rows, _seeded, _variant_reward
from xai_plugins.model_state import explaining


@dataclass
class ChannelExtremalResult:
    """Channel masks and diagnostics of :func:`channel_extremal_perturbation`.

    Attributes:
        masks: (N, A, K) channel masks in [0, 1], one per input and area.
        rewards: (N, A) reward of each final mask.
        areas_achieved: (N, A) mean of each final mask (fraction of channels kept).
        iterations: (N,) iterations each sample ran.
        areas: the requested areas.
        converged: (N,) whether the sample stopped early.
        layer_shape: shape of the layer output on the unperturbed batch, (N, K, ...).
    """

    masks: torch.Tensor
    rewards: torch.Tensor
    areas_achieved: torch.Tensor
    iterations: torch.Tensor
    areas: tuple[float, ...]
    converged: torch.Tensor
    layer_shape: tuple[int, ...] = ()


def last_conv(model: torch.nn.Module) -> torch.nn.Module:
    """The last ``nn.Conv2d`` of ``model`` in registration order, the default layer to explain."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)] if isinstance(model, torch.nn.Module) else []
    if not convs:
        raise ValueError("channel extremal perturbation needs a layer: the model has no nn.Conv2d to use by "
                         "default; pass layer=model.<submodule>")
    return convs[-1]


class _ChannelMask:
    """Forward hook state: multiplies the layer output by the current per-row channel mask."""

    def __init__(self) -> None:
        self.mask: torch.Tensor | None = None
        self.calls = 0
        self.shape: tuple[int, ...] | None = None

    def __call__(self, module: torch.nn.Module, args: Any, output: Any) -> Any:
        self.calls += 1
        if not isinstance(output, torch.Tensor) or output.dim() < 2:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ValueError(f"channel extremal perturbation needs a layer whose output has a channel dimension, "
                             f"shape (N, K, ...); {type(module).__name__} returned {shape}. Pick a convolution or "
                             "a block of the network as the layer")
        self.shape = tuple(output.shape)
        if self.mask is None:
            return output
        if self.mask.shape[0] != output.shape[0] or self.mask.shape[1] != output.shape[1]:
            raise ValueError(f"the layer output has shape {tuple(output.shape)} but the channel mask is "
                             f"{tuple(self.mask.shape)}; the layer must be called once per forward pass")
        return output * self.mask.reshape(*self.mask.shape, *([1] * (output.dim() - 2)))


@contextlib.contextmanager
def _hooked(layer: torch.nn.Module, state: _ChannelMask) -> Iterator[_ChannelMask]:
    handle = layer.register_forward_hook(state)
    try:
        yield state
    finally:
        handle.remove()


def channel_extremal_perturbation(
    model: Callable[..., torch.Tensor],
    inputs: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor,
    layer: torch.nn.Module | None = None,
    *,
    areas: float | Sequence[float] = (0.1,),
    variant: str = "preserve",
    reward: str | Reward = "simple",
    init: float = 0.5,
    max_iter: int = 80,
    learning_rate: float = 0.08,
    final_learning_rate: float = 0.005,
    regul_weight: float = 1.0,
    final_regul_weight: float = 3e4,
    tol: float = 2e-3,
    patience: int = 10,
    min_iter: int = 0,
    area_tol: float = 0.01,
    additional_forward_args: Sequence[Any] | Any = None,
    seed: int | None = None,
    progress: bool = False,
) -> ChannelExtremalResult:
    """Per-instance channel masks of ``layer`` for a batch of inputs, one optimisation for all inputs and areas.

    ``inputs`` is any tensor with the batch first; ``layer`` a submodule of ``model`` whose output is
    (N, K, ...) (default: the last ``nn.Conv2d``). The other arguments are those of
    :func:`xai_plugins.extremal.extremal_perturbation`; areas are fractions of the K channels. Two defaults
    differ from the input masks: the channel parameters start at 0.5 (a channel mask at 1 cannot grow, so the
    reward could not order the channels) and the area weight starts at 1 (each parameter is one entry of the
    ranking, so a large start weight would fix the order of the channels before the reward is seen).
    """
    areas = check_areas(areas)
    variant = check_variant(variant)
    reward_fn = resolve_reward(reward)
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 1 or inputs.shape[0] == 0:
        raise ValueError("channel_extremal_perturbation expects inputs as a tensor with the batch first, "
                         f"shape (N, ...); got {getattr(inputs, 'shape', type(inputs).__name__)}")
    if layer is None:
        layer = last_conv(model)
    if not isinstance(layer, torch.nn.Module):
        raise TypeError(f"layer must be a torch.nn.Module inside the model; got {type(layer).__name__}")
    batch = inputs.shape[0]
    targets = check_targets(target, batch, inputs.device)
    schedule = Schedule(max_iter=max_iter, learning_rate=learning_rate, final_learning_rate=final_learning_rate,
                        regul_weight=regul_weight, final_regul_weight=final_regul_weight, tol=tol,
                        patience=patience, min_iter=min_iter, area_tol=area_tol)
    forward = _forward_with_rows(model, additional_forward_args, batch)
    num_areas = len(areas)
    sample_of_row = torch.arange(batch, device=inputs.device).repeat_interleave(num_areas)
    inputs = inputs.detach()
    state = _ChannelMask()

    def run(rows: torch.Tensor, masks: torch.Tensor, flip: bool = False) -> torch.Tensor:
        samples = sample_of_row[rows]
        x = inputs[samples]
        if variant == "preserve":
            state.mask = masks
        elif variant == "delete":
            state.mask = 1 - masks
        else:
            x = torch.cat((x, x))
            samples = torch.cat((samples, samples))
            state.mask = torch.cat((masks, 1 - masks))
        return forward(x, samples)

    with explaining(model, "channel extremal perturbation"), _hooked(layer, state), _seeded(seed, inputs.device), \
            torch.enable_grad():
        with torch.no_grad():
            outputs = forward(inputs, torch.arange(batch, device=inputs.device))
        if state.calls == 0 or state.shape is None:
            raise ValueError(f"the layer {type(layer).__name__} was not called during the forward pass; pass a "
                             "submodule of the model that computes the output")
        check_outputs(outputs, targets)
        layer_shape = state.shape
        channels = layer_shape[1]
        for area in areas:
            if round(area * channels) < 1:
                raise ValueError(f"area {area} keeps no channel of a layer with {channels} channels; use an area "
                                 f"of at least {0.5 / channels:.3g}")
        reference = area_reference(areas, channels, channels, inputs.device, inputs.dtype).repeat(batch, 1)
        area_of_row = torch.tensor(areas, device=inputs.device, dtype=inputs.dtype).repeat(batch)
        params = torch.full((batch * num_areas, channels), float(init), device=inputs.device, dtype=inputs.dtype)
        optimiser = MaskAdam(params, batch, schedule)
        last = params.clone()
        with progress_bar(schedule.max_iter, progress, "channel extremal perturbation") as bar:
            while not optimiser.done:
                rows = optimiser.active_rows()
                masks = params[rows].requires_grad_(True)
                gains = _variant_reward(reward_fn, run(rows, masks), targets[sample_of_row[rows]], variant)
                if not torch.isfinite(gains).all():
                    raise FloatingPointError(
                        f"channel extremal perturbation: the reward became non-finite at iteration {optimiser.t}; "
                        "the model produces NaN or inf when channels are masked")
                energy = gains - schedule.regul_at(optimiser.t) * area_penalty(masks, reference[rows])
                (grad,) = torch.autograd.grad(energy.sum(), masks)
                masks = masks.detach()
                settled = None
                if optimiser.t:
                    change = (masks - last[rows]).abs().amax(dim=1)
                    settled = (change < tol) & ((masks.mean(dim=1) - area_of_row[rows]).abs() < area_tol)
                last[rows] = masks
                optimiser.step(rows, grad, settled)
                bar.update(1)
                bar.set_postfix(active=int(optimiser.active.sum()))
        with torch.no_grad():
            all_rows = torch.arange(batch * num_areas, device=inputs.device)
            rewards = _variant_reward(reward_fn, run(all_rows, params), targets[sample_of_row], variant)

    return ChannelExtremalResult(
        masks=params.reshape(batch, num_areas, channels).clone(),
        rewards=rewards.reshape(batch, num_areas),
        areas_achieved=params.mean(dim=1).reshape(batch, num_areas),
        iterations=optimiser.iterations.clone(),
        areas=areas,
        converged=~optimiser.active,
        layer_shape=layer_shape,
    )
