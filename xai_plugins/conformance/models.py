"""Checks of model builders ``builder(**kwargs) -> nn.Module``: builds without downloading, honours
``num_classes``, forward shape, clear error on a wrong channel count, and completeness of the explanation
where the family promises it (``extra["explanation_mode"]``, as B-cos models do)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xai_plugins.conformance.checks import check
from xai_plugins.conformance.common import assert_restored, expect_clear_error, forward, no_downloads
from xai_plugins.conformance.fixtures import cached_model, load_object, seeded, tolerance
from xai_plugins.conformance.results import CheckFailure, CheckSkipped
from xai_plugins.conformance.state import snapshot
from xai_plugins.registry import Component

NUM_CLASSES = 7
COMPLETENESS_TOLERANCE = 1e-4


def build(component: Component) -> nn.Module:
    """The model the builder makes with ``num_classes=7`` (plus ``example_model_kwargs``), in eval mode."""
    kwargs = {"num_classes": NUM_CLASSES, **component.extra.get("example_model_kwargs", {})}
    key = ("model", component.name, id(component.load()), repr(sorted(kwargs.items())))
    return cached_model(key, lambda: _build(component, kwargs))


def _build(component: Component, kwargs: dict[str, Any]) -> nn.Module:
    with no_downloads() as tried, seeded(0):
        try:
            model = component.load()(**kwargs)
        except TypeError as exc:
            raise CheckFailure(f"builder(**{kwargs}) failed: {exc}; model builders take num_classes=") from exc
        except Exception as exc:
            if tried:
                raise CheckFailure(f"the builder tried to download {tried[0]}; builders must not download, "
                                   "load weights from local files") from exc
            raise
    if not isinstance(model, nn.Module):
        raise CheckFailure(f"the builder returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def input_shape(component: Component) -> tuple[int, ...]:
    """``example_input_shape``, or a batch of 2 of ``input_channels`` x 32 x 32."""
    return tuple(component.extra.get("example_input_shape", (2, int(component.extra.get("input_channels", 3)), 32, 32)))


def example_input(component: Component) -> torch.Tensor:
    """A random input batch in [0, 1) of :func:`input_shape`."""
    return torch.rand(input_shape(component), generator=torch.Generator().manual_seed(1000))


@check("builds", "model")
def check_builds(component: Component) -> str:
    """Builds with ``num_classes=`` without downloading anything."""
    model = build(component)
    return f"{type(model).__name__} with {sum(p.numel() for p in model.parameters()):,} parameters"


@check("forward_shape", "model")
def check_forward_shape(component: Component) -> str:
    """The forward pass maps (N, C, H, W) to finite logits of shape (N, num_classes)."""
    model = build(component)
    x = example_input(component)
    out = forward(model, x)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (x.shape[0], NUM_CLASSES):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CheckFailure(f"input {tuple(x.shape)} gave output {got}; expected ({x.shape[0]}, {NUM_CLASSES}) "
                           f"for num_classes={NUM_CLASSES}")
    if not torch.isfinite(out).all():
        raise CheckFailure("the output has non-finite values")
    return f"{tuple(x.shape)} -> {tuple(out.shape)}"


@check("clear_errors", "model")
def check_clear_errors(component: Component) -> str:
    """An input with the wrong channel count is rejected with an error that says so, model untouched."""
    model = build(component)
    x = example_input(component)
    bad = torch.rand((x.shape[0], x.shape[1] + 1, *x.shape[2:]), generator=torch.Generator().manual_seed(0))
    before = snapshot(model)
    message = expect_clear_error(lambda: forward(model, bad), f"an input with {bad.shape[1]} channels instead of "
                                 f"{x.shape[1]}", ("channel",))
    assert_restored(model, before, "after rejecting the input")
    return message


def _logit_bias(component: Component, model: nn.Module) -> Any:
    spec = component.extra.get("logit_bias", 0.0)
    if isinstance(spec, str) and ":" in spec:
        return load_object(spec)(model)
    if isinstance(spec, str):
        obj: Any = model
        for part in spec.split("."):
            obj = getattr(obj, part)
        return obj
    return spec


@check("completeness", "model")
def check_completeness(component: Component) -> tuple[str, float, float]:
    """Where the model promises it (``explanation_mode`` in its metadata): inside explanation mode, input x
    input-gradient summed over the input equals the target logit minus ``logit_bias``, within 1e-4 of |logit|."""
    spec = component.extra.get("explanation_mode")
    if spec is None:
        raise CheckSkipped("the model does not promise completeness (no explanation_mode= in its metadata)")
    tol = tolerance(component, COMPLETENESS_TOLERANCE)
    mode = load_object(spec)
    model = build(component)
    x = example_input(component).requires_grad_(True)
    bias = _logit_bias(component, model)
    before = snapshot(model)
    with mode(model):
        out = model(x)
        targets = torch.arange(x.shape[0]) % out.shape[1]
        picked = out.gather(1, targets[:, None]).squeeze(1)
        (grad,) = torch.autograd.grad(picked.sum(), x)
    assert_restored(model, before, "after leaving explanation mode")
    total = (grad * x).detach().flatten(1).sum(1)
    expected = picked.detach() - torch.as_tensor(bias, dtype=total.dtype)
    scale = torch.maximum(picked.detach().abs(), expected.abs()).clamp_min(1e-12)
    err = ((total - expected).abs() / scale).max().item()
    if not err <= tol:
        raise CheckFailure(f"contributions do not sum to logit minus bias: worst relative error {err:.3g} "
                           f"(tolerance {tol:g})", err, tol)
    return f"sum of contributions = logit - bias within {err:.2g} relative", err, tol
