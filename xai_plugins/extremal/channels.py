"""Channel extremal perturbations (Fong, Patrick and Vedaldi, ICCV 2019, Sec. 4.4): per instance, a mask over
the channels of one layer that keeps a given fraction of them and maximises the reward.

The mask ``m`` in [0, 1]^K scales the layer's channels (``preserve`` keeps ``m * a``, ``delete`` keeps
``(1 - m) * a``, ``dual`` rewards the difference). The parameters are the mask itself; the loop, the area
constraint (the ranking penalty over the K channels), the reward convention (divided by the reward span, here
the reward with every channel kept minus with none) and the stopping rule are those of the input masks
(:mod:`xai_plugins.extremal.optimiser`). The mask enters through a forward hook that is removed on exit, also on
error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from xai_plugins.extremal.calls import RowForward, forward_with_rows, seeded
from xai_plugins.extremal.checks import check_areas, check_outputs, check_targets, check_variant
from xai_plugins.extremal.optimiser import (
    VALUES_PER_PASS,
    Masks,
    Objective,
    Schedule,
    area_reference,
    check_values_per_pass,
    final_rewards,
    optimise,
    reward_scale_of_rows,
)
from xai_plugins.extremal.rewards import Reward, resolve_reward
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
        layer_shape: shape of the masked layer output (or input) on the unperturbed batch, (N, K, ...).
    """

    masks: torch.Tensor
    rewards: torch.Tensor
    areas_achieved: torch.Tensor
    iterations: torch.Tensor
    areas: tuple[float, ...]
    converged: torch.Tensor
    layer_shape: tuple[int, ...] = ()


