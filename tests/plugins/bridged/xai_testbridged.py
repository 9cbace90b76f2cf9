"""A third-party plugin whose components the host-bridge tests use through Captum, Zennit, create_model and
fix_spatial_filters; it holds no host code. Some components break their contract on purpose."""

import math

import torch
from torch import nn

import xai_plugins

PAPER = "none (test plugin)"


def _targets(target, n):
    return torch.as_tensor(target).long().reshape(-1).expand(n)


def _modes(model):
    return [(m, m.training) for m in model.modules()]


def _restore(modes):
    for module, mode in modes:
        module.training = mode


def gradient_x_input(model, inputs, target, **kwargs):
    """Gradient of the target output times the input."""
    modes = _modes(model)
    try:
        model.eval()
        x = inputs.detach().clone().requires_grad_(True)
        out = model(x)
        (grad,) = torch.autograd.grad(out.gather(1, _targets(target, x.shape[0])[:, None]).sum(), x)
    finally:
        _restore(modes)
    return (grad * inputs.detach()).detach()


def integrated_gradients(model, inputs, target, baselines=None, n_steps=32, **kwargs):
    """Integrated gradients from ``baselines`` (zeros by default), midpoint rule with ``n_steps`` steps."""
    x = inputs.detach()
    base = torch.zeros_like(x) if baselines is None else torch.as_tensor(baselines, dtype=x.dtype).expand_as(x)
    alphas = (torch.arange(n_steps, dtype=x.dtype) + 0.5) / n_steps
    total = torch.zeros_like(x)
    modes = _modes(model)
    try:
        model.eval()
        for alpha in alphas:
            point = (base + alpha * (x - base)).requires_grad_(True)
            out = model(point)
            (grad,) = torch.autograd.grad(out.gather(1, _targets(target, x.shape[0])[:, None]).sum(), point)
            total += grad
    finally:
        _restore(modes)
    return (total / n_steps * (x - base)).detach()


def occlusion(model, inputs, target, **kwargs):
    """Drop of the target output when each input element alone is set to zero (forward passes only)."""
    x = inputs.detach()
    n, d = x.shape[0], x[0].numel()
    t = _targets(target, n)
    with torch.no_grad():
        full = model(x).gather(1, t[:, None])
        occluded = x.reshape(n, 1, d).repeat(1, d, 1)
        occluded[:, torch.arange(d), torch.arange(d)] = 0
        outs = model(occluded.reshape(n * d, *x.shape[1:])).reshape(n, d, -1)
        drop = full - outs.gather(2, t[:, None, None].expand(n, d, 1)).squeeze(2)
    return drop.reshape(x.shape)


def nan_attribution(model, inputs, target, **kwargs):
    """Breaks the contract: NaN everywhere."""
    return torch.full_like(inputs, math.nan)


def wrong_shape(model, inputs, target, **kwargs):
    """Breaks the contract: drops the last dimension."""
    return inputs.detach().sum(dim=-1)


def mlp(in_features=6, hidden=8, num_classes=4):
    """A small MLP with random weights."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, num_classes))


def not_a_module(**kwargs):
    """Breaks the contract: returns no module."""
    return "a string"


def box(shape, generator=None):
    """Every spatial filter is the normalised box filter."""
    size = math.prod(shape[2:])
    return torch.full(shape, 1.0 / math.sqrt(size))


def nan_init(shape, generator=None):
    """Breaks the contract: NaN filters."""
    return torch.full(shape, math.nan)


@xai_plugins.hookimpl
def xai_register_attributors(register):
    register("bridged_gxi", gradient_x_input, summary="gradient x input", paper=PAPER,
             attribution_kind="gradient", multiplies_by_inputs=True)
    register("bridged_ig", integrated_gradients, summary="integrated gradients", paper=PAPER,
             attribution_kind="gradient", multiplies_by_inputs=True, has_convergence_delta=True)
    register("bridged_occlusion", occlusion, summary="single-element occlusion", paper=PAPER,
             attribution_kind="perturbation")
    register("bridged_nan", nan_attribution, summary="NaN", paper=PAPER, attribution_kind="gradient")
    register("bridged_wrong_shape", wrong_shape, summary="wrong shape", paper=PAPER, attribution_kind="gradient")
    register("bridged_no_kind", gradient_x_input, summary="no attribution_kind", paper=PAPER)
    register("bridged_bad_delta", occlusion, summary="delta without gradients", paper=PAPER,
             attribution_kind="perturbation", has_convergence_delta=True)


@xai_plugins.hookimpl
def xai_register_models(register):
    register("bridged_mlp", mlp, summary="small MLP", paper=PAPER)
    register("bridged_not_a_module", not_a_module, summary="returns a string", paper=PAPER)


@xai_plugins.hookimpl
def xai_register_initializers(register):
    register("bridged_box", box, summary="box filters", paper=PAPER)
    register("bridged_nan_init", nan_init, summary="NaN filters", paper=PAPER)
