"""The BatchNorm randomiser of the test suite, and the check that a drawn network is alive.

A canonizer's promises (same function, conserved relevance, bitwise restore) must hold for any BatchNorm state,
not the initial one (mean 0, variance 1, γ = 1, β = 0, where merging is almost the identity). :func:`statistics`
is a hypothesis strategy for BatchNorm states; :func:`apply` writes one draw into every BatchNorm of a model:

- ``mode="uniform"``: every BatchNorm gets statistics drawn independently of the data: running variances over
  orders of magnitude (``10**U(log_var)``), means of both signs, γ of both signs with a share of near-zero
  entries, β of both signs. Deep networks (EfficientNet, MobileNet) usually die under such draws: their output
  no longer depends on the input, see :func:`liveness`.
- ``mode="calibrated"``: the statistics are those of the data as it reaches each BatchNorm (in eval mode, with
  every earlier BatchNorm already set), perturbed: variance × U(0.5, 2), mean + N(0, shift·std), β ~ N(0, 0.1),
  γ as drawn. The network stays alive at any depth, as a trained one is.

:func:`liveness` measures how much the output depends on the input; judge conservation only where it is alive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from hypothesis import strategies as st
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["BatchNormDraw", "apply", "batchnorms", "is_alive", "liveness", "statistics"]

ALIVE = 1e-3
"""Smallest relative output change between two inputs for a network to count as alive. A dead network changes
its output by float32 rounding only (about 1e-7 relative); a live one by far more than 1e-3."""


@dataclass(frozen=True)
class BatchNormDraw:
    """One BatchNorm state for a whole model; the per-channel values come from a generator seeded with ``seed``.

    ``log_var``: running variances are ``10**U(log_var)`` (uniform mode) or the measured variance × U(0.5, 2)
    (calibrated mode). ``mean_scale``: |running mean| scale, sign random (uniform mode; in calibrated mode the
    measured mean plus N(0, mean_scale·std)). ``gamma``: γ ~ U(gamma) (both signs when the interval straddles
    zero), and a share ``near_zero`` of channels set to ±1e-6·U(0, 1). ``beta_scale``: β ~ N(0, beta_scale).
    """

    mode: str = "calibrated"
    seed: int = 0
    log_var: tuple[float, float] = (-0.3, 0.3)
    mean_scale: float = 0.1
    gamma: tuple[float, float] = (0.5, 1.5)
    near_zero: float = 0.0
    beta_scale: float = 0.1


def batchnorms(model: nn.Module) -> list[_BatchNorm]:
    """Every BatchNorm of ``model`` (1d, 2d, 3d and subclasses), in module order."""
    return [module for module in model.modules() if isinstance(module, _BatchNorm)]


@st.composite
def statistics(draw: st.DrawFn, modes: tuple[str, ...] = ("calibrated", "uniform")) -> BatchNormDraw:
    """Hypothesis strategy: BatchNorm states over orders of magnitude of variance, both signs of mean, γ and β."""
    mode = draw(st.sampled_from(modes))
    low = draw(st.floats(-3.0, 2.0) if mode == "uniform" else st.just(math.log10(0.5)))
    high = low + draw(st.floats(0.0, 1.0)) if mode == "uniform" else math.log10(2.0)
    gamma_low = draw(st.sampled_from((-1.5, -0.5, 0.5)))
    gamma_high = draw(st.sampled_from((0.5, 1.5))) if gamma_low < 0 else 1.5
    return BatchNormDraw(
        mode=mode,
        seed=draw(st.integers(0, 2**16)),
        log_var=(low, high),
        mean_scale=draw(st.sampled_from((0.0, 0.1, 0.5, 2.0) if mode == "uniform" else (0.0, 0.05, 0.1, 0.3))),
        gamma=(gamma_low, gamma_high),
        near_zero=draw(st.sampled_from((0.0, 0.1, 0.3))),
        beta_scale=draw(st.sampled_from((0.0, 0.1, 0.3))),
    )


def _affine(bn: _BatchNorm, spec: BatchNormDraw, g: torch.Generator) -> None:
    n = bn.num_features
    low, high = spec.gamma
    gamma = torch.rand(n, generator=g) * (high - low) + low
    if spec.near_zero:
        near = torch.rand(n, generator=g) < spec.near_zero
        tiny = 1e-6 * torch.rand(n, generator=g) * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        gamma = torch.where(near, tiny, gamma)
    beta = torch.randn(n, generator=g) * spec.beta_scale
    if bn.affine:
        bn.weight.data.copy_(gamma.to(bn.weight.dtype))
        bn.bias.data.copy_(beta.to(bn.bias.dtype))


def _uniform(bn: _BatchNorm, spec: BatchNormDraw, g: torch.Generator) -> None:
    n = bn.num_features
    low, high = spec.log_var
    bn.running_var.copy_(10 ** (torch.rand(n, generator=g, dtype=torch.float64) * (high - low) + low))
    bn.running_mean.copy_(torch.randn(n, generator=g) * spec.mean_scale)
    _affine(bn, spec, g)


def _channel_moments(input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dims = [d for d in range(input.dim()) if d != 1]
    return input.mean(dims), input.var(dims, unbiased=False)


def apply(model: nn.Module, spec: BatchNormDraw, input_shape: tuple[int, ...] | None = None,
          input: torch.Tensor | None = None) -> nn.Module:
    """Write the state ``spec`` into every BatchNorm of ``model`` and put it in eval mode; returns ``model``.

    The calibrated mode runs the model once (eval mode, no gradient) on ``input`` or on a standard-normal batch
    of ``input_shape``: a forward pre-hook sets each BatchNorm from the data that reaches it, after every earlier
    BatchNorm was set, so the statistics fit the network as it will be evaluated.
    """
    g = torch.Generator().manual_seed(spec.seed)
    norms = batchnorms(model)
    model.eval()
    if spec.mode == "uniform":
        with torch.no_grad():
            for bn in norms:
                _uniform(bn, spec, g)
        return model
    if spec.mode != "calibrated":
        raise ValueError(f"unknown BatchNorm draw mode {spec.mode!r}; use 'uniform' or 'calibrated'")
    if input is None:
        if input_shape is None:
            raise ValueError("the calibrated mode needs input= or input_shape= to measure the statistics on")
        input = torch.randn(input_shape, generator=g)
    done: set[int] = set()

    def calibrate(bn: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if id(bn) in done:
            return
        done.add(id(bn))
        mean, var = _channel_moments(args[0].double())
        n = bn.num_features
        low, high = spec.log_var
        factor = 10 ** (torch.rand(n, generator=g, dtype=torch.float64) * (high - low) + low)
        bn.running_var.copy_((var * factor).clamp(min=1e-12))
        bn.running_mean.copy_(mean + torch.randn(n, generator=g, dtype=torch.float64) * spec.mean_scale * var.sqrt())
        _affine(bn, spec, g)

    handles = [bn.register_forward_pre_hook(calibrate) for bn in norms]
    try:
        with torch.no_grad():
            model(input.to(next(model.parameters()).dtype))
    finally:
        for handle in handles:
            handle.remove()
    return model


def liveness(model: nn.Module, input: torch.Tensor, generator: torch.Generator | None = None) -> float:
    """How much the output depends on the input: max|y(x) − y(x')| / max|y(x)| for an independent input x'.

    About 1e-7 (float32 rounding) for a dead network whose output is its biases' constant; order 1 for a live one.
    """
    other = torch.randn(input.shape, generator=generator, dtype=input.dtype) * input.std()
    with torch.no_grad():
        y, y_other = model(input), model(other)
    scale = y.abs().max()
    if not bool(torch.isfinite(y).all()) or scale == 0:
        return 0.0
    return float((y - y_other).abs().max() / scale)


def is_alive(model: nn.Module, input: torch.Tensor) -> bool:
    """Whether the output of ``model`` depends on its input beyond rounding (see :data:`ALIVE`)."""
    return liveness(model, input, torch.Generator().manual_seed(1)) > ALIVE