def last_conv(model: Callable[..., Any]) -> torch.nn.Module:
    """The last ``nn.Conv2d`` of ``model`` in registration order, the default layer to explain."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)] if isinstance(model, torch.nn.Module) else []
    if not convs:
        raise ValueError("channel extremal perturbation needs a layer: the model has no nn.Conv2d to use by "
                         "default; pass layer=model.<submodule>")
    return convs[-1]


class _ChannelMask:
    """Hook state: multiplies the layer's output (or, with ``on_input``, its first input) by the current per-row
    channel mask."""

    def __init__(self, on_input: bool = False) -> None:
        self.on_input = on_input
        self.mask: torch.Tensor | None = None
        self.calls = 0
        self.shape: tuple[int, ...] | None = None

    def masked(self, module: torch.nn.Module, value: Any) -> Any:
        self.calls += 1
        where, verb = ("input", "received") if self.on_input else ("output", "returned")
        if not isinstance(value, torch.Tensor) or value.dim() < 2:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"channel extremal perturbation needs a layer whose {where} has a channel dimension, "
                             f"shape (N, K, ...); {type(module).__name__} {verb} {shape}. Pick a "
                             "convolution or a block of the network as the layer")
        self.shape = tuple(value.shape)
        if self.mask is None:
            return value
        if self.mask.shape[0] != value.shape[0] or self.mask.shape[1] != value.shape[1]:
            raise ValueError(f"the layer {where} has shape {tuple(value.shape)} but the channel mask is "
                             f"{tuple(self.mask.shape)}; the layer must be called once per forward pass")
        return value * self.mask.reshape(*self.mask.shape, *([1] * (value.dim() - 2)))

    def output_hook(self, module: torch.nn.Module, args: Any, output: Any) -> Any:
        return self.masked(module, output)

    def input_hook(self, module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        if not args:
            raise ValueError(f"channel extremal perturbation of a layer input needs a layer called with a "
                             f"positional input; {type(module).__name__} got none")
        return (self.masked(module, args[0]), *args[1:])


@contextlib.contextmanager
def _hooked(layer: torch.nn.Module, state: _ChannelMask) -> Iterator[_ChannelMask]:
    if state.on_input:
        handle = layer.register_forward_pre_hook(state.input_hook)
    else:
        handle = layer.register_forward_hook(state.output_hook)
    try:
        yield state
    finally:
        handle.remove()


class ChannelMasks:
    """The channel parameterisation: the parameters (B, K) are the masks, applied by a hook on the layer."""

    def __init__(self, inputs: torch.Tensor, forward: RowForward, state: _ChannelMask,
                 values_per_pass: int | None = VALUES_PER_PASS) -> None:
        self.inputs = inputs
        self.forward = forward
        self.state = state
        self.channels = 0
        self.row_size = inputs[0].numel()
        self.values_per_pass = values_per_pass

    def masks(self, params: torch.Tensor) -> Masks:
        return Masks(model=params, penalised=params, area=params.mean(dim=1))

    def outputs(self, samples: torch.Tensor, masks: torch.Tensor, t: int | None) -> torch.Tensor:
        self.state.mask = masks
        try:
            return self.forward(self.inputs[samples], samples)
        finally:
            self.state.mask = None

    def everything(self, rows: int, value: float) -> torch.Tensor:
        return torch.full((rows, self.channels), value, device=self.inputs.device, dtype=self.inputs.dtype)

    def probe(self, targets: torch.Tensor, layer: torch.nn.Module) -> tuple[int, ...]:
        """Run the unperturbed batch once: check the outputs and return the layer's output shape."""
        with torch.no_grad():
            outputs = self.forward(self.inputs, torch.arange(self.inputs.shape[0], device=self.inputs.device))
        if self.state.calls == 0 or self.state.shape is None:
            raise ValueError(f"the layer {type(layer).__name__} was not called during the forward pass; pass a "
                             "submodule of the model that computes the output")
        check_outputs(outputs, targets)
        self.channels = self.state.shape[1]
        return self.state.shape


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
    regul_weight: float = 0.05,
    final_regul_weight: float = 1500.0,
    reward_scale: float | None = None,
    tol: float = 2e-3,
    patience: int = 10,
    min_iter: int = 0,
    area_tol: float = 0.01,
    layer_input: bool = False,
    additional_forward_args: Sequence[Any] | Any = None,
    values_per_pass: int | None = VALUES_PER_PASS,
    seed: int | None = None,
    progress: bool = False,
) -> ChannelExtremalResult:
    """Per-instance channel masks of ``layer`` for a batch of inputs, one optimisation for all inputs and areas.

    ``inputs`` is any tensor with the batch first; ``layer`` a submodule of ``model`` whose output is
    (N, K, ...) (default: the last ``nn.Conv2d``); with ``layer_input`` the mask scales the layer's first
    input instead of its output (Captum's ``attribute_to_layer_input``). The other arguments are those of
    :func:`xai_plugins.extremal.extremal_perturbation` (the same loop, reward span, units of the area weights
    and ``values_per_pass``); areas are fractions of the K channels. Two defaults differ from the input masks:
    the parameters start at 0.5 (a channel mask at 1 cannot grow, so the reward could not order the channels)
    and the area weight starts at 0.05 (each parameter is one entry of the ranking, so a large start weight
    would fix the order of the channels before the reward is seen).
    """
    areas = check_areas(areas)
    variant = check_variant(variant)
    reward_fn = resolve_reward(reward)
    values_per_pass = check_values_per_pass(values_per_pass)
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
    state = _ChannelMask(on_input=layer_input)
    problem = ChannelMasks(inputs.detach(), forward_with_rows(model, additional_forward_args, batch), state,
                           values_per_pass)
    with explaining(model, "channel extremal perturbation"), _hooked(layer, state), seeded(seed, inputs.device):
        layer_shape = problem.probe(targets, layer)
        _check_channel_areas(areas, problem.channels)
        objective = _objective(problem, reward_fn, variant, targets, areas, reward_scale)
        params = torch.full((len(objective.sample_of_row), problem.channels), float(init), device=inputs.device,
                            dtype=inputs.dtype)
        optimiser = optimise(problem, objective, schedule, params, progress)
        rewards = final_rewards(problem, objective, params)
    num_areas = len(areas)
    return ChannelExtremalResult(
        masks=params.reshape(batch, num_areas, problem.channels).clone(),
        rewards=rewards.reshape(batch, num_areas),
        areas_achieved=params.mean(dim=1).reshape(batch, num_areas),
        iterations=optimiser.iterations,
        areas=areas,
        converged=optimiser.converged,
        layer_shape=layer_shape,
    )


def _check_channel_areas(areas: tuple[float, ...], channels: int) -> None:
    for area in areas:
        if round(area * channels) < 1:
            raise ValueError(f"area {area} keeps no channel of a layer with {channels} channels; use an area "
                             f"of at least {0.5 / channels:.3g}")


def _objective(problem: ChannelMasks, reward_fn: Reward, variant: str, targets: torch.Tensor,
               areas: tuple[float, ...], reward_scale: float | None) -> Objective:
    """Rows are (sample, area) pairs, sample-major; areas are fractions of the K channels."""
    device, dtype = targets.device, problem.inputs.dtype
    batch = targets.shape[0]
    sample_of_row = torch.arange(batch, device=device).repeat_interleave(len(areas))
    reference = area_reference(areas, problem.channels, problem.channels, device, dtype)
    return Objective(reward_fn=reward_fn, variant=variant, targets=targets, sample_of_row=sample_of_row,
                     area_of_row=torch.tensor(areas, device=device, dtype=dtype).repeat(batch),
                     reference=reference.repeat(batch, 1),
                     scale=reward_scale_of_rows(problem, reward_fn, targets, sample_of_row, reward_scale),
                     name="channel extremal perturbation")
