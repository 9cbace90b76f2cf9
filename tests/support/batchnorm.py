"""The BatchNorm randomiser of the test suite (the only one: every test and benchmark draws BatchNorm states
here), and the check that a drawn network is alive.

A canonizer's promises (same function, conserved relevance, bitwise restore) must hold for any BatchNorm state,
not the initial one (mean 0, variance 1, γ = 1, β = 0, where merging is almost the identity). :func:`statistics`
is a hypothesis strategy for BatchNorm states; :func:`apply` writes one draw into every BatchNorm of a model
(``nn.BatchNorm1d/2d/3d``, their subclasses, and torchvision's ``FrozenBatchNorm2d``):

- ``mode="uniform"``: every BatchNorm gets statistics drawn independently of the data: running variances over
  orders of magnitude (``10**U(log_var)``), means of both signs, γ of both signs with a share of near-zero
  entries, β of both signs. Deep networks (EfficientNet, MobileNet) usually die under such draws: their output
  no longer depends on the input, see :func:`liveness`.
- ``mode="calibrated"``: the statistics are those of the data as it reaches each BatchNorm (in eval mode, with
  every earlier BatchNorm already set), perturbed: variance × 10**U(log_var), mean + N(0, mean_scale·std)
  (or only the noise, ``center=False``, which leaves the activations off-centre; the variance is then the
  second moment about zero, so each channel leaves with a spread of order γ), γ and β as drawn. The network
  stays alive at any depth, as a trained one is.

:func:`randomize_batchnorm`, :func:`calibrate_batchnorm` and :func:`draw_batchnorm` name the draws the tests use
most. :func:`liveness` measures how much the output depends on the input; judge conservation only where it is
alive, and (:func:`rounding_sensitivity`) in a dtype whose rounding the network does not amplify to the
tolerance. (The conformance suite's own reference models use ``xai_plugins.conformance.examples.randomize_batchnorm``,
which ships with the package because plugin authors run the suite without these tests.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from hypothesis import strategies as st
from torch import nn

__all__ = ["BatchNormDraw", "apply", "batchnorms", "calibrate_batchnorm", "draw_batchnorm", "is_alive", "liveness",
           "randomize_batchnorm", "rounding_sensitivity", "statistics"]

LOG_HALF, LOG_TWO = math.log10(0.5), math.log10(2.0)
"""Variance factors from 0.5 to 2: statistics near, but not at, those of the data."""

ALIVE = 1e-3
"""Smallest relative output change between two inputs for a network to count as alive. A dead network changes
its output by float32 rounding only (about 1e-7 relative); a live one by far more than 1e-3."""


@dataclass(frozen=True)
class BatchNormDraw:
    """One BatchNorm state for a whole model; the per-channel values come from a generator seeded with ``seed``.

    ``log_var``: running variances are ``10**U(log_var)`` (uniform mode) or the measured variance times that
    (calibrated mode). ``mean_scale``: running means are N(0, mean_scale) (uniform mode) or the measured mean
    (``center=True``, else 0) plus N(0, mean_scale·measured std) (calibrated mode). ``gamma``: γ ~ U(gamma)
    (both signs when the interval straddles zero), or N(0, gamma_std) when ``gamma_std`` is given; a share
    ``near_zero`` of channels set to ±1e-6·U(0, 1), and with ``zero_gamma`` channel 0 of every BatchNorm of more
    than one channel set to exactly 0. ``beta_scale``: β ~ N(0, beta_scale).
    """

    mode: str = "calibrated"
    seed: int = 0
    log_var: tuple[float, float] = (-0.3, 0.3)
    mean_scale: float = 0.1
    center: bool = True
    gamma: tuple[float, float] = (0.5, 1.5)
    gamma_std: float | None = None
    near_zero: float = 0.0
    zero_gamma: bool = False
    beta_scale: float = 0.1


def batchnorms(model: nn.Module) -> list[nn.Module]:
    """Every BatchNorm of ``model`` (1d, 2d, 3d, subclasses, ``FrozenBatchNorm2d``: modules with running
    statistics), in module order."""
    return [module for module in model.modules()
            if isinstance(getattr(module, "running_var", None), torch.Tensor)
            and isinstance(getattr(module, "running_mean", None), torch.Tensor)]


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


def _affine(bn: nn.Module, spec: BatchNormDraw, g: torch.Generator) -> None:
    n = bn.running_var.numel()
    if spec.gamma_std is not None:
        gamma = torch.randn(n, generator=g) * spec.gamma_std
    else:
        low, high = spec.gamma
        gamma = torch.rand(n, generator=g) * (high - low) + low
    if spec.near_zero:
        near = torch.rand(n, generator=g) < spec.near_zero
        tiny = 1e-6 * torch.rand(n, generator=g) * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        gamma = torch.where(near, tiny, gamma)
    if spec.zero_gamma and n > 1:
        gamma[0] = 0.0
    beta = torch.randn(n, generator=g) * spec.beta_scale
    weight, bias = getattr(bn, "weight", None), getattr(bn, "bias", None)
    if isinstance(weight, torch.Tensor) and isinstance(bias, torch.Tensor):
        weight.data.copy_(gamma.to(weight.dtype))
        bias.data.copy_(beta.to(bias.dtype))


def _uniform(bn: nn.Module, spec: BatchNormDraw, g: torch.Generator) -> None:
    n = bn.running_var.numel()
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
        n = bn.running_var.numel()
        low, high = spec.log_var
        factor = 10 ** (torch.rand(n, generator=g, dtype=torch.float64) * (high - low) + low)
        base = mean if spec.center else torch.zeros_like(mean)
        # the spread about the value the BatchNorm subtracts: with center=False a channel of large mean and small
        # variance would otherwise be scaled by mean/std (EfficientNet-B4 at 64²: logits of 1e5 whose float32
        # and float64 values differ by 13 %)
        spread = var + (mean - base) ** 2
        bn.running_var.copy_((spread * factor).clamp(min=1e-12))
        bn.running_mean.copy_(base + torch.randn(n, generator=g, dtype=torch.float64) * spec.mean_scale * var.sqrt())
        _affine(bn, spec, g)

    handles = [bn.register_forward_pre_hook(calibrate) for bn in norms]
    try:
        with torch.no_grad():
            model(input.to(next(model.parameters()).dtype))
    finally:
        for handle in handles:
            handle.remove()
    return model


def randomize_batchnorm(model: nn.Module, seed: int = 0, negative_gamma: bool = True) -> nn.Module:
    """A uniform draw for function-equivalence checks, model in eval mode: variances from 0.5 to 2, means
    N(0, 0.5), β N(0, 0.3), γ from -1.5 to 1.5 with channel 0 exactly 0 (``negative_gamma=False``: γ from 0.5
    to 1.5), so the merged maps have no special structure to hide errors behind."""
    return apply(model, BatchNormDraw(mode="uniform", seed=seed, log_var=(LOG_HALF, LOG_TWO), mean_scale=0.5,
                                      gamma=(-1.5, 1.5) if negative_gamma else (0.5, 1.5),
                                      zero_gamma=negative_gamma, beta_scale=0.3))


def calibrate_batchnorm(model: nn.Module, size: int, seed: int = 0, scale: float = 0.02) -> nn.Module:
    """A calibrated draw for attribution checks on ``(4, 3, size, size)`` standard-normal inputs, model in eval
    mode: variances those of the activations times 0.5 to 2 (so activations neither vanish nor explode with
    depth), means N(0, scale·std) (off-centre), γ from 0.5 to 1.5, β N(0, scale)."""
    return apply(model, BatchNormDraw(mode="calibrated", seed=seed, log_var=(LOG_HALF, LOG_TWO), mean_scale=scale,
                                      center=False, gamma=(0.5, 1.5), beta_scale=scale),
                 input_shape=(4, 3, size, size))


def draw_batchnorm(model: nn.Module, seed: int, log10_var: tuple[float, float] = (-1.0, 1.0),
                   mean_scale: float = 1.0, gamma_scale: float = 1.0, beta_scale: float = 0.3,
                   near_zero: float = 0.0, inputs: torch.Tensor | None = None) -> nn.Module:
    """A draw for property tests, model in eval mode: γ ~ N(0, gamma_scale) (both signs) with a share
    ``near_zero`` near 0, β ~ N(0, beta_scale), variances 10**U(log10_var) times those measured on ``inputs``
    (calibrated) or times 1 (uniform, without ``inputs``), means the measured ones plus N(0, mean_scale·std)."""
    spec = BatchNormDraw(mode="uniform" if inputs is None else "calibrated", seed=seed, log_var=log10_var,
                         mean_scale=mean_scale, gamma_std=gamma_scale, near_zero=near_zero, beta_scale=beta_scale)
    return apply(model, spec, input=inputs)


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


def rounding_sensitivity(model: nn.Module, input: torch.Tensor, seed: int = 0) -> float:
    """How far the output moves when every input value moves by one unit of rounding (up or down at random):
    max|y(x(1 ± ε/2)) − y(x)| / max|y(x)| in the input's dtype.

    About 1e-7 in float32 for a well-conditioned network. A random-init network can amplify rounding so much
    (EfficientNet-V2-L at 64²: of order one in float32, 1e-9 in float64) that its float32 output is not
    determined to within a conservation tolerance: any other evaluation order, a canonical one included, gives
    a different number. Conservation is judged in a dtype where this is small against the tolerance.
    """
    g = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, input.shape, generator=g).to(input.dtype) * 2 - 1
    with torch.no_grad():
        y, y_rounded = model(input), model(input * (1 + torch.finfo(input.dtype).eps / 2 * signs))
    scale = y.abs().max()
    return float((y_rounded - y).abs().max() / scale) if scale > 0 else 0.0


def is_alive(model: nn.Module, input: torch.Tensor) -> bool:
    """Whether the output of ``model`` depends on its input beyond rounding (see :data:`ALIVE`)."""
    return liveness(model, input, torch.Generator().manual_seed(1)) > ALIVE
